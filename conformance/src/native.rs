//! The spec of the default loop (`oneloop::Loop::new()`: epoll on Linux,
//! `polling` elsewhere).

use std::time::Duration;

use crate::spec::{AdapterSpec, Caps, Setup};

fn native_setup() -> oneloop::Result<Setup> {
    Ok(Setup::new(oneloop::Loop::new()?))
}

/// The default loop's declaration: owned mode, fd watching, threads, the
/// executor, signals and every transport; no host to embed in.
///
/// Its clock resolution is declared as 1 ms: on Linux before 5.11 (no
/// `epoll_pwait2`) and through `polling` on other systems, waits round up
/// to whole milliseconds. Where `epoll_pwait2` works, it is much finer.
pub fn native_spec() -> AdapterSpec {
    AdapterSpec {
        name: "native",
        setup: native_setup,
        caps: Caps::ALL_BUT_HOST,
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    }
}
