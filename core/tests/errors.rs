//! Panics and the exception handler on the default loop, beyond the
//! conformance suite's ER checks: debug mode.

mod util;

use std::time::Duration;

use oneloop::Loop;
use util::run_once;

/// Debug mode and its slow-callback warning are oneloop's own settings (the
/// PEP has no such contract): a slow callback is logged, never a failure.
#[test]
fn debug_mode_warns_about_slow_callbacks_without_failing() {
    let lp = Loop::builder()
        .debug(true)
        .slow_callback_duration(Duration::from_millis(1))
        .build()
        .unwrap();
    assert!(lp.debug());
    let reports = util::record_exceptions(&lp);
    // A deliberately slow callback: the behaviour under test.
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(3)))
        .unwrap();
    run_once(&lp);
    assert_eq!(reports.len(), 0, "a slow callback is not an error");
    lp.set_debug(false);
    assert!(!lp.debug());
}
