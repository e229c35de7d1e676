//! The default loop: a [`Backend`] on the `polling` crate (epoll, kqueue,
//! event ports, poll(), IOCP).
//!
//! `polling` gives exactly what the scheduler asks of a host: level-triggered
//! registrations (asyncio's `add_reader` semantics with no emulation),
//! `notify()` as the cross-thread wake (an eventfd write on Linux, safe in a
//! signal handler), and sub-millisecond timeouts (timerfd), so the default
//! loop sets the suite's strictest timing bar (HOSTS.md §3).

mod poller;

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Driver, Interest, NextDispatch, Readiness, RemoteWake};
use poller::Registry;

/// The backend of [`Loop::new`](crate::Loop::new), in owned mode.
pub struct NativeBackend {
    /// The OS poller and what is registered with it.
    registry: Registry,
    /// Given by the loop at install.
    driver: OnceCell<Driver>,
    /// When the scheduler next wants a dispatch.
    armed: Cell<NextDispatch>,
    /// Reused event buffer.
    events: RefCell<polling::Events>,
}

impl fmt::Debug for NativeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeBackend")
            .field("armed", &self.armed.get())
            .finish()
    }
}

impl NativeBackend {
    /// A backend with a new OS poller.
    ///
    /// # Errors
    /// If the OS poller cannot be created.
    pub fn new() -> io::Result<NativeBackend> {
        Ok(NativeBackend {
            registry: Registry::new()?,
            driver: OnceCell::new(),
            armed: Cell::new(NextDispatch::OnEvent),
            events: RefCell::new(polling::Events::new()),
        })
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &str {
        "native"
    }

    fn install(&self, driver: Driver) -> io::Result<()> {
        self.driver
            .set(driver)
            .map_err(|_| io::Error::other("backend installed twice"))
    }

    fn arm(&self, next: NextDispatch) {
        self.armed.set(next);
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        let poller = self.registry.poller();
        Arc::new(move || {
            // notify() fails only if the poller is gone, i.e. the loop was
            // dropped: nothing to wake then.
            let _ = poller.notify();
        })
    }

    fn turn(&self) -> io::Result<()> {
        let Some(driver) = self.driver.get() else {
            return Err(io::Error::other("backend not installed"));
        };
        let timeout = self
            .armed
            .get()
            .timeout(Instant::now(), Duration::from_nanos(1));
        let mut events = self.events.borrow_mut();
        events.clear();
        match self.registry.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let hangup = ev.is_interrupt() || ev.is_err().unwrap_or(false);
            driver.fd_ready(
                ev.key as RawFd,
                Readiness {
                    readable: ev.readable,
                    writable: ev.writable,
                    hangup,
                },
            );
        }
        drop(events);
        driver.dispatch();
        Ok(())
    }

    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.registry.watch(fd, interest)
    }

    fn close(&self) {
        self.registry.clear();
    }
}
