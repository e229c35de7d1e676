//! `run_in_executor` on the default loop: EX-01, EX-02.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oneloop::{ErrorKind, Executor, Loop};
use util::Log;

#[test]
fn ex01_work_runs_off_the_loop_and_the_loop_stays_responsive() {
    let lp = Loop::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let work = lp
        .run_in_executor(move || {
            rx.recv().unwrap();
            "done"
        })
        .unwrap();
    let ticks = Log::new();
    let t = ticks.clone();
    // The loop keeps firing timers while the job blocks, then releases it.
    let release = lp
        .spawn(async move {
            for i in 0..3 {
                oneloop::sleep(Duration::from_millis(2)).await.unwrap();
                t.push(i);
            }
            tx.send(()).unwrap();
        })
        .unwrap();
    assert_eq!(lp.run_until_complete(work).unwrap().unwrap(), "done");
    lp.run_until_complete(release).unwrap().unwrap();
    assert_eq!(ticks.get(), [0, 1, 2]);
}

#[test]
fn ex01_set_default_executor_replaces_the_pool() {
    struct Counting(Arc<AtomicUsize>);
    impl Executor for Counting {
        fn execute(&self, job: Box<dyn FnOnce() + Send>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(job);
        }
    }
    let lp = Loop::new().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    lp.set_default_executor(Counting(n.clone()));
    let f = lp.run_in_executor(|| 5).unwrap();
    assert_eq!(lp.run_until_complete(f).unwrap().unwrap(), 5);
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[test]
fn ex01_a_panicking_job_fails_its_future() {
    let lp = Loop::new().unwrap();
    let f = lp
        .run_in_executor(|| -> u8 { panic!("job failed") })
        .unwrap();
    assert_eq!(
        lp.run_until_complete(f).unwrap().unwrap_err().kind(),
        ErrorKind::Panicked
    );
}

#[test]
fn ex02_shutdown_waits_for_jobs_and_then_refuses_work() {
    let lp = Loop::new().unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let job = lp
        .run_in_executor(move || {
            std::thread::sleep(Duration::from_millis(20));
            f.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let shutdown = lp.shutdown_default_executor().unwrap();
    lp.run_until_complete(shutdown).unwrap().unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "shutdown waited for the running job"
    );
    lp.run_until_complete(job)
        .unwrap()
        .expect("the job's result still arrives after shutdown");
    assert_eq!(
        lp.run_in_executor(|| ()).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[test]
fn ex02_cancelling_then_closing_never_calls_into_the_closed_loop() {
    /// One thread per job, joinable, so the test knows the job is over.
    #[derive(Clone, Default)]
    struct Joinable(Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>);
    impl Executor for Joinable {
        fn execute(&self, job: Box<dyn FnOnce() + Send>) {
            self.0.lock().unwrap().push(std::thread::spawn(job));
        }
    }
    let pool = Joinable::default();
    let lp = Loop::new().unwrap();
    lp.set_default_executor(pool.clone());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let f = lp.run_in_executor(move || rx.recv()).unwrap();
    f.cancel();
    lp.close().unwrap();
    // The job either was skipped (cancelled before it started: the channel
    // is closed) or finishes now and tries to report to the closed loop.
    let _ = tx.send(());
    for t in std::mem::take(&mut *pool.0.lock().unwrap()) {
        t.join()
            .expect("the job (or its report to the closed loop) panicked");
    }
    assert!(f.cancelled());
}
