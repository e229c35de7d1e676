//! `PO`: the current loop and the policy — per thread, never silently
//! empty (PEP 3156 §Event Loop Policy; asyncio `get_running_loop`).

use std::cell::Cell;
use std::rc::Rc;

use oneloop::ErrorKind;

use crate::Env;

/// PO-01 (MUST): `get_running_loop()` inside a callback or a task returns
/// this loop; outside any run, and after the run returns, it fails with
/// `NotRunning` (an attached loop counts as running while attached).
pub fn get_running_loop_inside_and_outside(env: &Env) {
    let lp = env.lp();
    if !env.is_attached() {
        assert_eq!(
            oneloop::get_running_loop().err().map(|e| e.kind()),
            Some(ErrorKind::NotRunning),
            "get_running_loop() before the run"
        );
    }
    let in_callback = Rc::new(Cell::new(false));
    lp.call_soon({
        let (lp, in_callback) = (lp.clone(), in_callback.clone());
        move || in_callback.set(oneloop::get_running_loop().is_ok_and(|r| r == lp))
    })
    .unwrap();
    let task = lp
        .spawn({
            let lp = lp.clone();
            async move { oneloop::get_running_loop().is_ok_and(|r| r == lp) }
        })
        .unwrap();
    let in_task = env.run_until(task).expect("task");
    assert!(in_callback.get(), "get_running_loop() inside a callback");
    assert!(in_task, "get_running_loop() inside a task");
    if !env.is_attached() {
        assert_eq!(
            oneloop::get_running_loop().err().map(|e| e.kind()),
            Some(ErrorKind::NotRunning),
            "get_running_loop() after the run returned"
        );
    }
}

/// PO-02 (MUST): the current-loop lookup never returns an empty value
/// silently: it returns the loop that was set or fails; setting none makes
/// later lookups fail.
pub fn current_loop_lookup_never_empty(env: &Env) {
    let lp = env.lp();
    oneloop::set_event_loop(Some(lp.clone()));
    let got = oneloop::get_event_loop().expect("get_event_loop after set_event_loop");
    assert!(
        got == *lp,
        "get_event_loop() must return the loop that was set"
    );
    oneloop::set_event_loop(None);
    if !env.is_attached() {
        assert!(
            oneloop::get_event_loop().is_err(),
            "get_event_loop() after set_event_loop(None) must fail"
        );
    }
}

/// PO-03 (SHOULD): the current loop is per thread: a new thread has none
/// until one is set; two loops cannot run on one thread at the same time.
pub fn current_loop_is_per_thread(env: &Env) {
    let lp = env.lp();
    oneloop::set_event_loop(Some(lp.clone()));
    let other_thread = std::thread::spawn(|| {
        (
            oneloop::get_event_loop().is_err(),
            oneloop::get_running_loop().is_err(),
        )
    })
    .join()
    .unwrap();
    oneloop::set_event_loop(None);
    assert_eq!(
        other_thread,
        (true, true),
        "a new thread must have no current or running loop"
    );

    let outcome = Rc::new(Cell::new(None));
    let setup = env.spec().setup;
    lp.call_soon({
        let outcome = outcome.clone();
        move || {
            let r = match setup() {
                Err(e) => Err(e.kind()),
                Ok(second) => {
                    let r = second.lp.run_until_complete(async {}).map_err(|e| e.kind());
                    let _ = second.lp.close();
                    r
                }
            };
            outcome.set(Some(r));
        }
    })
    .unwrap();
    env.run_briefly();
    assert_eq!(
        outcome.get(),
        Some(Err(ErrorKind::AlreadyRunning)),
        "starting a second loop inside the first one's callback must fail with AlreadyRunning"
    );
}

/// PO-04 (SHOULD): an adapter can build a fresh, independent loop per test
/// without depending on or changing process-global defaults, and a second
/// loop can be created after the first is closed.
pub fn fresh_loops_are_independent(env: &Env) {
    let lp = env.lp();
    let before = oneloop::get_event_loop().is_ok();
    lp.close().expect("close the first loop");
    let second = env
        .new_setup()
        .expect("a second loop after the first was closed");
    assert_eq!(
        oneloop::get_event_loop().is_ok(),
        before || second.lp.is_attached(),
        "building a loop changed the thread's current loop"
    );
    let ran = Rc::new(Cell::new(false));
    second
        .lp
        .call_soon({
            let ran = ran.clone();
            move || ran.set(true)
        })
        .unwrap();
    if second.lp.is_attached() {
        let host = second
            .host
            .as_ref()
            .expect("an attached setup gives a HostDriver");
        for _ in 0..1000 {
            if ran.get() {
                break;
            }
            host.iterate(false);
        }
    } else {
        second.lp.stop();
        second.lp.run_forever().expect("running the second loop");
    }
    assert!(ran.get(), "the second loop must run its callbacks");
    second.lp.close().expect("close the second loop");
}
