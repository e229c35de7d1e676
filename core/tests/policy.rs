//! The per-thread current loop: PO-01…PO-04.

use std::sync::Arc;

use oneloop::{ErrorKind, EventLoopPolicy, Loop};

#[test]
fn po01_get_running_loop_inside_and_outside_a_run() {
    let lp = Loop::new().unwrap();
    assert_eq!(
        oneloop::get_running_loop().unwrap_err().kind(),
        ErrorKind::NotRunning
    );
    let inside = lp
        .run_until_complete(async { oneloop::get_running_loop() })
        .unwrap()
        .unwrap();
    assert_eq!(inside, lp);
    let lp2 = lp.clone();
    let t = lp
        .spawn(async move { oneloop::get_running_loop().unwrap() == lp2 })
        .unwrap();
    assert!(lp.run_until_complete(t).unwrap().unwrap());
    assert_eq!(
        oneloop::get_running_loop().unwrap_err().kind(),
        ErrorKind::NotRunning,
        "after the run returns"
    );
}

#[test]
fn po02_the_current_loop_is_what_was_set_or_an_error() {
    std::thread::spawn(|| {
        assert_eq!(
            oneloop::get_event_loop().unwrap_err().kind(),
            ErrorKind::NotRunning
        );
        let lp = oneloop::new_event_loop().unwrap();
        oneloop::set_event_loop(Some(lp.clone()));
        assert_eq!(oneloop::get_event_loop().unwrap(), lp);
        oneloop::set_event_loop(None);
        assert!(oneloop::get_event_loop().is_err());
    })
    .join()
    .unwrap();
}

#[test]
fn po03_the_current_loop_is_per_thread() {
    let lp = Loop::new().unwrap();
    oneloop::set_event_loop(Some(lp));
    std::thread::spawn(|| assert!(oneloop::get_event_loop().is_err(), "a new thread has none"))
        .join()
        .unwrap();
    oneloop::set_event_loop(None);
}

#[test]
fn po04_fresh_loops_need_no_global_state_and_a_replaced_policy_is_used() {
    for _ in 0..3 {
        let lp = Loop::new().unwrap();
        assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
        lp.close().unwrap();
    }
    struct Debugging;
    impl EventLoopPolicy for Debugging {
        fn new_event_loop(&self) -> oneloop::Result<Loop> {
            Loop::builder().debug(true).build()
        }
    }
    oneloop::set_event_loop_policy(Some(Arc::new(Debugging)));
    let lp = oneloop::new_event_loop().unwrap();
    oneloop::set_event_loop_policy(None);
    assert!(lp.debug());
    assert!(!oneloop::new_event_loop().unwrap().debug());
}
