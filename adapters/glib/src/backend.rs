//! [`GlibBackend`]: the oneloop [`Backend`] on a GLib [`MainContext`].

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glib::translate::{IntoGlib, ToGlibPtr};
use glib::{MainContext, Priority};
use oneloop::backend::{Backend, Driver, Interest, IntoBackend, NextDispatch, RemoteWake};
use oneloop::{Loop, Result};

use crate::source::{LoopSource, monotonic_us};

/// Ready times further than this are clamped: GLib computes its poll
/// timeout as `ready_time - now + 999` in `gint64`, which must not overflow
/// (TM-07). An early dispatch only re-arms.
const MAX_AHEAD_US: i64 = 3_600_000_000;

/// A loop attached to `ctx`, which someone else iterates (typically
/// `MainContext::default()`, run by `gtk::Application::run`).
///
/// The loop counts as running until [`Loop::close`]; `run_*` answer
/// [`AlreadyRunning`](oneloop::ErrorKind::AlreadyRunning).
///
/// # Errors
/// [`ErrorKind::Io`](oneloop::ErrorKind::Io) if `ctx` already has an open
/// oneloop loop or is owned by another thread;
/// [`ErrorKind::AlreadyRunning`](oneloop::ErrorKind::AlreadyRunning) if
/// another loop is running on this thread.
///
/// # Examples
///
/// ```
/// let ctx = glib::MainContext::new();
/// let lp = oneloop_glib::attach(&ctx)?;
/// assert!(oneloop_glib::attach(&ctx).is_err()); // one loop per context
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn attach(ctx: &MainContext) -> Result<Loop> {
    Loop::with_backend(GlibBackend::attach(ctx))
}

/// An owned loop on a **fresh** [`MainContext`], driven by
/// [`run_forever`](Loop::run_forever) and
/// [`run_until_complete`](Loop::run_until_complete).
///
/// While a `run_*` call runs, the fresh context is the thread-default one,
/// so glib and gio code that uses the thread-default context, called from
/// the loop's tasks and callbacks, attaches there and runs
/// (`glib::timeout_future`, `glib::spawn_future_local`, gio's `*_future`
/// and async calls). GLib's classic functions (`glib::timeout_add_local`,
/// `glib::idle_add_local`, `g_timeout_add`) and `MainContext::default()`
/// reach the process's **global** default context instead, which this
/// loop does not iterate: they never run on it. For them, use
/// [`new_default_loop`] (owned) or [`attach`] (someone else runs the
/// default context).
///
/// # Errors
/// As [`Loop::with_backend`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop_glib::new_loop()?;
/// let task = lp.spawn(async {
///     glib::timeout_future(Duration::from_millis(1)).await;
///     oneloop::sleep(Duration::from_millis(1)).await?;
///     Ok::<_, oneloop::Error>(7)
/// })?;
/// let out = lp.run_until_complete(task)???; // run, task, body
/// assert_eq!(out, 7);
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn new_loop() -> Result<Loop> {
    Loop::with_backend(GlibBackend::new())
}

/// An owned loop on the process's global [`MainContext::default()`], the
/// context GTK and most GLib code use: `run_*` iterate it, so everything
/// registered there runs beside oneloop's callbacks, whether it was added
/// before the run or from inside it (`glib::timeout_add_local`,
/// `MainContext::default().spawn_local`, GTK's own sources).
///
/// Use it for a program that has no `gtk::Application::run` or
/// `glib::MainLoop` of its own (a command-line tool using gio, a test); when
/// something else iterates the default context, [`attach`] to it instead.
///
/// # Errors
/// [`ErrorKind::Io`](oneloop::ErrorKind::Io) if the default context already
/// has an open oneloop loop (EM-10: one per context; close the first) or is
/// owned by another thread; as [`Loop::with_backend`] otherwise.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop_glib::new_default_loop()?;
/// let fired = lp.create_future::<&str>();
/// // GLib-native code on the default context, registered before the run:
/// let f = fired.clone();
/// glib::timeout_add_local_once(Duration::from_millis(1), move || {
///     let _ = f.set_result("glib's own timeout");
/// });
/// assert_eq!(lp.run_until_complete(fired)??, "glib's own timeout");
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn new_default_loop() -> Result<Loop> {
    Loop::with_backend(GlibBackend::owned(&MainContext::default()))
}

/// The main contexts a loop is bound to (EM-10: one loop per context while
/// open), by address; the backend holds a reference to its context, so an
/// address cannot be reused while it is listed.
static CLAIMED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Owned,
    Attached,
}

/// The oneloop backend for GLib: one custom `GSource` on a [`MainContext`].
///
/// - [`GlibBackend::attach`] (the main use): the loop lives inside a context
///   someone else iterates, typically the default context that
///   `gtk::Application::run` drives. The loop counts as running from
///   creation until `close()`; `run_forever`/`run_until_complete` answer
///   [`AlreadyRunning`](oneloop::ErrorKind::AlreadyRunning).
/// - [`GlibBackend::new`]: owned mode on a fresh context, which
///   `run_forever`/`run_until_complete` iterate (pushed as the thread-default
///   context while they do, so glib futures awaited in tasks find it).
///
/// # Priorities (EM-07)
///
/// GLib dispatches by strict priority. The oneloop source runs at
/// [`priority`](GlibBuilder::priority) (default [`Priority::DEFAULT`], the
/// priority of GTK input) when it is woken by a timer, an fd, another thread
/// or new work from host code; when a batch of callbacks leaves follow-up
/// work (callbacks queued by callbacks, a task that woke itself), the
/// follow-up runs at [`yield_priority`](GlibBuilder::yield_priority)
/// (default [`Priority::DEFAULT_IDLE`]). So a oneloop callback storm lets
/// GTK input, redraw (`HIGH_IDLE + 20`) and idles run between its batches,
/// and a burst of host sources at `DEFAULT` delays oneloop only until the
/// burst is over.
///
/// # When the host quits
///
/// An attached loop does not end when its host stops iterating (the last
/// window closed, `Application::run` returned): it stays attached, with its
/// work queued, until [`Loop::close`](oneloop::Loop::close), which drops
/// that work and removes the source. Close it after `run` returns. An owned
/// loop's context is its own: nothing else quits it.
///
/// # glib futures
///
/// glib's futures (`glib::timeout_future`, gio's `*_future` methods) attach
/// their sources to the thread-default context when first polled. oneloop
/// task steps run inside the source's dispatch, where that is this
/// backend's context (attached: whatever context the host pushed, normally
/// the default one; owned: pushed by each iteration), so they can be
/// awaited in [`Loop::spawn`](oneloop::Loop::spawn)ed tasks, and in owned
/// mode in the future given to `run_until_complete` too (it is polled with
/// the context pushed).
///
/// # Nested main loops (D4)
///
/// While a oneloop callback runs a nested main loop on the same context (a
/// modal dialog, `MainContext::iteration` from a callback), oneloop is
/// **suspended**: the source is not re-entered and its fds are not polled;
/// everything that became ready meanwhile runs in order once the callback
/// returns. A `stop()` issued from a host callback inside the nested loop
/// wakes the context, and a nested loop that checks
/// [`Loop::is_stopping`](oneloop::Loop::is_stopping) between iterations
/// unwinds at once (EM-04); a nested loop that does not know about oneloop
/// (a GTK 3 `gtk_dialog_run`) ends when its own code ends it, and the stop
/// takes effect then. Prefer awaiting a dialog's response in a task (GTK
/// 4's dialogs are asynchronous).
///
/// # Panics in callbacks (D3)
///
/// Nothing unwinds into GLib: the scheduler catches a callback's panic and
/// reports it to the exception handler, and the source's C trampolines
/// catch anything else. Under
/// [`PanicPolicy::Propagate`](oneloop::PanicPolicy::Propagate) an owned
/// loop resumes the panic out of `run_*` once the GLib iteration has
/// returned; an attached loop has no run to unwind out of, so it reports.
///
/// # Examples
///
/// ```
/// use oneloop::Loop;
/// use oneloop_glib::GlibBackend;
///
/// let ctx = glib::MainContext::new();
/// let lp = Loop::with_backend(GlibBackend::attach(&ctx))?;
/// assert!(lp.is_attached() && lp.is_running());
/// let hits = std::rc::Rc::new(std::cell::Cell::new(0));
/// lp.call_soon({ let hits = hits.clone(); move || hits.set(1) })?;
/// while hits.get() == 0 {
///     ctx.iteration(true); // what the host's main loop does
/// }
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub struct GlibBackend {
    ctx: MainContext,
    mode: Mode,
    priority: Priority,
    yield_priority: Priority,
    woken: Arc<AtomicBool>,
    source: LoopSource,
    /// The clock pair that maps `Instant`s to GLib's monotonic µs.
    base_instant: Instant,
    base_us: i64,
    /// Whether this backend holds its context's entry in [`CLAIMED`].
    claimed: Cell<bool>,
}

impl fmt::Debug for GlibBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlibBackend")
            .field("mode", &self.mode)
            .field("priority", &self.priority)
            .field("yield_priority", &self.yield_priority)
            .finish_non_exhaustive()
    }
}

/// How to build a [`GlibBackend`]: the context, the mode and the
/// priorities. Give it to [`Loop::with_backend`] (it is an
/// [`IntoBackend`]), which builds the backend with the loop's driver.
///
/// # Examples
///
/// oneloop's work behind GTK's input and redraw, even when woken:
///
/// ```
/// use glib::Priority;
/// use oneloop::Loop;
/// use oneloop_glib::GlibBackend;
///
/// let ctx = glib::MainContext::new();
/// let builder = GlibBackend::attach(&ctx)
///     .priority(Priority::DEFAULT_IDLE)
///     .yield_priority(Priority::LOW);
/// assert_eq!(builder.main_context(), &ctx);
/// let lp = Loop::with_backend(builder)?;
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GlibBuilder {
    ctx: MainContext,
    mode: Mode,
    priority: Priority,
    yield_priority: Priority,
}

impl GlibBuilder {
    fn with_mode(ctx: MainContext, mode: Mode) -> GlibBuilder {
        GlibBuilder {
            ctx,
            mode,
            priority: Priority::DEFAULT,
            yield_priority: Priority::DEFAULT_IDLE,
        }
    }

    /// The priority of the oneloop source when it is woken by events and new
    /// work (default [`Priority::DEFAULT`]).
    pub fn priority(mut self, priority: Priority) -> GlibBuilder {
        self.priority = priority;
        self
    }

    /// The priority of follow-up batches (default
    /// [`Priority::DEFAULT_IDLE`]); see [Priorities](GlibBackend#priorities-em-07).
    pub fn yield_priority(mut self, priority: Priority) -> GlibBuilder {
        self.yield_priority = priority;
        self
    }

    /// The context the backend will run in.
    pub fn main_context(&self) -> &MainContext {
        &self.ctx
    }
}

impl IntoBackend for GlibBuilder {
    type Backend = GlibBackend;

    fn attached(&self) -> bool {
        self.mode == Mode::Attached
    }

    /// Claim the context and attach the loop's source to it.
    ///
    /// # Errors
    /// [`io::ErrorKind::ResourceBusy`] if another thread owns the context;
    /// [`io::ErrorKind::AlreadyExists`] if it already has an open oneloop
    /// loop (EM-10).
    fn into_backend(self, driver: Driver) -> io::Result<GlibBackend> {
        // A context owned by another thread cannot be run from this one.
        drop(self.ctx.acquire().map_err(|_| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "the main context is owned by another thread; build the loop on the thread that iterates it",
            )
        })?);
        claim(&self.ctx)?;
        let woken = Arc::new(AtomicBool::new(false));
        let source = LoopSource::new(&self.ctx, self.priority, woken.clone(), driver)
            .inspect_err(|_| release(&self.ctx))?;
        Ok(GlibBackend {
            ctx: self.ctx,
            mode: self.mode,
            priority: self.priority,
            yield_priority: self.yield_priority,
            woken,
            source,
            base_instant: Instant::now(),
            base_us: monotonic_us(),
            claimed: Cell::new(true),
        })
    }
}

/// Bind `ctx` to one loop or guest (EM-10) until [`release`].
///
/// # Errors
/// [`io::ErrorKind::AlreadyExists`] if it is bound already.
pub(crate) fn claim(ctx: &MainContext) -> io::Result<()> {
    let key = ctx_key(ctx);
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    if claimed.contains(&key) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "this main context already has an open oneloop loop or guest (EM-10); close it first",
        ));
    }
    claimed.push(key);
    Ok(())
}

/// Undo [`claim`].
pub(crate) fn release(ctx: &MainContext) {
    let key = ctx_key(ctx);
    CLAIMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&k| k != key);
}

fn ctx_key(ctx: &MainContext) -> usize {
    let ptr: *mut glib::ffi::GMainContext = ctx.to_glib_none().0;
    ptr as usize
}

impl GlibBackend {
    /// Attached mode: run inside `ctx`, which someone else iterates (GTK's
    /// `Application::run`, a `MainLoop`, a host's own iteration).
    ///
    /// Build the loop on the thread that iterates `ctx`. Building fails
    /// if that context already has an open oneloop loop (EM-10) or is owned
    /// by another thread. A context that another thread starts iterating
    /// later never runs the loop's callbacks there: the first dispatch on
    /// that thread removes the loop's source (with a message on stderr),
    /// and the loop is no longer served.
    #[doc(alias = "g_source_attach")]
    pub fn attach(ctx: &MainContext) -> GlibBuilder {
        GlibBuilder::with_mode(ctx.clone(), Mode::Attached)
    }

    /// Owned mode on a fresh [`MainContext`]: `run_forever` and
    /// `run_until_complete` iterate it.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> GlibBuilder {
        GlibBuilder::with_mode(MainContext::new(), Mode::Owned)
    }

    /// Owned mode on `ctx`: `run_*` iterate it (and push it as the
    /// thread-default context while they do).
    pub fn owned(ctx: &MainContext) -> GlibBuilder {
        GlibBuilder::with_mode(ctx.clone(), Mode::Owned)
    }

    /// The context this backend runs in.
    pub fn main_context(&self) -> &MainContext {
        &self.ctx
    }

    fn release_claim(&self) {
        if self.claimed.replace(false) {
            release(&self.ctx);
        }
    }

    /// `t` as a GLib ready time: monotonic µs, rounded up (D7), clamped.
    fn ready_time(&self, t: Instant) -> i64 {
        let ahead = t.saturating_duration_since(self.base_instant);
        let us = i64::try_from(ahead.as_nanos().div_ceil(1000)).unwrap_or(i64::MAX);
        let target = self.base_us.saturating_add(us);
        target.min(monotonic_us().saturating_add(MAX_AHEAD_US))
    }
}

impl Backend for GlibBackend {
    fn name(&self) -> &str {
        "glib"
    }

    fn enter(&self, f: &mut dyn FnMut()) {
        // `run_until_complete`'s root future is polled between iterations:
        // push the context as thread-default so glib and gio futures it
        // awaits attach their sources here.
        if self.mode == Mode::Owned && self.ctx.with_thread_default(&mut *f).is_ok() {
            return;
        }
        f()
    }

    fn arm(&self, next: NextDispatch) {
        let source = &self.source;
        // A run begins with an `arm`: the fds left out since a dispatch
        // found the loop not running are polled again.
        source.armed();
        match next {
            NextDispatch::Now => {
                // At the end of a batch `Now` means follow-up work: yield
                // to the host's input, redraw and idles first (EM-07).
                let p = if source.state().in_dispatch.get() {
                    self.yield_priority
                } else {
                    self.priority
                };
                source.set_priority(p.into_glib());
                source.set_ready_time(0);
            }
            NextDispatch::At(t) => {
                source.set_priority(self.priority.into_glib());
                source.set_ready_time(self.ready_time(t));
            }
            NextDispatch::OnEvent => {
                source.set_priority(self.priority.into_glib());
                source.set_ready_time(-1);
            }
        }
    }

    fn stop_requested(&self) {
        // A nested loop blocked in `iteration(true)` must get to look at
        // `Loop::is_stopping` (EM-04).
        self.ctx.wakeup();
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        Arc::new(ContextWaker {
            woken: self.woken.clone(),
            ctx: self.ctx.clone(),
        })
    }

    fn turn(&self) -> io::Result<()> {
        if self.mode == Mode::Attached {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an attached glib loop is run by its host",
            ));
        }
        self.ctx
            .with_thread_default(|| self.ctx.iteration(true))
            .map(drop)
            .map_err(|e| io::Error::new(io::ErrorKind::ResourceBusy, e.to_string()))
    }

    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.source.watch(fd, interest)?;
        Ok(())
    }

    fn is_attached(&self) -> bool {
        self.mode == Mode::Attached
    }

    fn now(&self) -> Instant {
        // GLib's clock, so that ready times compare exactly (EM-10).
        let us = monotonic_us().saturating_sub(self.base_us).max(0);
        self.base_instant + Duration::from_micros(us as u64)
    }

    fn clock_resolution(&self) -> Duration {
        // GLib rounds its poll timeout up to whole milliseconds.
        Duration::from_millis(1)
    }

    fn close(&self) {
        self.source.destroy();
        self.release_claim();
    }
}

impl Drop for GlibBackend {
    fn drop(&mut self) {
        self.release_claim();
    }
}

/// The remote wake: a flag the source's `check` reads, then
/// `g_main_context_wakeup` (thread-safe; a write to GLib's wakeup fd).
struct ContextWaker {
    woken: Arc<AtomicBool>,
    ctx: MainContext,
}

impl RemoteWake for ContextWaker {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.ctx.wakeup();
    }
}
