//! `LC`: loop lifecycle — run, stop, run again, close (PEP 3156 §Starting,
//! Stopping and Closing). All but LC-11 are about `run_*`, so they apply to
//! owned loops; an attached loop is run by its host (EM-01).

use std::cell::Cell;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, PanicPolicy};

use super::{push, trace};
use crate::Env;
use crate::spec::Caps;

/// LC-01 (MUST): `run_forever()` returns only after `stop()`; `stop()` called
/// from a callback returns normally and that callback runs to its end.
pub fn run_forever_returns_only_after_stop(env: &Env) {
    let lp = env.lp();
    let t = trace();
    lp.call_soon(push(&t, "soon")).unwrap();
    let start = Instant::now();
    let stopper = {
        let lp = lp.clone();
        let t = t.clone();
        move || {
            t.borrow_mut().push("before stop");
            lp.stop();
            t.borrow_mut().push("after stop");
        }
    };
    // The ready queue empties long before the timer: the run must not end then.
    lp.call_later(Duration::from_millis(20), stopper).unwrap();
    env.run_forever().expect("run_forever failed");
    assert!(
        start.elapsed() >= Duration::from_millis(20),
        "run_forever returned before the stop() that was 20 ms away"
    );
    assert_eq!(
        *t.borrow(),
        ["soon", "before stop", "after stop"],
        "the stopping callback must run to its end"
    );
    assert!(!lp.is_running(), "is_running() after run_forever returned");
}

/// LC-02 (MUST): `run_forever()` or `run_until_complete()` called while the
/// loop runs (from a callback or a task) fails with `AlreadyRunning`; it
/// neither nests nor deadlocks.
pub fn nested_run_fails_already_running(env: &Env) {
    let lp = env.lp();
    let kinds = trace();
    lp.call_soon({
        let lp = lp.clone();
        let kinds = kinds.clone();
        move || {
            kinds
                .borrow_mut()
                .push(lp.run_forever().err().map(|e| e.kind()));
            kinds
                .borrow_mut()
                .push(lp.run_until_complete(async {}).err().map(|e| e.kind()));
        }
    })
    .unwrap();
    let task = lp
        .spawn({
            let lp = lp.clone();
            let kinds = kinds.clone();
            async move {
                kinds
                    .borrow_mut()
                    .push(lp.run_until_complete(async {}).err().map(|e| e.kind()));
            }
        })
        .unwrap();
    env.run_until(task).expect("the task failed");
    assert_eq!(
        *kinds.borrow(),
        [Some(ErrorKind::AlreadyRunning); 3],
        "nested run_forever, run_until_complete from a callback, run_until_complete from a task"
    );
}

/// LC-03 (MUST): run, `stop()`, run again loses no callback: callbacks that
/// were queued and had not run at the stop run during the next run.
pub fn stop_then_run_loses_no_callback(env: &Env) {
    let lp = env.lp();
    let t = trace();
    lp.call_soon(push(&t, "a")).unwrap();
    lp.call_soon({
        let lp = lp.clone();
        let t = t.clone();
        move || {
            lp.stop();
            lp.call_soon(push(&t, "queued at the stop")).unwrap();
        }
    })
    .unwrap();
    env.run_forever().expect("first run failed");
    assert_eq!(*t.borrow(), ["a"], "first run");
    lp.call_soon({
        let lp = lp.clone();
        move || lp.stop()
    })
    .unwrap();
    env.run_forever().expect("second run failed");
    assert_eq!(
        *t.borrow(),
        ["a", "queued at the stop"],
        "a callback queued before the stop took effect was lost"
    );
}

/// LC-04 (MUST): `stop()` while running finishes the batch of callbacks that
/// were ready when the iteration began, then exits; callbacks queued by that
/// batch run only on the next run.
pub fn stop_finishes_current_batch_only(env: &Env) {
    let lp = env.lp();
    let t = trace();
    lp.call_soon(push(&t, "x")).unwrap();
    lp.call_soon({
        let lp = lp.clone();
        let t = t.clone();
        move || {
            t.borrow_mut().push("stop");
            lp.stop();
        }
    })
    .unwrap();
    lp.call_soon({
        let lp = lp.clone();
        let t = t.clone();
        move || {
            t.borrow_mut().push("y");
            lp.call_soon(push(&t, "queued by y")).unwrap();
        }
    })
    .unwrap();
    env.run_forever().expect("first run failed");
    assert_eq!(
        *t.borrow(),
        ["x", "stop", "y"],
        "the batch that was ready when stop() was called must finish, and nothing queued by it may run"
    );
    lp.stop();
    env.run_forever().expect("second run failed");
    assert_eq!(*t.borrow(), ["x", "stop", "y", "queued by y"]);
}

/// LC-05 (MUST): `stop()` before `run_forever()`: the run polls I/O once
/// with a zero timeout, runs what is ready (including I/O callbacks), and
/// returns without blocking.
pub fn stop_before_run_polls_once(env: &Env) {
    let lp = env.lp();
    let t = trace();
    lp.call_soon({
        let lp = lp.clone();
        let t = t.clone();
        move || {
            t.borrow_mut().push("ready");
            lp.call_soon(push(&t, "queued during the run")).unwrap();
        }
    })
    .unwrap();
    let far = lp
        .call_later(Duration::from_secs(30), push(&t, "far timer"))
        .unwrap();
    let pair = if env.has(Caps::FD) {
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &b, b"x").unwrap();
        lp.add_reader(&a, {
            let t = t.clone();
            move || t.borrow_mut().push("io")
        })
        .unwrap();
        Some((a, b))
    } else {
        None
    };
    lp.stop();
    let start = Instant::now();
    env.run_forever().expect("run_forever failed");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "a pre-stopped run blocked for {:?}",
        start.elapsed()
    );
    let mut want = vec!["ready"];
    if let Some((a, _b)) = &pair {
        want.push("io");
        lp.remove_reader(a);
    }
    assert_eq!(
        *t.borrow(),
        want,
        "a pre-stopped run runs exactly what was ready (callbacks and I/O)"
    );
    far.cancel();
}

/// LC-06 (SHOULD): `is_running()` is true inside callbacks, stays true after
/// `stop()` until the run returns (D1), and is false after.
pub fn is_running_until_run_returns(env: &Env) {
    let lp = env.lp();
    assert!(!lp.is_running(), "is_running() before any run");
    let seen = trace();
    lp.call_soon({
        let lp = lp.clone();
        let seen = seen.clone();
        move || {
            seen.borrow_mut().push(lp.is_running());
            lp.stop();
            seen.borrow_mut().push(lp.is_running());
        }
    })
    .unwrap();
    env.run_forever().expect("run_forever failed");
    assert_eq!(
        *seen.borrow(),
        [true, true],
        "inside a callback, before and after stop()"
    );
    assert!(!lp.is_running(), "is_running() after the run returned");
}

/// LC-07 (MUST): `run_until_complete(f)` returns f's result or error,
/// returns at once when f is already done, and rejects a future of another
/// loop with `InvalidArgument`.
pub fn run_until_complete_returns_output(env: &Env) {
    let lp = env.lp();
    assert_eq!(env.run_until(async { 5 }), 5);
    let ok = lp.create_future::<u32>();
    lp.call_soon({
        let ok = ok.clone();
        move || ok.set_result(7).unwrap()
    })
    .unwrap();
    assert_eq!(env.run_until(ok.clone()).expect("result"), 7);
    let failed = lp.create_future::<u32>();
    failed
        .set_exception(oneloop::Error::new(ErrorKind::InvalidArgument, "nope"))
        .unwrap();
    let far = lp.call_later(Duration::from_secs(30), || {}).unwrap();
    let start = Instant::now();
    let err = env
        .run_until(failed.clone())
        .expect_err("a failed future must give its error");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "run_until_complete of a done future blocked"
    );
    far.cancel();

    let other = env.new_setup().expect("a second loop");
    let foreign = other.lp.create_future::<u32>();
    let r = env.run_until(foreign.clone());
    assert_eq!(
        r.map_err(|e| e.kind()),
        Err(ErrorKind::InvalidArgument),
        "a future of another loop must be rejected"
    );
    drop(foreign);
    other.lp.close().expect("closing the second loop");
}

/// LC-08 (MUST): if `stop()` is called before f completes,
/// `run_until_complete(f)` fails with `Stopped` and f stays pending.
pub fn stop_ends_run_until_complete(env: &Env) {
    let lp = env.lp();
    let f = lp.create_future::<u32>();
    lp.call_soon({
        let lp = lp.clone();
        move || lp.stop()
    })
    .unwrap();
    // If stop() is lost, this completes f instead, which fails the check.
    let rescue = lp
        .call_later(env.deadline(), {
            let f = f.clone();
            move || {
                let _ = f.set_result(0);
            }
        })
        .unwrap();
    let r = lp.run_until_complete(f.clone());
    rescue.cancel();
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Stopped, "error kind"),
        Ok(_) => panic!("run_until_complete completed although stop() was called first"),
    }
    assert!(!f.done(), "the future must stay pending");
}

/// LC-09 (SHOULD): after a fatal-class failure escapes `run_until_complete`,
/// the loop can be used again: the next `run_until_complete` works, and no
/// stale stop request fires.
pub fn loop_reusable_after_fatal_failure(env: &Env) {
    let lp = env.lp();
    lp.set_panic_policy(PanicPolicy::Propagate);
    lp.call_soon(|| panic!("deliberate fatal failure (LC-09)"))
        .unwrap();
    let pending = lp.create_future::<()>();
    let escaped = catch_unwind(AssertUnwindSafe(|| lp.run_until_complete(pending.clone())));
    assert!(
        escaped.is_err(),
        "under PanicPolicy::Propagate the panic must leave run_until_complete"
    );
    lp.set_panic_policy(PanicPolicy::Report);
    assert!(!lp.is_closed() && !lp.is_running());
    let out = env.run_until(async {
        oneloop::sleep(Duration::from_millis(5)).await?;
        Ok::<_, oneloop::Error>(3)
    });
    assert_eq!(out.expect("the second run"), 3, "the loop is reusable");
}

/// LC-10 (MUST): `close()` on a running loop fails and the loop keeps
/// running; `close()` is idempotent and makes `is_closed()` true.
pub fn close_running_loop_fails(env: &Env) {
    let lp = env.lp();
    let kind = Rc::new(Cell::new(None));
    let after = Rc::new(Cell::new(false));
    lp.call_soon({
        let lp = lp.clone();
        let kind = kind.clone();
        move || kind.set(Some(lp.close().map_err(|e| e.kind())))
    })
    .unwrap();
    lp.call_soon({
        let after = after.clone();
        move || after.set(true)
    })
    .unwrap();
    env.run_briefly();
    assert_eq!(
        kind.get(),
        Some(Err(ErrorKind::AlreadyRunning)),
        "close() from inside the running loop"
    );
    assert!(after.get() && !lp.is_closed(), "the loop must keep running");
    lp.close().expect("close");
    assert!(lp.is_closed());
    lp.close()
        .expect("a second close() must succeed (idempotent)");
    assert!(lp.is_closed());
}

/// LC-11 (MUST): after `close()`, every run and scheduling call fails with
/// `Closed`, `remove_reader`/`remove_writer` return false, `add_reader`
/// fails, and queued callbacks are dropped without running.
pub fn closed_loop_refuses_work(env: &Env) {
    let lp = env.lp();
    let ran = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(0));
    struct OnDrop(Rc<Cell<u32>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    for _ in 0..2 {
        let guard = OnDrop(dropped.clone());
        let ran = ran.clone();
        lp.call_soon(move || {
            let _g = guard;
            ran.set(true);
        })
        .unwrap();
    }
    let guard = OnDrop(dropped.clone());
    lp.call_later(Duration::from_millis(1), move || drop(guard))
        .unwrap();
    lp.close().expect("close");
    assert!(!ran.get(), "a queued callback ran at close");
    assert_eq!(
        dropped.get(),
        3,
        "queued callbacks and timers must be dropped at close"
    );

    let closed = |what: &str, r: Result<(), oneloop::Error>| match r {
        Err(e) if e.kind() == ErrorKind::Closed => {}
        other => panic!("{what} on a closed loop: expected Closed, got {other:?}"),
    };
    closed("run_forever", lp.run_forever());
    closed(
        "run_until_complete",
        lp.run_until_complete(async {}).map(drop),
    );
    closed("call_soon", lp.call_soon(|| {}).map(drop));
    closed(
        "call_later",
        lp.call_later(Duration::from_millis(1), || {}).map(drop),
    );
    closed("call_at", lp.call_at(lp.time(), || {}).map(drop));
    closed("call_soon_threadsafe", lp.call_soon_threadsafe(|| {}));
    closed(
        "remote call_soon_threadsafe",
        lp.remote().call_soon_threadsafe(|| {}),
    );
    closed("spawn", lp.spawn(async {}).map(drop));
    closed("run_in_executor", lp.run_in_executor(|| ()).map(drop));
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(!lp.remove_reader(&a), "remove_reader on a closed loop");
    assert!(!lp.remove_writer(&a), "remove_writer on a closed loop");
    match lp.add_reader(&a, || {}) {
        // An adapter without fd watching may answer Unsupported first.
        Err(e) if e.kind() == ErrorKind::Closed || !env.has(Caps::FD) => {}
        other => panic!("add_reader on a closed loop: expected Closed, got {other:?}"),
    }
}
