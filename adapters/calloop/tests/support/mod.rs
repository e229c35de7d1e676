//! Helpers shared by the integration tests: the conformance suite's
//! watchdog and waits, a socket pair, an exception recorder.

#![allow(dead_code, unreachable_pub, unused_imports)] // each test crate uses a subset

use std::os::unix::net::UnixStream;

/// The suite's one watchdog, and its waits.
pub use oneloop_conformance::support::{
    LIMIT, Watchdog, current_tid, wait_until, wait_until_asleep,
};

/// A connected, non-blocking Unix socket pair.
pub fn socket_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Records every report to the loop's exception handler (a panic in a
/// callback is caught there, D3), so a test can assert there was none.
pub fn record_exceptions(lp: &oneloop::Loop) -> std::rc::Rc<std::cell::RefCell<Vec<String>>> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(Some(
        move |_: &oneloop::Loop, ctx: &oneloop::ExceptionContext| {
            s.borrow_mut().push(format!("{ctx:?}"));
        },
    ));
    seen
}
