//! The default executor's threads end with the loop (EX-02), as asyncio's
//! `close` shuts its default executor down. One test per file: it counts
//! the process's threads, which other tests running beside it would change.

mod util;

use std::time::Instant;

use oneloop::Loop;
use util::{LIMIT, wait_until};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn no_executor_thread_outlives_shutdown_or_close() {
    let before = threads();
    assert!(before > 0, "/proc/self/task is not readable here");

    // shutdown_default_executor waits for the pool's threads.
    let lp = Loop::new().unwrap();
    let jobs: Vec<_> = (0..4)
        .map(|i| lp.run_in_executor(move || i * 2).unwrap())
        .collect();
    let down = lp.shutdown_default_executor().unwrap();
    lp.run_until_complete(down).unwrap().unwrap();
    for (i, job) in jobs.iter().enumerate() {
        assert_eq!(job.result().unwrap(), i * 2);
    }
    // (The thread that waited for them may take a moment to end itself.)
    let ended = wait_until(Instant::now() + LIMIT, || threads() == before);
    assert!(
        ended,
        "{} threads left after shutdown_default_executor",
        threads() - before
    );
    lp.close().unwrap();

    // close() lets the default executor go: its threads end once idle.
    let lp = Loop::new().unwrap();
    let job = lp.run_in_executor(|| 7).unwrap();
    assert_eq!(lp.run_until_complete(job).unwrap().unwrap(), 7);
    assert!(threads() > before, "the job ran on no thread of its own");
    lp.close().unwrap();
    let ended = wait_until(Instant::now() + LIMIT, || threads() == before);
    assert!(ended, "{} threads left after close", threads() - before);
}
