//! Edge cases of tasks, futures and the cross-thread handles found in
//! review: the helper tasks the loop runs for its own services, a failing
//! `spawn_with` builder, and what counts as retrieving a future's error.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use oneloop::{Error, ErrorKind, Loop};
use util::{LIMIT, Watchdog, record_exceptions, run_once};

/// Cancel every task the loop lists, as a shutdown routine does.
fn cancel_all(lp: &Loop) {
    for t in lp.all_tasks() {
        t.cancel();
    }
}

/// The helper task that carries a job's result back to the loop thread is
/// the loop's business, not the user's: cancelling "every task" must not
/// lose the result of `run_in_executor` (asyncio's executor future is not
/// a task at all).
#[test]
fn run_in_executor_result_survives_cancelling_every_task() {
    let lp = Loop::new().unwrap();
    let (go, gate) = mpsc::channel::<()>();
    let job = lp
        .run_in_executor(move || {
            let _ = gate.recv();
            7
        })
        .unwrap();
    run_once(&lp); // the helper task is now waiting for the job
    let listed = lp.all_tasks().len();
    cancel_all(&lp);
    go.send(()).unwrap();
    let wd = Watchdog::arm(&lp, LIMIT);
    let out = lp.run_until_complete(job.clone());
    wd.assert_not_fired("the job's result after cancelling every task");
    assert_eq!(out.unwrap().unwrap(), 7);
    assert_eq!(listed, 0, "all_tasks() lists the loop's own helper task");
}

/// The same for `shutdown_default_executor`'s future: asyncio.run cancels
/// every task and then awaits this future; any order of the two must end.
#[test]
fn shutdown_default_executor_completes_after_cancelling_every_task() {
    let lp = Loop::new().unwrap();
    let job = lp.run_in_executor(|| 1).unwrap();
    let down = lp.shutdown_default_executor().unwrap();
    cancel_all(&lp);
    let wd = Watchdog::arm(&lp, LIMIT);
    let out = lp.run_until_complete(down);
    wd.assert_not_fired("shutdown_default_executor after cancelling every task");
    out.unwrap().unwrap();
    assert_eq!(job.result().unwrap(), 1);
}

/// `RemoteLoop::spawn_with`'s handle gives what the task ended with. A task
/// that handles its cancellation and returns a value ended with that value
/// (CN-03), even when every task was cancelled.
#[test]
fn remote_task_gives_the_value_of_a_task_that_handled_its_cancellation() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let handle = remote
        .spawn_with(|_| async {
            match oneloop::sleep(Duration::from_secs(3600)).await {
                Err(e) if e.is_cancelled() => 42,
                _ => 0,
            }
        })
        .unwrap();
    run_once(&lp); // the callback spawns the task
    run_once(&lp); // its first step: asleep
    let listed = lp.all_tasks().len();
    cancel_all(&lp);
    let wd = Watchdog::arm(&lp, LIMIT);
    let out = lp.run_until_complete(handle);
    wd.assert_not_fired("the remote task's output");
    assert_eq!(out.unwrap().unwrap(), 42);
    assert_eq!(listed, 1, "only the user's task is listed");
}

/// A `spawn_with` builder that panics: the panic is reported like any
/// callback's, and the handle says the task could not be made (Panicked),
/// not that the loop closed (asyncio's `run_coroutine_threadsafe` sets the
/// exception on its future and re-raises).
#[test]
fn remote_spawn_with_panicking_builder_reports_panicked() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let handle = lp
        .remote()
        .spawn_with(|_| -> std::future::Ready<u32> { panic!("no future today") })
        .unwrap();
    let wd = Watchdog::arm(&lp, LIMIT);
    let out = lp.run_until_complete(handle);
    wd.assert_not_fired("the handle of a failed spawn_with");
    let err = out.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    assert!(err.message().contains("no future today"), "{err}");
    assert!(!lp.is_closed());
    let reports = reports.get();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].panic_message(), Some("no future today"));
}

/// A task cancelled while the future it awaits has just failed gets the
/// cancellation; the future's error was consumed by that await (asyncio's
/// `__wakeup` calls `result()`), so dropping the future reports nothing
/// (FU-06: a retrieved error is not reported).
#[test]
fn error_consumed_by_a_cancelled_await_is_not_reported() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let fut = lp.create_future::<u32>();
    let task = lp.spawn(fut.clone()).unwrap();
    run_once(&lp); // the task awaits `fut`
    fut.set_exception(Error::new(ErrorKind::InvalidArgument, "bad input"))
        .unwrap();
    assert!(task.cancel());
    let out = lp.run_until_complete(task).unwrap();
    assert!(out.unwrap_err().is_cancelled());
    drop(fut);
    run_once(&lp);
    let reports = reports.get();
    assert!(reports.is_empty(), "reported: {reports:?}");
}

/// A task woken from another thread while `close` runs (here, from the
/// `Drop` of a queued callback that `close` discards) still has its future
/// dropped by `close`, on the loop's thread: the wake's step cannot be
/// queued any more, and must not keep the future (and what it holds) alive
/// for ever.
#[test]
fn a_wake_from_another_thread_during_close_still_drops_the_future() {
    struct SetOnDrop(Rc<Cell<bool>>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    /// Wakes the task from another thread when dropped, and waits for it.
    struct WakeOnDrop(Option<futures::channel::oneshot::Sender<()>>);
    impl Drop for WakeOnDrop {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                thread::spawn(move || tx.send(()).unwrap()).join().unwrap();
            }
        }
    }

    let lp = Loop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let task = lp
        .spawn({
            let guard = SetOnDrop(dropped.clone());
            async move {
                let _guard = guard;
                let _ = rx.await;
            }
        })
        .unwrap();
    run_once(&lp); // the task waits for `rx`
    let waker = WakeOnDrop(Some(tx));
    lp.call_soon(move || drop(waker)).unwrap(); // never runs: `close` drops it
    lp.close().unwrap();
    assert!(
        dropped.get(),
        "the task's future outlived the close of its loop"
    );
    assert!(task.cancelled());
}

/// A future that panics when dropped.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("cleanup failed");
    }
}

/// A task cancelled while suspended on a foreign future is dropped (point 4
/// of `Task`'s cancellation rules); if that drop panics, the panic is
/// reported like a step's and the task ends `Panicked`: its awaiters must
/// not wait for ever on a task that can never run again.
#[test]
fn a_panic_while_dropping_a_cancelled_task_ends_the_task() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let (_tx, rx) = futures::channel::oneshot::channel::<()>();
    let task = lp
        .spawn(async move {
            let _cleanup = PanicOnDrop;
            let _ = rx.await; // not a oneloop future: cancelling drops the task
        })
        .unwrap();
    run_once(&lp);
    assert!(task.cancel());
    let wd = Watchdog::arm(&lp, LIMIT);
    let out = lp.run_until_complete(task);
    wd.assert_not_fired("the end of a task whose drop panicked");
    let err = out.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    assert!(lp.all_tasks().is_empty(), "the task is still listed");
    let reports = reports.get();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].panic_message(), Some("cleanup failed"));
}

/// `close` drops every pending task's future; one whose drop panics must
/// not unwind out of `close` half-way, leaving the other tasks' futures
/// (and the rest of the loop's teardown) behind.
#[test]
fn a_panic_while_close_drops_a_task_does_not_cut_close_short() {
    struct SetOnDrop(Rc<Cell<bool>>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    // Which task `close` drops first is not specified: one of each order.
    let flags: Vec<Rc<Cell<bool>>> = (0..4).map(|_| Rc::new(Cell::new(false))).collect();
    for (i, flag) in flags.iter().enumerate() {
        let guard = SetOnDrop(flag.clone());
        lp.spawn(async move {
            let _guard = guard;
            let _panics = if i % 2 == 0 { Some(PanicOnDrop) } else { None };
            std::future::pending::<()>().await;
        })
        .unwrap();
    }
    run_once(&lp);
    let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.close()));
    assert!(closed.is_ok(), "close() unwound");
    closed.unwrap().unwrap();
    let dropped: Vec<bool> = flags.iter().map(|f| f.get()).collect();
    assert_eq!(dropped, [true; 4], "futures close() dropped");
    let reports = reports.get();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r.panic_message() == Some("cleanup failed")),
        "{reports:?}"
    );
}

/// Asking a pending future for its result or error (`InvalidState`, FU-01)
/// looks at no error: one set later and never retrieved is still reported
/// when the future is dropped (FU-06), as asyncio's `__log_traceback` is
/// only cleared once the future is done.
#[test]
fn asking_a_pending_future_does_not_retrieve_its_later_error() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let by_result = lp.create_future::<u32>();
    let by_exception = lp.create_future::<u32>();
    assert_eq!(
        by_result.result().unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    assert_eq!(
        by_exception.exception().unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    for fut in [by_result, by_exception] {
        fut.set_exception(Error::new(ErrorKind::InvalidArgument, "unseen"))
            .unwrap();
    }
    run_once(&lp);
    let reports = reports.get();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r.message() == "future exception was never retrieved"),
        "{reports:?}"
    );
}
