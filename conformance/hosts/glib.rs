//! The glib adapter's specs and host driver, for the conformance suite.
//!
//! Attached: the loop lives in its thread's `MainContext` (one per test
//! thread, as GTK's default context is one per process), which the suite
//! iterates through [`GlibHost`]; closing the loop frees the context for the
//! next check (EM-10). Owned: a fresh context per check that `run_*`
//! iterate; the same host hooks let the `EM` checks post native sources and
//! run nested loops on it.
//!
//! A fixture module of the conformance suite, compiled into the adapter's
//! `tests/conformance.rs` (`#[path]`), with the adapter's own dependencies.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glib::{ControlFlow, MainContext, Priority};
use oneloop::Loop;
use oneloop_conformance::{AdapterSpec, Caps, Harness, HostDriver, Setup};
use oneloop_glib::GlibBackend;

/// The GLib host of one check: its context, iterated by hand.
struct GlibHost {
    ctx: MainContext,
    /// The loop, so that a host quit can stop an owned run (EM-05).
    lp: Loop,
    /// Set by `quit`: ends the nested loops that are running.
    quit: Rc<Cell<bool>>,
    /// The native sources this host added, destroyed with it so that no
    /// check's leftovers fire in the next one on the same context.
    sources: RefCell<Vec<glib::Source>>,
}

impl GlibHost {
    fn new(ctx: MainContext, lp: Loop) -> GlibHost {
        GlibHost {
            ctx,
            lp,
            quit: Rc::new(Cell::new(false)),
            sources: RefCell::new(Vec::new()),
        }
    }

    fn attach_once(&self, source: glib::Source) {
        source.attach(Some(&self.ctx));
        let mut sources = self.sources.borrow_mut();
        sources.retain(|s| !s.is_destroyed());
        sources.push(source);
    }
}

impl Drop for GlibHost {
    fn drop(&mut self) {
        for s in self.sources.take() {
            s.destroy();
        }
    }
}

/// A `FnOnce` as the `Send + FnMut` GLib sources take; the guard panics if
/// it were ever touched on another thread, and these sources only run on
/// the context's (this) thread.
fn once(f: Box<dyn FnOnce()>) -> impl FnMut() -> ControlFlow + Send + 'static {
    let mut f = glib::thread_guard::ThreadGuard::new(Some(f));
    move || {
        if let Some(f) = f.get_mut().take() {
            f();
        }
        ControlFlow::Break
    }
}

impl HostDriver for GlibHost {
    fn iterate(&self, may_block: bool) -> bool {
        self.ctx.iteration(may_block)
    }

    fn post(&self, f: Box<dyn FnOnce()>) {
        self.attach_once(glib::idle_source_new(
            Some("host post"),
            Priority::DEFAULT_IDLE,
            once(f),
        ));
    }

    fn add_timeout(&self, after: Duration, f: Box<dyn FnOnce()>) {
        self.attach_once(glib::timeout_source_new(
            after,
            Some("host timeout"),
            Priority::DEFAULT,
            once(f),
        ));
    }

    fn iterate_nested(&self, until: &dyn Fn() -> bool, limit: Duration) {
        // What `g_main_loop_run` does inside a modal dialog: iterate the
        // context recursively; a 1 ms tick lets it look at `until`, the
        // deadline and a host quit.
        let tick = glib::timeout_source_new(
            Duration::from_millis(1),
            Some("nested tick"),
            Priority::HIGH,
            || ControlFlow::Continue,
        );
        tick.attach(Some(&self.ctx));
        let start = Instant::now();
        // A modal helper that knows oneloop also unwinds when the loop is
        // stopped from inside it (EM-04).
        while !until() && !self.quit.get() && !self.lp.is_stopping() && start.elapsed() < limit {
            self.ctx.iteration(true);
        }
        tick.destroy();
    }

    fn quit(&self) {
        self.quit.set(true);
        // An owned loop's host is the loop itself: quitting it ends the run
        // (EM-05, documented in `GlibBackend`). An attached loop keeps
        // running until it is closed; the host simply stops iterating.
        if !self.lp.is_attached() {
            self.lp.stop();
        }
    }
}

thread_local! {
    /// The host context of this test thread.
    static HOST_CONTEXT: MainContext = MainContext::new();
}

fn attached() -> oneloop::Result<Setup> {
    let ctx = HOST_CONTEXT.with(MainContext::clone);
    let lp = Loop::with_backend(GlibBackend::attach(&ctx))?;
    Ok(Setup::with_host(lp.clone(), GlibHost::new(ctx, lp)))
}

fn owned() -> oneloop::Result<Setup> {
    let backend = GlibBackend::new();
    let ctx = backend.main_context().clone();
    let lp = Loop::with_backend(backend)?;
    Ok(Setup::with_host(lp.clone(), GlibHost::new(ctx, lp)))
}

const CAPS: Caps = Caps::ALL_BUT_HOST.union(Caps::HOST);

/// The suite on both modes of the glib adapter.
pub(crate) fn harness() -> Harness {
    Harness::new(AdapterSpec {
        name: "glib (attached)",
        setup: attached,
        caps: CAPS,
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    })
    .with(AdapterSpec {
        name: "glib (owned)",
        setup: owned,
        caps: CAPS,
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    })
}
