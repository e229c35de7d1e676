//! `FU`: the PEP future — states, done-callbacks always through
//! `call_soon`, unretrieved errors reported (PEP 3156 §Futures).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use oneloop::{Error, ErrorKind, Executor};

use super::trace;
use crate::Env;

fn kind<T: std::fmt::Debug>(r: oneloop::Result<T>) -> Result<T, ErrorKind> {
    r.map_err(|e| e.kind())
}

/// FU-01 (MUST): a new future is neither done nor cancelled; `result()` on
/// a pending future fails with `InvalidState` and does not block.
pub fn new_future_is_pending(env: &Env) {
    let f = env.lp().create_future::<u32>();
    assert!(!f.done() && !f.cancelled(), "a new future must be pending");
    assert_eq!(
        kind(f.result()),
        Err(ErrorKind::InvalidState),
        "result() of a pending future"
    );
    assert_eq!(
        kind(f.exception()).map(|e| e.is_some()),
        Err(ErrorKind::InvalidState),
        "exception() of a pending future"
    );
}

/// FU-02 (MUST): `set_result`/`set_exception` on a done or cancelled future
/// fail with `InvalidState`; `cancel()` on a done future returns false.
pub fn completing_done_future_fails(env: &Env) {
    let lp = env.lp();
    let f = lp.create_future::<u32>();
    f.set_result(1).unwrap();
    assert_eq!(
        kind(f.set_result(2)),
        Err(ErrorKind::InvalidState),
        "set_result twice"
    );
    assert_eq!(
        kind(f.set_exception(Error::new(ErrorKind::InvalidArgument, "late"))),
        Err(ErrorKind::InvalidState),
        "set_exception after set_result"
    );
    assert!(!f.cancel(), "cancel() on a done future must return false");
    assert_eq!(kind(f.result()), Ok(1), "the first result must stay");
    let c = lp.create_future::<u32>();
    assert!(c.cancel());
    assert_eq!(
        kind(c.set_result(3)),
        Err(ErrorKind::InvalidState),
        "set_result after cancel"
    );
    assert!(
        !c.cancel(),
        "cancel() twice must return false the second time"
    );
    env.run_briefly();
}

/// FU-03 (MUST): `cancel()` on a pending future returns true and leaves it
/// done and cancelled; `result()` and `exception()` then report `Cancelled`.
pub fn cancel_pending_future(env: &Env) {
    let f = env.lp().create_future::<u32>();
    assert!(f.cancel(), "cancel() on a pending future must return true");
    assert!(f.done() && f.cancelled());
    assert_eq!(kind(f.result()), Err(ErrorKind::Cancelled));
    assert_eq!(
        kind(f.exception()).map(|e| e.is_some()),
        Err(ErrorKind::Cancelled)
    );
    env.run_briefly();
}

/// FU-04 (MUST): done-callbacks are never called from inside `set_result`,
/// `set_exception` or `cancel`: they are queued with `call_soon`, run in
/// registration order, and receive the future; a callback added to a done
/// future is queued too, not called at once.
pub fn done_callbacks_are_queued_in_order(env: &Env) {
    let lp = env.lp();
    for how in ["set_result", "set_exception", "cancel"] {
        let t = trace();
        let f = lp.create_future::<u32>();
        for i in 0..3 {
            let t = t.clone();
            f.add_done_callback(move |f| {
                assert!(f.done(), "a done-callback received a pending future");
                let _ = f.exception();
                t.borrow_mut().push(i);
            });
        }
        match how {
            "set_result" => f.set_result(7).unwrap(),
            "set_exception" => f
                .set_exception(Error::new(ErrorKind::InvalidArgument, "x"))
                .unwrap(),
            _ => assert!(f.cancel()),
        }
        assert!(t.borrow().is_empty(), "done-callbacks ran inside {how}");
        env.run_briefly();
        assert_eq!(
            *t.borrow(),
            [0, 1, 2],
            "done-callbacks after {how}: order or count"
        );
        let t2 = t.clone();
        f.add_done_callback(move |_| t2.borrow_mut().push(3));
        assert_eq!(
            t.borrow().len(),
            3,
            "a callback added to a done future ran at once ({how})"
        );
        env.run_briefly();
        assert_eq!(*t.borrow(), [0, 1, 2, 3]);
    }
}

/// FU-05 (MUST): `remove_done_callback` removes the callback and returns the
/// number removed; a done-callback that removes other callbacks while the
/// callbacks are being scheduled is safe.
pub fn remove_done_callback_counts(env: &Env) {
    let lp = env.lp();
    let t = trace();
    let f = lp.create_future::<u32>();
    let gone = f.add_done_callback({
        let t = t.clone();
        move |_| t.borrow_mut().push("removed")
    });
    let kept = f.add_done_callback({
        let t = t.clone();
        move |_| t.borrow_mut().push("kept")
    });
    assert_eq!(
        f.remove_done_callback(gone),
        1,
        "removing a registered callback"
    );
    assert_eq!(f.remove_done_callback(gone), 0, "removing it again");
    // A callback that removes a later one once scheduling has begun.
    let later = Rc::new(Cell::new(None));
    f.add_done_callback({
        let (t, later) = (t.clone(), later.clone());
        move |f| {
            if let Some(id) = later.get() {
                let _ = f.remove_done_callback(id);
            }
            t.borrow_mut().push("remover");
        }
    });
    later.set(Some(f.add_done_callback({
        let t = t.clone();
        move |_| t.borrow_mut().push("late")
    })));
    f.set_result(1).unwrap();
    env.run_briefly();
    assert!(
        !t.borrow().contains(&"removed"),
        "a removed done-callback ran"
    );
    let got = t.borrow().clone();
    // The callbacks were all scheduled when the future completed, so the
    // late removal cannot unschedule the last one (asyncio copies the list
    // first, bpo-28963): it runs, once, and nothing is lost or doubled.
    assert_eq!(
        got,
        ["kept", "remover", "late"],
        "done-callbacks after a removal during scheduling"
    );
    let _ = kept;
}

/// FU-06 (SHOULD): a failed future whose error was never retrieved is
/// reported to the exception handler when dropped; a retrieved error, a
/// result or a dropped pending future is not reported.
pub fn unretrieved_error_reported_on_drop(env: &Env) {
    let lp = env.lp();
    let f = lp.create_future::<u32>();
    f.set_exception(Error::new(ErrorKind::InvalidArgument, "never looked at"))
        .unwrap();
    drop(f);
    env.run_briefly();
    let reports = env.take_reports();
    assert_eq!(
        reports.len(),
        1,
        "an unretrieved error must be reported once: {reports:?}"
    );
    assert!(
        reports[0].contains("never looked at"),
        "the report must carry the error: {}",
        reports[0]
    );
    let seen = lp.create_future::<u32>();
    seen.set_exception(Error::new(ErrorKind::InvalidArgument, "looked at"))
        .unwrap();
    assert!(seen.exception().unwrap().is_some());
    drop(seen);
    let ok = lp.create_future::<u32>();
    ok.set_result(1).unwrap();
    drop(ok);
    drop(lp.create_future::<u32>());
    env.run_briefly();
    let reports = env.take_reports();
    assert!(
        reports.is_empty(),
        "reported although retrieved, successful or pending: {reports:?}"
    );
}

/// Holds jobs until released: lets a check cancel before a job starts.
#[derive(Clone, Default)]
pub(crate) struct GateExecutor(Arc<Mutex<Vec<Job>>>);

type Job = Box<dyn FnOnce() + Send>;

impl Executor for GateExecutor {
    fn execute(&self, job: Box<dyn FnOnce() + Send>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(job);
    }
}

impl GateExecutor {
    /// Run the held jobs on a new thread and wait for them.
    pub(crate) fn release(&self) {
        let jobs = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        std::thread::spawn(move || jobs.into_iter().for_each(|j| j()))
            .join()
            .expect("an executor job panicked");
    }
}

/// FU-07 (SHOULD): wrapping a thread-pool future: the result arrives on the
/// loop thread, and cancelling the wrapper keeps the job from running if it
/// has not started.
pub fn pool_future_result_on_loop_thread(env: &Env) {
    let lp = env.lp();
    let f = lp.run_in_executor(|| 6 * 7).expect("run_in_executor");
    let on = Rc::new(Cell::new(None));
    f.add_done_callback({
        let on = on.clone();
        move |_| on.set(Some(std::thread::current().id()))
    });
    assert_eq!(env.run_until(f).expect("result"), 42);
    env.run_briefly();
    assert_eq!(
        on.get(),
        Some(std::thread::current().id()),
        "the result must arrive on the loop thread"
    );

    let gate = GateExecutor::default();
    lp.set_default_executor(gate.clone());
    let ran = Arc::new(AtomicBool::new(false));
    let g = lp
        .run_in_executor({
            let ran = ran.clone();
            move || ran.store(true, Ordering::SeqCst)
        })
        .expect("run_in_executor");
    assert!(g.cancel(), "cancelling a pending executor future");
    env.run_briefly();
    gate.release();
    env.run_briefly();
    assert!(g.cancelled());
    assert!(
        !ran.load(Ordering::SeqCst),
        "a job cancelled before it started still ran"
    );
}
