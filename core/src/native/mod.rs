//! The default loop: a [`Backend`] on the OS poller, and that poller, the
//! [`Selector`], for other backends to embed.
//!
//! What the scheduler asks of a host, the OS poller gives directly:
//! level-triggered registrations (asyncio's `add_reader` semantics with no
//! emulation), a cross-thread wake that is one `write(2)` (safe in a signal
//! handler, D6), and sub-millisecond timeouts, so the default loop sets the
//! suite's strictest timing bar (HOSTS.md §3). How often it wakes for timers
//! is the loop's [timer slack](crate::Loop::set_timer_slack), not the
//! poller's granularity.
//!
//! The platform module is picked once, as `sys`; each exposes the same
//! `Registry` (`new`, `waker`, `wait`, `watch`, `clear`, `as_fd`, `len`):
//! - Linux and Android: `epoll.rs`, epoll driven directly (one
//!   `epoll_pwait2` per iteration, nanosecond timeouts, the wake eventfd
//!   registered once; `epoll_wait` with timeouts rounded up to whole
//!   milliseconds where `epoll_pwait2` is missing: Linux before 5.11,
//!   old seccomp profiles, Android);
//! - elsewhere: `poller.rs`, on the `polling` crate (kqueue, event ports,
//!   poll()), which re-arms a timer and its notifier around each wait. Linux
//!   builds take this path too with `RUSTFLAGS="--cfg oneloop_polling"`,
//!   which is how `make test` keeps it compiled and tested (the same flag
//!   makes subprocesses do without pidfds, as elsewhere).

#[cfg(all(any(target_os = "linux", target_os = "android"), not(oneloop_polling)))]
mod epoll;
#[cfg(all(any(target_os = "linux", target_os = "android"), not(oneloop_polling)))]
use epoll as sys;
#[cfg(any(not(any(target_os = "linux", target_os = "android")), oneloop_polling))]
mod poller;
#[cfg(any(not(any(target_os = "linux", target_os = "android")), oneloop_polling))]
use poller as sys;

mod selector;

pub use selector::{Selected, Selector};

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Driver, Interest, NextDispatch, RemoteWake};

/// The backend of [`Loop::new`](crate::Loop::new), in owned mode: a
/// [`Selector`] it blocks on.
pub struct NativeBackend {
    /// The OS poller and what is registered with it.
    selector: Selector,
    /// The loop's side of the plug.
    driver: Driver,
    /// When the scheduler next wants a dispatch.
    armed: Cell<NextDispatch>,
}

impl fmt::Debug for NativeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeBackend")
            .field("selector", &self.selector)
            .field("armed", &self.armed.get())
            .finish()
    }
}

impl NativeBackend {
    /// A backend with a new OS poller, driving the loop of `driver`: the
    /// constructor to give [`LoopBuilder::build_with`](crate::LoopBuilder::build_with).
    ///
    /// # Errors
    /// If the OS poller cannot be created.
    pub fn new(driver: Driver) -> io::Result<NativeBackend> {
        Ok(NativeBackend {
            selector: Selector::new()?,
            driver,
            armed: Cell::new(NextDispatch::OnEvent),
        })
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &str {
        "native"
    }

    fn arm(&self, next: NextDispatch) {
        self.armed.set(next);
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.selector.waker()
    }

    fn turn(&self) -> io::Result<()> {
        // The clock only for a deadline: most turns wait for events only.
        let timeout = match self.armed.get() {
            NextDispatch::Now => Some(Duration::ZERO),
            NextDispatch::OnEvent => None,
            at => at.timeout(Instant::now(), Duration::from_nanos(1)),
        };
        // The loop is upgraded once for the turn, not once per report.
        let Some(target) = self.driver.target() else {
            // The loop is gone: nothing to report to, but the wait is still
            // the one the caller asked for.
            self.selector.select(timeout, |_, _| {})?;
            return Ok(());
        };
        self.selector
            .select(timeout, |fd, readiness| target.fd_ready(fd, readiness))?;
        target.dispatch();
        Ok(())
    }

    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.selector.watch(fd, interest)
    }

    fn close(&self) {
        self.selector.clear();
    }
}
