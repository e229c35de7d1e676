//! `EX`: the executor — blocking work off the loop thread, its result
//! delivered as a loop future (PEP 3156 §run_in_executor).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oneloop::Executor;

use super::futures::GateExecutor;
use super::{ASLEEP_UNKNOWN, wait_for_loop_asleep};
use crate::Env;

/// An executor that counts its jobs and runs each on a new thread.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Executor for Counting {
    fn execute(&self, job: Box<dyn FnOnce() + Send>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(job);
    }
}

/// EX-01 (MUST): `run_in_executor(f)` runs f off the loop thread and
/// delivers its result as a loop future, even while the loop is otherwise
/// idle (a panic in f fails that future with `Panicked`);
/// `set_default_executor` replaces the default pool.
pub fn run_in_executor_runs_off_thread(env: &Env) {
    let lp = env.lp();
    let tid = crate::support::current_tid();
    // The job finishes only once the loop is idle, blocked in its poll: the
    // result has to wake it.
    let f = lp
        .run_in_executor(move || (wait_for_loop_asleep(tid), std::thread::current().id()))
        .expect("run_in_executor");
    let (known, ran_on) = env.run_until(f).expect("the executor's result");
    if !known {
        env.skip_part(ASLEEP_UNKNOWN);
    }
    assert_ne!(
        ran_on,
        std::thread::current().id(),
        "run_in_executor ran f on the loop thread"
    );
    // A job that panics fails its future; the panic stays off the loop.
    let f = lp
        .run_in_executor(|| -> u32 { panic!("deliberate executor job panic (EX-01)") })
        .expect("run_in_executor");
    assert_eq!(
        env.run_until(f).map_err(|e| e.kind()),
        Err(oneloop::ErrorKind::Panicked),
        "a panicking job's future"
    );
    let counting = Counting::default();
    lp.set_default_executor(counting.clone());
    let f = lp.run_in_executor(|| 5).expect("run_in_executor");
    assert_eq!(env.run_until(f).expect("result"), 5);
    assert_eq!(
        counting.0.load(Ordering::SeqCst),
        1,
        "set_default_executor must replace the pool"
    );
}

/// EX-02 (SHOULD): `shutdown_default_executor` waits for the pool's
/// threads, and afterwards the default pool refuses work; cancelling an
/// executor future and then closing the loop never calls back into the
/// closed loop.
pub fn shutdown_default_executor_waits(env: &Env) {
    let lp = env.lp();
    let finished = Arc::new(AtomicBool::new(false));
    let tid = crate::support::current_tid();
    // The job is still running when shutdown is asked for: it ends only once
    // the loop's thread is asleep, waiting for the shutdown to complete.
    let job = lp
        .run_in_executor({
            let finished = finished.clone();
            move || {
                let known = wait_for_loop_asleep(tid);
                finished.store(true, Ordering::SeqCst);
                known
            }
        })
        .expect("run_in_executor");
    let shutdown = lp
        .shutdown_default_executor()
        .expect("shutdown_default_executor");
    env.run_until(shutdown).expect("shutdown");
    assert!(
        finished.load(Ordering::SeqCst),
        "shutdown_default_executor did not wait for the pool"
    );
    if !env.run_until(job).expect("the job's result") {
        env.skip_part(ASLEEP_UNKNOWN);
    }
    assert!(
        lp.run_in_executor(|| ()).is_err(),
        "the default pool must refuse work after shutdown"
    );

    let gate = GateExecutor::default();
    lp.set_default_executor(gate.clone());
    let f = lp.run_in_executor(|| 1).expect("run_in_executor");
    assert!(f.cancel());
    drop(f);
    lp.close().expect("close");
    // The job runs after close: it must neither panic nor reach the loop.
    gate.release();
}
