//! The event-loop policy, beyond the conformance suite's PO checks.

use std::sync::Arc;

use oneloop::{EventLoopPolicy, Loop};

/// Process-global state, which the suite must leave alone (PO-04; its checks
/// run on parallel threads): a replaced policy makes `new_event_loop`'s
/// loops, and `None` restores the default.
#[test]
fn a_replaced_policy_makes_the_new_loops() {
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
