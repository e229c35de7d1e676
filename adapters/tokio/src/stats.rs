//! [`DriverStats`]: what the driver did, for tests, benchmarks and
//! host drivers that need to know whether an iteration dispatched anything.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

/// The counters behind [`DriverStats`]; bumped by the driver.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) polls: Cell<u64>,
    pub(crate) dispatches: Cell<u64>,
    pub(crate) remote_wakes: Cell<u64>,
    pub(crate) fd_reports: Cell<u64>,
    pub(crate) selects: Cell<u64>,
}

impl Counters {
    pub(crate) fn bump(c: &Cell<u64>, by: u64) {
        c.set(c.get().wrapping_add(by));
    }
}

/// A live view of a [`TokioBackend`](crate::TokioBackend)'s driver (the
/// task it spawns when attached, the future each `run_*` turn blocks on
/// when owned); cheap to clone, stays valid after the loop is closed.
///
/// # Examples
///
/// ```
/// use oneloop_tokio::TokioBackend;
///
/// let backend = TokioBackend::new()?;
/// let stats = backend.stats();
/// let lp = oneloop::Loop::with_backend(backend)?;
/// lp.call_soon({ let lp = lp.clone(); move || lp.stop() })?;
/// lp.run_forever()?;
/// assert!(stats.dispatches() >= 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DriverStats {
    pub(crate) counters: Rc<Counters>,
}

impl DriverStats {
    /// Times tokio polled the driver.
    pub fn polls(&self) -> u64 {
        self.counters.polls.get()
    }

    /// Scheduler iterations the driver ran (`Driver::dispatch` calls).
    pub fn dispatches(&self) -> u64 {
        self.counters.dispatches.get()
    }

    /// Cross-thread wakes consumed (each may carry many
    /// `call_soon_threadsafe` callbacks: wakes are coalesced).
    pub fn remote_wakes(&self) -> u64 {
        self.counters.remote_wakes.get()
    }

    /// fd readiness reports handed to the scheduler.
    pub fn fd_reports(&self) -> u64 {
        self.counters.fd_reports.get()
    }

    /// Zero-timeout selects of the loop's
    /// [`Selector`](oneloop::native::Selector): one when tokio flags it,
    /// and one more right after every iteration that reported fds (level
    /// triggering on tokio's edge-triggered reactor).
    pub fn selects(&self) -> u64 {
        self.counters.selects.get()
    }
}

impl fmt::Debug for DriverStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverStats")
            .field("polls", &self.polls())
            .field("dispatches", &self.dispatches())
            .field("remote_wakes", &self.remote_wakes())
            .field("fd_reports", &self.fd_reports())
            .field("selects", &self.selects())
            .finish()
    }
}
