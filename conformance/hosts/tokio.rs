//! The tokio adapter's specs and host driver, for the conformance suite:
//! owned (oneloop runs the runtime) and attached (a tokio `LocalSet` runs
//! oneloop, driven by the suite through [`HostDriver`]).
//!
//! A fixture module of the conformance suite, compiled into the adapter's
//! `tests/conformance.rs` (`#[path]`), with the adapter's own dependencies.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use oneloop::Loop;
use oneloop_conformance::{AdapterSpec, Caps, Harness, HostDriver, Setup};
use oneloop_tokio::{DriverStats, TokioBackend};
use tokio::runtime::Runtime;
use tokio::task::LocalSet;

/// What both modes can do beyond the core.
const CAPS: Caps = Caps::ALL_BUT_HOST;

fn owned_setup() -> oneloop::Result<Setup> {
    Ok(Setup::new(oneloop_tokio::new_loop()?))
}

fn attached_setup() -> oneloop::Result<Setup> {
    let host = TokioHost::new()?;
    let (lp, stats) = {
        let _rt = host.rt().enter();
        let _local = host.local.enter();
        let backend = TokioBackend::attached()?;
        let stats = backend.stats();
        (Loop::with_backend(backend)?, stats)
    };
    let _ = host.stats.set(stats);
    Ok(Setup::with_host(lp, host))
}

/// A tokio program's host: a current-thread runtime and a `LocalSet`,
/// iterated by the suite.
struct TokioHost {
    /// `None` only while dropping.
    rt: Option<Runtime>,
    /// Inside `iterate`: tokio cannot run the `LocalSet` re-entrantly.
    iterating: Cell<bool>,
    local: LocalSet,
    stats: std::cell::OnceCell<DriverStats>,
    /// Host-native callbacks that ran.
    ran: Rc<Cell<u64>>,
    quit: Cell<bool>,
}

impl fmt::Debug for TokioHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioHost")
            .field("ran", &self.ran.get())
            .finish()
    }
}

impl TokioHost {
    fn new() -> std::io::Result<TokioHost> {
        Ok(TokioHost {
            rt: Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            ),
            iterating: Cell::new(false),
            local: LocalSet::new(),
            stats: std::cell::OnceCell::new(),
            ran: Rc::new(Cell::new(0)),
            quit: Cell::new(false),
        })
    }

    fn rt(&self) -> &Runtime {
        self.rt
            .as_ref()
            .expect("the runtime lives until the host is dropped")
    }

    /// Everything that counts as "the host dispatched something".
    fn activity(&self) -> (u64, u64, u64) {
        let (d, w) = self
            .stats
            .get()
            .map_or((0, 0), |s| (s.dispatches(), s.remote_wakes()));
        (d, w, self.ran.get())
    }
}

/// One host iteration: lets the `LocalSet` run what is ready (and tokio poll
/// its reactor), and with `may_block` parks until a local task is woken,
/// until something was dispatched.
struct Iterate<'a> {
    host: &'a TokioHost,
    start: (u64, u64, u64),
    may_block: bool,
    /// The tick after our last poll already ran the ready tasks.
    ticked: bool,
}

impl Future for Iterate<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if self.host.activity() != self.start {
            return Poll::Ready(true);
        }
        if self.ticked {
            if !self.may_block {
                return Poll::Ready(false);
            }
            // Park until a local task (the driver, a host callback) wakes.
            self.ticked = false;
            return Poll::Pending;
        }
        self.ticked = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl HostDriver for TokioHost {
    /// From inside a callback (the host is already being iterated) this
    /// returns `false` at once: tokio cannot drive a `LocalSet` re-entrantly
    /// (`block_on` inside a runtime panics), so a nested iteration runs
    /// nothing, which is also what D4 asks of oneloop.
    fn iterate(&self, may_block: bool) -> bool {
        if self.quit.get() || self.iterating.replace(true) {
            return false;
        }
        let it = Iterate {
            host: self,
            start: self.activity(),
            may_block,
            ticked: false,
        };
        let dispatched = self.local.block_on(self.rt(), it);
        self.iterating.set(false);
        dispatched
    }

    fn post(&self, f: Box<dyn FnOnce()>) {
        let ran = self.ran.clone();
        self.local.spawn_local(async move {
            f();
            ran.set(ran.get() + 1);
        });
    }

    fn add_timeout(&self, after: Duration, f: Box<dyn FnOnce()>) {
        let ran = self.ran.clone();
        let at = Instant::now() + after;
        self.local.spawn_local(async move {
            tokio::time::sleep_until(at.into()).await;
            f();
            ran.set(ran.get() + 1);
        });
    }

    /// tokio has no nested loop: a `LocalSet` or runtime cannot be driven
    /// from inside one of its own tasks (`block_on` panics with "Cannot start
    /// a runtime from within a runtime"). The closest a tokio program comes to
    /// a modal call is blocking its thread, which is what this does: nothing
    /// of the host or of oneloop runs until it returns.
    fn iterate_nested(&self, until: &dyn Fn() -> bool, limit: Duration) {
        oneloop_conformance::support::wait_until(Instant::now() + limit, until);
    }

    fn quit(&self) {
        self.quit.set(true);
    }
}

impl Drop for TokioHost {
    fn drop(&mut self) {
        // A setup made (and dropped) inside a callback is inside a runtime,
        // where dropping one blocks and tokio forbids that.
        if let Some(rt) = self.rt.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            rt.shutdown_background();
        }
    }
}

/// The suite on both modes of the tokio adapter.
pub(crate) fn harness() -> Harness {
    Harness::new(AdapterSpec {
        name: "tokio (owned)",
        setup: owned_setup,
        caps: CAPS,
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    })
    .with(AdapterSpec {
        name: "tokio (attached)",
        setup: attached_setup,
        caps: CAPS.union(Caps::HOST),
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    })
}
