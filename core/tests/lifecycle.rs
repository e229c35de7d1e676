//! Loop lifecycle on the default loop: LC-01…LC-11, D1, D5, D10.

mod util;

use std::time::Duration;

use oneloop::{ErrorKind, Loop};
use util::{Log, Watchdog, run_once, stopper};

#[test]
fn lc01_run_forever_returns_only_after_stop_and_the_stopping_callback_finishes() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_later(Duration::from_millis(5), move || {
        l.push("before stop");
        lp2.stop();
        l.push("after stop");
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["before stop", "after stop"]);
}

#[test]
fn lc02_nested_run_fails_with_already_running() {
    let lp = Loop::new().unwrap();
    let errs = Log::new();
    let (e, lp2) = (errs.clone(), lp.clone());
    lp.call_soon(move || {
        e.push(lp2.run_forever().unwrap_err().kind());
        e.push(lp2.run_until_complete(async {}).unwrap_err().kind());
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        errs.get(),
        [ErrorKind::AlreadyRunning, ErrorKind::AlreadyRunning]
    );
}

#[test]
fn lc03_callbacks_queued_at_stop_run_on_the_next_run() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_soon(move || {
        lp2.stop();
        let l2 = l.clone();
        lp2.call_soon(move || l2.push("queued during the stopping batch"))
            .unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(
        log.get().is_empty(),
        "work queued by the last batch must wait for the next run"
    );
    run_once(&lp);
    assert_eq!(log.get(), ["queued during the stopping batch"]);
}

#[test]
fn lc04_stop_finishes_the_current_batch() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let lp2 = lp.clone();
    lp.call_soon(move || lp2.stop()).unwrap();
    for i in 0..3 {
        let l = log.clone();
        lp.call_soon(move || l.push(i)).unwrap();
    }
    lp.run_forever().unwrap();
    assert_eq!(log.get(), [0, 1, 2]);
}

#[test]
fn lc05_stop_before_run_forever_runs_one_nonblocking_iteration() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let l = log.clone();
    lp.call_soon(move || l.push("ready")).unwrap();
    lp.call_later(Duration::from_secs(100), || {
        panic!("must not wait for a far timer")
    })
    .unwrap();
    lp.stop();
    let dog = Watchdog::arm(&lp, Duration::from_secs(5));
    lp.run_forever().unwrap();
    assert!(!dog.fired(), "a pre-stopped run blocked");
    assert_eq!(log.get(), ["ready"]);
}

#[test]
fn lc06_d1_is_running_stays_true_after_stop_until_the_run_returns() {
    let lp = Loop::new().unwrap();
    assert!(!lp.is_running());
    let seen = Log::new();
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        s.push(lp2.is_running());
        lp2.stop();
        s.push(lp2.is_running());
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(seen.get(), [true, true]);
    assert!(!lp.is_running());
}

#[test]
fn lc07_run_until_complete_returns_the_output_and_rejects_other_loops_futures() {
    let lp = Loop::new().unwrap();
    assert_eq!(lp.run_until_complete(async { 5 }).unwrap(), 5);
    let fut = lp.create_future::<i32>();
    fut.set_result(9).unwrap();
    assert_eq!(
        lp.run_until_complete(fut).unwrap().unwrap(),
        9,
        "a done future returns at once"
    );
    let failed = lp.create_future::<i32>();
    failed
        .set_exception(oneloop::Error::from_kind(ErrorKind::InvalidState))
        .unwrap();
    assert_eq!(
        lp.run_until_complete(failed).unwrap().unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    let other = Loop::new().unwrap();
    let foreign = other.create_future::<i32>();
    let r = lp.run_until_complete(foreign).unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn lc08_d5_stop_ends_run_until_complete_with_stopped_and_the_future_stays_pending() {
    let lp = Loop::new().unwrap();
    let fut = lp.create_future::<()>();
    lp.call_soon(stopper(&lp)).unwrap();
    let err = lp.run_until_complete(fut.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Stopped);
    assert!(!fut.done());
}

#[test]
fn lc09_the_loop_is_usable_after_a_propagated_panic() {
    let lp = Loop::builder()
        .panic_policy(oneloop::PanicPolicy::Propagate)
        .build()
        .unwrap();
    lp.call_soon(|| panic!("fatal")).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.run_forever()));
    assert!(caught.is_err(), "the panic propagates out of run_forever");
    assert!(!lp.is_running() && !lp.is_closed());
    assert_eq!(
        lp.run_until_complete(async { 3 }).unwrap(),
        3,
        "no stale stop request"
    );
}

#[test]
fn lc10_close_fails_while_running_and_is_idempotent() {
    let lp = Loop::new().unwrap();
    let errs = Log::new();
    let (e, lp2) = (errs.clone(), lp.clone());
    lp.call_soon(move || {
        e.push(lp2.close().unwrap_err().kind());
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(errs.get(), [ErrorKind::AlreadyRunning]);
    assert!(!lp.is_closed());
    lp.close().unwrap();
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn lc11_everything_fails_with_closed_after_close_and_queued_work_is_dropped() {
    let lp = Loop::new().unwrap();
    let dropped = std::rc::Rc::new(());
    let witness = dropped.clone();
    lp.call_soon(move || {
        let _keep = &witness;
        panic!("must not run after close");
    })
    .unwrap();
    lp.close().unwrap();
    assert_eq!(
        std::rc::Rc::strong_count(&dropped),
        1,
        "queued callbacks are dropped at close"
    );
    let closed = |e: oneloop::Error| assert_eq!(e.kind(), ErrorKind::Closed);
    closed(lp.run_forever().unwrap_err());
    closed(lp.run_until_complete(async {}).unwrap_err());
    closed(lp.call_soon(|| ()).unwrap_err());
    closed(lp.call_soon_threadsafe(|| ()).unwrap_err());
    closed(lp.remote().call_soon_threadsafe(|| ()).unwrap_err());
    closed(lp.call_later(Duration::ZERO, || ()).unwrap_err());
    closed(lp.call_at(lp.time(), || ()).unwrap_err());
    closed(lp.spawn(async {}).unwrap_err());
    closed(lp.run_in_executor(|| ()).unwrap_err());
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    closed(lp.add_reader(&a, || ()).unwrap_err());
    assert!(!lp.remove_reader(&a));
    assert!(!lp.remove_writer(&a));
}

#[test]
fn a_closed_loop_releases_its_fds() {
    let lp = Loop::new().unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    lp.add_reader(&a, || ()).unwrap();
    assert_eq!(lp.stats().fds, 1);
    lp.close().unwrap();
    assert_eq!(lp.stats().fds, 0);
}

#[test]
fn two_loops_cannot_run_on_one_thread_at_once() {
    let a = Loop::new().unwrap();
    let b = Loop::new().unwrap();
    let errs = Log::new();
    let (e, a2) = (errs.clone(), a.clone());
    let b2 = b.clone();
    a.call_soon(move || {
        e.push(b2.run_until_complete(async {}).unwrap_err().kind());
        a2.stop();
    })
    .unwrap();
    a.run_forever().unwrap();
    assert_eq!(errs.get(), [ErrorKind::AlreadyRunning]);
    assert_eq!(b.run_until_complete(async { 1 }).unwrap(), 1);
}

#[test]
fn dropping_the_last_handle_closes_the_loop_and_its_queue() {
    let witness = std::rc::Rc::new(());
    let w = witness.clone();
    let lp = Loop::new().unwrap();
    lp.call_soon(move || drop(w)).unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    lp.add_reader(&a, || ()).unwrap();
    drop(lp);
    assert_eq!(
        std::rc::Rc::strong_count(&witness),
        1,
        "queued callbacks were dropped with the loop"
    );
}

#[test]
fn is_stopping_is_true_from_stop_until_the_batch_ends() {
    let lp = Loop::new().unwrap();
    let seen = Log::new();
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        s.push(lp2.is_stopping());
        lp2.stop();
        s.push(lp2.is_stopping());
    })
    .unwrap();
    lp.run_forever().unwrap();
    seen.push(lp.is_stopping());
    assert_eq!(seen.get(), [false, true, false]);
}
