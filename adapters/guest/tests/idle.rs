//! An idle guest costs nothing: no job is posted and the process burns no
//! CPU while only an fd is watched. A test binary of its own, so that no
//! other test's threads count in the process's CPU time.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oneloop_guest::Job;

/// User + system CPU time of the whole process, from `/proc/self/stat`.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // CLK_TCK is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

#[test]
fn an_idle_guest_posts_nothing_and_burns_no_cpu() {
    let jobs = Arc::new(Mutex::new(VecDeque::<Job>::new()));
    let posted = Arc::new(AtomicUsize::new(0));
    let (j, p) = (jobs.clone(), posted.clone());
    let lp = oneloop_guest::new_loop(move |job| {
        p.fetch_add(1, Ordering::SeqCst);
        j.lock().unwrap().push_back(job);
    })
    .unwrap();
    let (_tx, rx) = UnixStream::pair().unwrap();
    lp.add_reader(&rx, || {}).unwrap();
    // Let setup settle: run what is queued.
    let settle = Instant::now() + Duration::from_millis(50);
    while Instant::now() < settle {
        let job = jobs.lock().unwrap().pop_front();
        match job {
            Some(job) => job.run(),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let before = posted.load(Ordering::SeqCst);
    let cpu0 = process_cpu();
    // The host sleeps in its own wait (here: a sleep); the guest has only
    // an idle fd.
    std::thread::sleep(Duration::from_millis(500));
    let cpu1 = process_cpu();
    assert_eq!(
        posted.load(Ordering::SeqCst),
        before,
        "an idle guest posted jobs: it polls"
    );
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        assert!(
            b - a <= Duration::from_millis(30),
            "an idle guest burned {:?} of CPU in 500 ms",
            b - a
        );
    }
    assert!(lp.remove_reader(&rx));
    lp.close().unwrap();
}
