//! Helpers shared by the integration tests: the conformance suite's
//! watchdog and waits, a socket pair, an exception recorder.

#![allow(dead_code, unreachable_pub, unused_imports)] // each test crate uses a subset

use std::os::unix::net::UnixStream;

/// The suite's one watchdog, and its waits.
pub use oneloop_conformance::support::{
    LIMIT, Watchdog, current_tid, run_within, wait_until, wait_until_asleep,
};

/// A connected, non-blocking Unix socket pair.
pub fn socket_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Records every report to the loop's exception handler (a panic in a
/// callback is caught there, D3) and fails the test if one is left: the
/// suite's [`Tripwire`](oneloop_conformance::support::Tripwire).
pub fn record_exceptions(lp: &oneloop::Loop) -> oneloop_conformance::support::Tripwire {
    oneloop_conformance::support::Tripwire::install(lp)
}
