//! `EM`: embedding in a host loop — written against [`HostDriver`], so the
//! glib, calloop and tokio adapters (and a later Qt or winit one) exercise
//! the same checks (PEP 3156 §Embedded Event Loops; GUARANTEES.md §3).
//!
//! [`HostDriver`]: crate::HostDriver

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, Loop};

use super::trace;
use crate::Env;

/// EM-01 (MUST): a loop embedded in a host loop that runs it says so:
/// `run_forever`/`run_until_complete` fail with `AlreadyRunning` (or
/// `Unsupported`), and `is_running()` is true while it is attached.
pub fn attached_loop_refuses_runs(env: &Env) {
    let lp = env.lp();
    assert!(lp.is_running(), "an attached loop counts as running");
    for (what, r) in [
        ("run_forever", lp.run_forever()),
        ("run_until_complete", lp.run_until_complete(async {})),
    ] {
        match r {
            Err(e) if matches!(e.kind(), ErrorKind::AlreadyRunning | ErrorKind::Unsupported) => {}
            other => panic!("{what} on an attached loop: expected AlreadyRunning, got {other:?}"),
        }
    }
    assert!(
        oneloop::get_running_loop().is_ok_and(|r| r == *lp),
        "get_running_loop() must return the attached loop"
    );
}

/// EM-02 (MUST): work created from a host-native callback is processed
/// without any other event arriving: `call_soon`, `set_result`, a new task
/// and a new timer all wake or re-arm the host loop.
pub fn host_callback_work_wakes_loop(env: &Env) {
    let lp = env.lp();
    let host = env.host_driver();
    let soon = lp.create_future::<()>();
    let fut = lp.create_future::<u32>();
    let from_task = lp.create_future::<()>();
    let timer = lp.create_future::<()>();
    host.post(Box::new({
        let lp = lp.clone();
        let (soon, fut, from_task, timer) =
            (soon.clone(), fut.clone(), from_task.clone(), timer.clone());
        move || {
            lp.call_soon(move || soon.set_result(()).unwrap()).unwrap();
            fut.set_result(5).unwrap();
            lp.spawn(async move { from_task.set_result(()).unwrap() })
                .unwrap();
            lp.call_later(Duration::ZERO, move || timer.set_result(()).unwrap())
                .unwrap();
        }
    }));
    let (a, b, c, d) =
        env.run_until(async { (soon.await, fut.await, from_task.await, timer.await) });
    a.and(b.map(drop))
        .and(c)
        .and(d)
        .expect("work posted from a host callback");
}

/// EM-03 (SHOULD): while a oneloop callback runs a nested host loop (a
/// modal dialog), no oneloop callback or task step runs re-entrantly
/// (oneloop is suspended, D4); afterwards the deferred work runs in order.
pub fn nested_host_loop_never_reenters(env: &Env) {
    let lp = env.lp();
    let host = env.shared_host().expect("a HostDriver");
    let t = trace();
    lp.call_later(Duration::from_millis(5), super::push(&t, "timer"))
        .unwrap();
    let sleeper = lp
        .spawn({
            let t = t.clone();
            async move {
                oneloop::sleep(Duration::from_millis(15)).await.unwrap();
                t.borrow_mut().push("task");
            }
        })
        .unwrap();
    lp.call_soon({
        let t = t.clone();
        move || {
            t.borrow_mut().push("modal start");
            host.iterate_nested(&|| false, Duration::from_millis(60));
            t.borrow_mut().push("modal end");
        }
    })
    .unwrap();
    env.run_until(sleeper).unwrap();
    assert_eq!(
        *t.borrow(),
        ["modal start", "modal end", "timer", "task"],
        "oneloop work ran inside the nested host loop, or out of order after it"
    );
}

/// EM-04 (SHOULD): `stop()` quits the loop even while the host is iterated
/// recursively: every nesting level unwinds.
pub fn stop_unwinds_nested_host_loop(env: &Env) {
    let lp = env.lp();
    let host = env.shared_host().expect("a HostDriver");
    let nested_for = Rc::new(Cell::new(None));
    lp.call_soon({
        let (lp, nested_for) = (lp.clone(), nested_for.clone());
        move || {
            let h2 = host.clone();
            let lp2 = lp.clone();
            h2.add_timeout(Duration::from_millis(10), Box::new(move || lp2.stop()));
            let start = Instant::now();
            host.iterate_nested(&|| false, Duration::from_secs(1));
            nested_for.set(Some(start.elapsed()));
        }
    })
    .unwrap();
    env.run_forever().expect("run_forever");
    let took = nested_for.get().expect("the nested loop returned");
    assert!(
        took < Duration::from_millis(500),
        "stop() did not unwind the nested host loop (it ran {took:?})"
    );
}

/// EM-05 (SHOULD): a host-initiated quit (the last window closed) has a
/// defined outcome: `run_until_complete` of a pending future ends with
/// `Stopped` instead of hanging.
pub fn host_quit_has_defined_outcome(env: &Env) {
    let lp = env.lp();
    let host = env.shared_host().expect("a HostDriver");
    let h2 = host.clone();
    host.add_timeout(Duration::from_millis(10), Box::new(move || h2.quit()));
    let pending = lp.create_future::<()>();
    let rescued = Rc::new(Cell::new(false));
    let rescue = lp
        .call_later(env.deadline(), {
            let (pending, rescued) = (pending.clone(), rescued.clone());
            move || {
                rescued.set(true);
                let _ = pending.set_result(());
            }
        })
        .unwrap();
    let r = lp.run_until_complete(pending.clone());
    rescue.cancel();
    assert!(
        !rescued.get(),
        "run_until_complete ignored the host's quit until the deadline"
    );
    assert_eq!(
        r.err().map(|e| e.kind()),
        Some(ErrorKind::Stopped),
        "a host quit must end the run with Stopped"
    );
}

/// EM-06 (SHOULD): iterating the host while oneloop is not running (the
/// host's own pending-events flush) runs no oneloop callback; they run only
/// while the loop runs.
pub fn host_iteration_outside_run_runs_nothing(env: &Env) {
    let lp = env.lp();
    let host = env.host_driver();
    let ran = Rc::new(Cell::new(0));
    for _ in 0..2 {
        let ran = ran.clone();
        lp.call_soon(move || ran.set(ran.get() + 1)).unwrap();
    }
    let r2 = ran.clone();
    lp.call_later(Duration::ZERO, move || r2.set(r2.get() + 1))
        .unwrap();
    for _ in 0..5 {
        host.iterate(false);
    }
    assert_eq!(
        ran.get(),
        0,
        "host iteration outside a run ran oneloop callbacks"
    );
    env.run_until_true(|| ran.get() == 3);
}

/// EM-07 (SHOULD): oneloop dispatch cannot starve the host (a stream of
/// ready callbacks still lets host callbacks run), and host callbacks cannot
/// starve oneloop.
pub fn dispatch_and_host_do_not_starve(env: &Env) {
    const CHAIN: u32 = 10_000;
    let lp = env.lp();
    let host = env.shared_host().expect("a HostDriver");
    let spins = Rc::new(Cell::new(0u32));
    let host_ran_at = Rc::new(Cell::new(None));
    fn again(lp: Loop, spins: Rc<Cell<u32>>) {
        spins.set(spins.get() + 1);
        if spins.get() < CHAIN {
            let lp2 = lp.clone();
            lp.call_soon(move || again(lp2, spins)).unwrap();
        }
    }
    lp.call_soon({
        let (lp, spins, host, host_ran_at) =
            (lp.clone(), spins.clone(), host.clone(), host_ran_at.clone());
        move || {
            let s2 = spins.clone();
            host.post(Box::new(move || host_ran_at.set(Some(s2.get()))));
            again(lp, spins);
        }
    })
    .unwrap();
    env.run_until_true(|| spins.get() >= CHAIN && host_ran_at.get().is_some());
    let at = host_ran_at.get().unwrap();
    assert!(
        at < 100,
        "a host callback waited for {at} oneloop iterations behind a re-queueing callback"
    );

    // A host callback storm: oneloop work must still run.
    let storm = Rc::new(Cell::new(true));
    fn storm_again(host: Rc<dyn crate::HostDriver>, on: Rc<Cell<bool>>, left: u32) {
        if on.get() && left > 0 {
            let h2 = host.clone();
            host.post(Box::new(move || storm_again(h2, on, left - 1)));
        }
    }
    storm_again(host.clone(), storm.clone(), 1_000_000);
    let ran = Rc::new(Cell::new(false));
    lp.call_soon({
        let (ran, storm) = (ran.clone(), storm.clone());
        move || {
            ran.set(true);
            storm.set(false);
        }
    })
    .unwrap();
    env.run_until_true(|| ran.get());
    storm.set(false);
}

/// EM-08 (SHOULD): a host-driven loop: from setup to close
/// `get_running_loop()` returns it and `is_running()` holds; N host
/// iterations dispatch queued work exactly once; after close neither holds.
pub fn host_driven_iterations_dispatch_once(env: &Env) {
    let lp = env.lp();
    let host = env.host_driver();
    assert!(lp.is_running() && oneloop::get_running_loop().is_ok_and(|r| r == *lp));
    let counts: Vec<Rc<Cell<u32>>> = (0..10).map(|_| Rc::new(Cell::new(0))).collect();
    for c in &counts {
        let c = c.clone();
        lp.call_soon(move || c.set(c.get() + 1)).unwrap();
    }
    let start = Instant::now();
    while counts.iter().any(|c| c.get() == 0) && start.elapsed() < env.deadline() {
        host.iterate(false);
    }
    for _ in 0..5 {
        host.iterate(false);
    }
    assert!(
        counts.iter().all(|c| c.get() == 1),
        "host iterations must dispatch each callback exactly once"
    );
    lp.close().expect("close");
    assert!(!lp.is_running(), "is_running() after close");
    assert!(
        oneloop::get_running_loop().is_err(),
        "get_running_loop() after close"
    );
}

/// EM-10 (SHOULD): a loop bound to a host context is unique for it while
/// open (creating a second fails) and can be made again after close; its
/// clock is monotonic and its real resolution is within the declared one.
pub fn one_loop_per_host_context(env: &Env) {
    let lp = env.lp();
    assert!(
        lp.clock_resolution() <= env.spec().clock_resolution,
        "the loop's clock resolution {:?} exceeds the declared {:?}",
        lp.clock_resolution(),
        env.spec().clock_resolution
    );
    let t0 = lp.time();
    assert!(lp.time() >= t0);
    if env.is_attached() {
        match env.new_setup() {
            Err(_) => {}
            Ok(second) => {
                let _ = second.lp.close();
                panic!(
                    "a second loop was attached to the same host context while the first was open"
                );
            }
        }
        lp.close().expect("close");
        let again = env
            .new_setup()
            .expect("a new loop after the first was closed");
        again.lp.close().expect("close the new loop");
    }
}
