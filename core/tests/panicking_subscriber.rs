//! A panicking `tracing` subscriber under the default exception handler:
//! the panic unwinds out of the dispatch that reported a callback's panic,
//! and the loop must come out of it usable (see
//! `panic_escaping_dispatch.rs`). Its own test binary: `tracing` caches
//! per call site whether anyone listens, and a test on another thread
//! logging the same error with no subscriber could make this one's
//! subscriber miss it.

mod util;

use std::panic::{AssertUnwindSafe, catch_unwind};
use util::PanicOn;

/// The default exception handler logs a callback's panic with
/// `tracing::error!`, and a subscriber that panics on errors unwinds out of
/// the dispatch; the loop must still close (it used to be left
/// "dispatching": `close()` failed, and a later run spun for good).
#[test]
fn a_panicking_subscriber_under_the_default_handler_leaves_the_loop_usable() {
    let lp = oneloop::Loop::new().unwrap();
    lp.call_soon(|| panic!("a user callback panics")).unwrap();
    lp.stop();
    let escaped = {
        let _sub = tracing::subscriber::set_default(PanicOn(tracing::Level::ERROR));
        catch_unwind(AssertUnwindSafe(|| lp.run_forever()))
    };
    assert!(
        escaped.is_err(),
        "the subscriber's panic unwinds out of the run"
    );
    lp.close()
        .expect("close after a panic escaped the run (the loop is left 'dispatching')");
}
