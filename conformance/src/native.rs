//! The spec of the default loop (`oneloop::Loop::new()`, on `polling`).

use std::time::Duration;

use crate::spec::{AdapterSpec, Caps, Setup};

fn native_setup() -> oneloop::Result<Setup> {
    Ok(Setup::new(oneloop::Loop::new()?))
}

/// The default loop's declaration: owned mode, fd watching, threads, the
/// executor, signals and every transport; no host to embed in.
///
/// Its clock resolution is declared as 1 ms, a safe bound for `polling` on
/// Linux (epoll waits with a timerfd, so it is much finer in practice).
pub fn native_spec() -> AdapterSpec {
    AdapterSpec {
        name: "native",
        setup: native_setup,
        caps: Caps::FD
            | Caps::THREADS
            | Caps::EXECUTOR
            | Caps::SIGNALS
            | Caps::TCP
            | Caps::UDP
            | Caps::UNIX
            | Caps::PIPES
            | Caps::SUBPROCESS,
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    }
}
