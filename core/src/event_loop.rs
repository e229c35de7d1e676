//! [`Loop`], the handle frameworks program against, and [`LoopBuilder`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future as StdFuture;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::panic::Location;
use std::pin::pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Driver, Interest, NextDispatch, RemoteWake};
use crate::error::{Error, ErrorKind, Result};
use crate::exception::{ExceptionContext, ExceptionHandler, PanicPolicy};
use crate::executor::ExecutorSlot;
use crate::future::Future;
use crate::handle::{CallbackCell, Handle, State, TimerHandle};
use crate::policy;
use crate::remote::RemoteLoop;
use crate::scheduler::Ready;
use crate::scheduler::fds::{FdCallback, FdRegistry};
use crate::scheduler::inbox::Shared;
use crate::scheduler::timers::TimerQueue;
use crate::task::{Task, TaskRegistry};

/// Where a loop is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Owned mode, not running.
    Idle,
    /// Owned mode, inside `run_forever`/`run_until_complete`.
    Running,
    /// Attached to a host that runs it: counts as running (EM-01).
    Attached,
    /// Closed for good.
    Closed,
}

/// Everything a loop owns. `Loop` is an `Rc` of this.
///
/// # Invariants
/// - No `RefCell` borrow of `ready`, `timers` or `fds` is held while user
///   code runs (a callback, a `Drop`, the exception handler), so user code
///   may call any `Loop` method from anywhere without a borrow panic.
/// - `dispatching` is true exactly while `dispatch` runs; a nested
///   `dispatch` returns at once (D4, CB-03, TK-04).
/// - `armed` is what the backend was last told; outside a dispatch the
///   scheduler only re-arms when the new wake-up is earlier.
pub(crate) struct LoopInner {
    /// This loop, weakly, to hand out `Loop`s and `Driver`s from `&self`.
    pub(crate) weak: Weak<LoopInner>,
    /// The host.
    pub(crate) backend: Box<dyn Backend>,
    /// What other threads may touch.
    pub(crate) shared: Arc<Shared>,
    /// Callbacks ready to run, FIFO (CB-01).
    pub(crate) ready: RefCell<VecDeque<Ready>>,
    /// An empty buffer swapped with `ready` at each iteration's snapshot,
    /// so taking the batch out allocates nothing.
    pub(crate) spare: RefCell<VecDeque<Ready>>,
    /// Pending timers.
    pub(crate) timers: RefCell<TimerQueue>,
    /// Watched fds.
    pub(crate) fds: RefCell<FdRegistry>,
    /// See [`RunState`].
    pub(crate) run_state: Cell<RunState>,
    /// `stop()` was called: halt after the current batch.
    pub(crate) stopping: Cell<bool>,
    /// The batch after `stop()` finished: the run returns, no more dispatch.
    pub(crate) halted: Cell<bool>,
    /// A dispatch is on the stack.
    pub(crate) dispatching: Cell<bool>,
    /// The last wake-up given to the backend.
    pub(crate) armed: Cell<NextDispatch>,
    /// Exception handler, panic policy, a panic waiting to be resumed.
    pub(crate) exceptions: ExceptionHandler,
    /// Debug mode: warn about callbacks slower than this.
    pub(crate) slow_callback: Cell<Option<Duration>>,
    /// How late a wake-up for timers may come to serve later timers too.
    pub(crate) timer_slack: Cell<Duration>,
    /// The executor of `run_in_executor`.
    pub(crate) executor: RefCell<ExecutorSlot>,
    /// Pending tasks, for `all_tasks` and `current_task` (TK-05).
    pub(crate) tasks: TaskRegistry,
    /// Deliberate faults (feature `fault-injection`), for the suite's own tests.
    pub(crate) faults: crate::fault::Faults,
}

/// The [timer slack](Loop::set_timer_slack) of a new loop.
pub const DEFAULT_TIMER_SLACK: Duration = Duration::from_millis(1);

static NEXT_LOOP_ID: AtomicU64 = AtomicU64::new(1);

/// The event loop: one per thread, the handle frameworks program against.
///
/// A cheap-to-clone, `!Send` handle: a loop belongs to the thread that made
/// it (D11). Every operation of PEP 3156's required set is here; other
/// threads use [`remote()`](Loop::remote).
///
/// ```
/// use std::time::Duration;
/// use oneloop::Loop;
///
/// let lp = Loop::new()?;
/// let out = lp.run_until_complete(async {
///     oneloop::sleep(Duration::from_millis(5)).await?;
///     Ok::<_, oneloop::Error>(42)
/// })??;
/// assert_eq!(out, 42);
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Loop {
    pub(crate) inner: Rc<LoopInner>,
}

impl fmt::Debug for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loop")
            .field("id", &self.inner.shared.id)
            .field("backend", &self.inner.backend.name())
            .field("state", &self.inner.run_state.get())
            .finish()
    }
}

impl PartialEq for Loop {
    fn eq(&self, other: &Loop) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Loop {}

/// Options for a new loop: debug mode and the panic policy.
///
/// ```
/// use std::time::Duration;
/// use oneloop::{LoopBuilder, PanicPolicy};
///
/// let lp = LoopBuilder::new()
///     .debug(true)
///     .slow_callback_duration(Duration::from_millis(50))
///     .panic_policy(PanicPolicy::Propagate)
///     .build()?;
/// assert!(lp.debug());
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LoopBuilder {
    debug: bool,
    slow_callback: Duration,
    panic_policy: PanicPolicy,
    timer_slack: Duration,
    faults: crate::fault::Faults,
}

impl Default for LoopBuilder {
    fn default() -> Self {
        LoopBuilder {
            debug: false,
            slow_callback: Duration::from_millis(100),
            panic_policy: PanicPolicy::Report,
            timer_slack: DEFAULT_TIMER_SLACK,
            faults: crate::fault::Faults::default(),
        }
    }
}

impl LoopBuilder {
    /// Default options: debug off, panics reported to the exception handler.
    pub fn new() -> LoopBuilder {
        LoopBuilder::default()
    }

    /// Debug mode: warn (through `tracing`) about callbacks slower than the
    /// [slow callback duration](LoopBuilder::slow_callback_duration), naming
    /// where they were scheduled.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// The threshold of debug mode's slow-callback warning (default 100 ms).
    pub fn slow_callback_duration(mut self, d: Duration) -> Self {
        self.slow_callback = d;
        self
    }

    /// What happens to a panic in a callback or task (D3).
    pub fn panic_policy(mut self, policy: PanicPolicy) -> Self {
        self.panic_policy = policy;
        self
    }

    /// The loop's [timer slack](Loop::set_timer_slack) (default
    /// [`DEFAULT_TIMER_SLACK`]).
    pub fn timer_slack(mut self, slack: Duration) -> Self {
        self.timer_slack = slack;
        self
    }

    /// Break the loop on purpose (feature `fault-injection`): for the
    /// conformance suite's proof that its checks catch broken loops.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_fault(mut self, fault: crate::fault::Fault) -> Self {
        self.faults.insert(fault);
        self
    }

    /// A loop on the default backend ([`NativeBackend`](crate::native::NativeBackend): epoll on
    /// Linux, `polling` elsewhere).
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the OS poller cannot be created.
    pub fn build(self) -> Result<Loop> {
        self.build_with(crate::native::NativeBackend::new()?)
    }

    /// A loop on `backend`.
    ///
    /// # Errors
    /// Whatever [`Backend::install`] fails with; [`ErrorKind::AlreadyRunning`]
    /// for an attached backend on a thread where another loop is running (PO-03).
    pub fn build_with(self, backend: impl Backend) -> Result<Loop> {
        let backend: Box<dyn Backend> = Box::new(backend);
        let now = backend.now();
        let attached = backend.is_attached();
        if attached && policy::running_loop_inner().is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "another event loop is running on this thread; one thread runs one loop at a time",
            ));
        }
        let id = NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared::new(
            id,
            std::thread::current().id(),
            backend.remote_waker(),
        ));
        let inner = Rc::new_cyclic(|weak| LoopInner {
            weak: weak.clone(),
            backend,
            shared,
            ready: RefCell::new(VecDeque::new()),
            spare: RefCell::new(VecDeque::new()),
            timers: RefCell::new(TimerQueue::new(now)),
            fds: RefCell::new(FdRegistry::default()),
            run_state: Cell::new(if attached {
                RunState::Attached
            } else {
                RunState::Idle
            }),
            stopping: Cell::new(false),
            halted: Cell::new(false),
            dispatching: Cell::new(false),
            armed: Cell::new(NextDispatch::OnEvent),
            exceptions: ExceptionHandler::new(self.panic_policy),
            slow_callback: Cell::new(self.debug.then_some(self.slow_callback)),
            timer_slack: Cell::new(self.timer_slack),
            executor: RefCell::new(ExecutorSlot::Unset),
            tasks: TaskRegistry::default(),
            faults: self.faults,
        });
        policy::register_local(&inner);
        inner.backend.install(Driver {
            inner: Rc::downgrade(&inner),
        })?;
        if attached {
            policy::set_running(Some(&inner));
        }
        Ok(Loop { inner })
    }
}

impl Loop {
    /// A new loop on the default backend (epoll on Linux; kqueue, event
    /// ports or poll() through `polling` elsewhere).
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the OS poller cannot be created.
    pub fn new() -> Result<Loop> {
        LoopBuilder::new().build()
    }

    /// Options for a new loop.
    pub fn builder() -> LoopBuilder {
        LoopBuilder::new()
    }

    /// A new loop on `backend`, with default options.
    ///
    /// # Errors
    /// See [`LoopBuilder::build_with`].
    pub fn with_backend(backend: impl Backend) -> Result<Loop> {
        LoopBuilder::new().build_with(backend)
    }

    pub(crate) fn from_inner(inner: Rc<LoopInner>) -> Loop {
        Loop { inner }
    }

    /// The name of the backend (`"native"`, `"tokio"`, `"glib"`, …).
    pub fn backend_name(&self) -> &str {
        self.inner.backend.name()
    }

    /// The loop's monotonic clock (TM-01); deadlines of
    /// [`call_at`](Loop::call_at) are on this clock.
    pub fn time(&self) -> Instant {
        self.inner.backend.now()
    }

    /// How late the host may dispatch a timer by its own rounding (TM-03).
    /// Timers are never early (D7).
    pub fn clock_resolution(&self) -> Duration {
        self.inner.backend.clock_resolution()
    }

    /// Schedule `f` to run once, on a later iteration, after the callbacks
    /// already queued (CB-01, CB-02). Never runs `f` inside the call.
    ///
    /// The returned [`Handle`] cancels it. Code that never cancels can use
    /// [`call_soon_detached`](Loop::call_soon_detached), which skips the
    /// cancellable cell (docs/benchmarks.md: about 1.7x the cost of a plain
    /// boxed closure with the handle, 1.3x without).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after [`close`](Loop::close).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// for i in 0..3 {
    ///     let seen = seen.clone();
    ///     lp.call_soon(move || seen.borrow_mut().push(i))?;
    /// }
    /// lp.call_soon({ let lp = lp.clone(); move || lp.stop() })?;
    /// lp.run_forever()?;
    /// assert_eq!(*seen.borrow(), [0, 1, 2]);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn call_soon(&self, f: impl FnOnce() + 'static) -> Result<Handle> {
        let location = Location::caller();
        self.inner.check_open()?;
        let cb = CallbackCell::new_rc(f, State::Ready, location);
        self.inner.push_ready_with(|| Ready::Call(cb.clone()));
        Ok(Handle { cb })
    }

    /// [`call_soon`](Loop::call_soon) without a handle: the fastest way to
    /// queue a callback, for code that never cancels it (protocol
    /// plumbing, done-callbacks, wakers). Same FIFO, same guarantees.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after [`close`](Loop::close).
    ///
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// lp.call_soon_detached(|| println!("soon"))?;
    /// lp.call_soon_detached({ let lp = lp.clone(); move || lp.stop() })?;
    /// lp.run_forever()?;
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn call_soon_detached(&self, f: impl FnOnce() + 'static) -> Result<()> {
        let location = Location::caller();
        self.inner.check_open()?;
        self.inner
            .push_ready_with(|| Ready::Boxed(Box::new(f), location));
        Ok(())
    }

    /// Schedule `f` to run `delay` from now: the same as
    /// `call_at(time() + delay, f)` (TM-02).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after [`close`](Loop::close).
    #[track_caller]
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> Result<TimerHandle> {
        let now = self.time();
        let when = now.checked_add(delay).unwrap_or_else(|| far_future(now));
        self.call_at(when, f)
    }

    /// Schedule `f` to run at `when` on the loop's clock: never before it
    /// (D7), in deadline order, equal deadlines in scheduling order (D9).
    /// A deadline in the past fires as soon as possible.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after [`close`](Loop::close).
    #[track_caller]
    pub fn call_at(&self, when: Instant, f: impl FnOnce() + 'static) -> Result<TimerHandle> {
        let location = Location::caller();
        self.inner.check_open()?;
        let cb = CallbackCell::new_rc(f, State::Scheduled, location);
        self.inner.push_timer(when, cb.clone());
        Ok(TimerHandle {
            cb,
            when,
            owner: self.inner.weak.clone(),
        })
    }

    /// Call `f` every time `fd` is readable, until
    /// [`remove_reader`](Loop::remove_reader) (FD-01: level-triggered). A
    /// second `add_reader` on the same fd replaces the callback (FD-02).
    ///
    /// `fd` is anything that lends a file descriptor (a socket, a pipe end, a
    /// `BorrowedFd`). It must stay open while it is registered: closing a
    /// registered fd is a caller error (as in asyncio), so remove it first.
    /// Removal goes by fd number, so registering through one owner and
    /// removing through another, or by the raw number, is the same
    /// registration (FD-03).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close; [`ErrorKind::InvalidArgument`] for a
    /// regular file, which is always "ready" and cannot be watched (FD-08);
    /// [`ErrorKind::Unsupported`] on a backend without fd watching;
    /// [`ErrorKind::Io`] if the OS refuses the fd.
    #[track_caller]
    pub fn add_reader(&self, fd: impl AsFd, f: impl FnMut() + 'static) -> Result<()> {
        self.inner
            .add_fd(fd.as_fd(), true, Box::new(f), Location::caller())
    }

    /// Call `f` every time `fd` is writable, until
    /// [`remove_writer`](Loop::remove_writer). See [`add_reader`](Loop::add_reader).
    ///
    /// # Errors
    /// As [`add_reader`](Loop::add_reader).
    #[track_caller]
    pub fn add_writer(&self, fd: impl AsFd, f: impl FnMut() + 'static) -> Result<()> {
        self.inner
            .add_fd(fd.as_fd(), false, Box::new(f), Location::caller())
    }

    /// Stop watching `fd` for reading. Returns whether a reader was
    /// registered (FD-03); after it returns, the reader never runs again,
    /// even if its readiness was already queued.
    pub fn remove_reader(&self, fd: impl AsFd) -> bool {
        self.inner.remove_fd(fd.as_fd().as_raw_fd(), true)
    }

    /// Stop watching `fd` for writing. See [`remove_reader`](Loop::remove_reader).
    pub fn remove_writer(&self, fd: impl AsFd) -> bool {
        self.inner.remove_fd(fd.as_fd().as_raw_fd(), false)
    }

    /// A `Send + Sync` handle for other threads: `call_soon_threadsafe`,
    /// `spawn` of `Send` futures, `stop`.
    pub fn remote(&self) -> RemoteLoop {
        RemoteLoop {
            shared: self.inner.shared.clone(),
        }
    }

    /// [`RemoteLoop::call_soon_threadsafe`] from the loop's own thread: the
    /// same FIFO as [`call_soon`](Loop::call_soon) (D8, TH-03).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close (TH-05).
    #[track_caller]
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) -> Result<()> {
        self.remote().call_soon_threadsafe(f)
    }

    /// Run `future` as a task on this loop (PEP `create_task`). Its first
    /// step is queued with `call_soon`, never run inside the call (TK-02).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close (LC-11).
    #[doc(alias = "create_task")]
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Result<Task<F::Output>>
    where
        F: StdFuture + 'static,
        F::Output: 'static,
    {
        self.inner.check_open()?;
        Ok(crate::task::spawn(self, future, Location::caller()))
    }

    /// A new pending [`Future`] bound to this loop.
    pub fn create_future<T: 'static>(&self) -> Future<T> {
        Future::new(self)
    }

    /// Run until [`stop`](Loop::stop) is called (LC-01). A `stop()` issued
    /// before the call makes it run one non-blocking iteration and return (LC-05).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close; [`ErrorKind::AlreadyRunning`] when
    /// called from inside the loop, on an attached loop, or while another
    /// loop runs on this thread (LC-02, D10); [`ErrorKind::Io`] if the
    /// backend fails.
    ///
    /// # Panics
    /// Resumes a callback's panic under [`PanicPolicy::Propagate`], after
    /// the loop was put back in a reusable state (ER-04).
    pub fn run_forever(&self) -> Result<()> {
        let guard = self.inner.enter_run()?;
        if guard.nested {
            return Ok(());
        }
        let result = loop {
            if self.inner.halted.get() {
                break Ok(());
            }
            if let Err(e) = self.inner.backend.turn() {
                break Err(Error::from(e));
            }
        };
        drop(guard);
        self.inner.exceptions.resume_pending_panic();
        result
    }

    /// Run until `future` completes and return its output (LC-07).
    ///
    /// `future` is polled on this thread between iterations and need not be
    /// `'static`; a oneloop [`Task`] or [`Future`] works as well as any other.
    ///
    /// # Errors
    /// As [`run_forever`](Loop::run_forever), and [`ErrorKind::Stopped`] if
    /// [`stop`](Loop::stop) ends the run first; the future is then dropped
    /// unfinished, so pass a [`Task`] to keep it running later (D5, LC-08).
    ///
    /// # Panics
    /// As [`run_forever`](Loop::run_forever); a panic of `future` itself
    /// unwinds out of this call.
    pub fn run_until_complete<F: StdFuture>(&self, future: F) -> Result<F::Output> {
        let guard = self.inner.enter_run()?;
        if guard.nested {
            return Err(Error::new(
                ErrorKind::Stopped,
                "fault: nested run pretended to run",
            ));
        }
        let root = Arc::new(RootWake {
            woken: AtomicBool::new(true),
            remote: self.inner.backend.remote_waker(),
        });
        let waker = Waker::from(root.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        let result = loop {
            if root.woken.swap(false, Ordering::AcqRel) {
                // Polled between host iterations: inside the host's context,
                // so that it may await the host's own futures.
                let mut polled = Poll::Pending;
                self.inner
                    .backend
                    .enter(&mut || polled = future.as_mut().poll(&mut cx));
                if let Poll::Ready(out) = polled {
                    break Ok(out);
                }
            }
            // Work the root poll queued (a spawned task, a call_soon)
            // armed the backend itself.
            if self.inner.halted.get() {
                break Err(Error::new(
                    ErrorKind::Stopped,
                    "stop() was called before the future completed",
                ));
            }
            if let Err(e) = self.inner.backend.turn() {
                break Err(Error::from(e));
            }
        };
        drop(guard);
        self.inner.exceptions.resume_pending_panic();
        result
    }

    /// Ask the loop to stop: the current batch of callbacks finishes, then
    /// `run_forever`/`run_until_complete` return (LC-04). Called before a
    /// run, it makes that run a single non-blocking iteration (LC-05).
    /// Queued callbacks are kept for the next run (LC-03).
    pub fn stop(&self) {
        if self.inner.run_state.get() == RunState::Closed {
            return;
        }
        self.inner.stopping.set(true);
        self.inner.backend.stop_requested();
        self.inner.arm_if_earlier(NextDispatch::Now);
    }

    /// Whether `stop()` was called and the current batch is still finishing.
    ///
    /// A nested host loop run from a oneloop callback (a modal dialog helper)
    /// checks it to unwind when the loop is stopped (EM-04).
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.get()
    }

    /// Whether the loop is running: inside a run (until it returns, even
    /// after `stop()`, D1), or attached to a host (EM-01).
    pub fn is_running(&self) -> bool {
        matches!(
            self.inner.run_state.get(),
            RunState::Running | RunState::Attached
        )
    }

    /// Whether the loop is attached to a host loop that runs it (its backend
    /// is in attached mode): `run_*` then answer
    /// [`ErrorKind::AlreadyRunning`] and the host drives dispatch.
    pub fn is_attached(&self) -> bool {
        self.inner.backend.is_attached()
    }

    /// Whether [`close`](Loop::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.run_state.get() == RunState::Closed
    }

    /// Close the loop: drop every queued callback without running it, stop
    /// watching every fd, detach from the host, refuse further work (LC-11).
    /// Idempotent (LC-10).
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyRunning`] inside `run_*` or inside a callback;
    /// the loop keeps running (LC-10). An attached loop may be closed from
    /// outside its callbacks: that detaches it.
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }

    /// Whether debug mode (slow-callback warnings) is on.
    pub fn debug(&self) -> bool {
        self.inner.slow_callback.get().is_some()
    }

    /// Turn debug mode on or off, keeping the slow-callback threshold at
    /// 100 ms unless [`set_slow_callback_duration`](Loop::set_slow_callback_duration) changed it.
    pub fn set_debug(&self, on: bool) {
        self.inner.slow_callback.set(on.then(|| {
            self.inner
                .slow_callback
                .get()
                .unwrap_or(Duration::from_millis(100))
        }));
    }

    /// Turn debug mode on with `d` as the slow-callback threshold.
    pub fn set_slow_callback_duration(&self, d: Duration) {
        self.inner.slow_callback.set(Some(d));
    }

    /// How late the loop may wake up for a timer so that the timers due
    /// within that span share the wake-up (default [`DEFAULT_TIMER_SLACK`]).
    pub fn timer_slack(&self) -> Duration {
        self.inner.timer_slack.get()
    }

    /// Let the loop wake up to `slack` after a timer's deadline, so that
    /// the timers due within that span run on one wake-up instead of one
    /// each: it wakes at the latest deadline within `slack` of the earliest.
    /// Timers still never run early (D7) and still run in deadline order
    /// (TM-05); each one runs at most `slack` late, plus the host's own
    /// rounding ([`clock_resolution`](Loop::clock_resolution)). Work that
    /// wakes the loop anyway (I/O, `call_soon`) runs every due timer at once.
    ///
    /// Why: each wake-up of an idle thread costs CPU (about 20 µs on the VM
    /// the benchmarks ran on, most of it the context switch), so waking once
    /// per deadline for timers a fraction of a millisecond apart costs far
    /// more than their callbacks. `Duration::ZERO` wakes for each deadline;
    /// tokio's and GLib's timers have a 1 ms granularity; Linux's own
    /// default slack for a thread's timers is 50 µs. docs/benchmarks.md
    /// measures the trade: at 1000 timers over 100 ms, 250 µs gives a
    /// 0.14 ms median lateness for 2.2x tokio's CPU, 1 ms 0.5 ms for 0.8x.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// assert_eq!(lp.timer_slack(), oneloop::DEFAULT_TIMER_SLACK);
    /// lp.set_timer_slack(Duration::from_micros(250)); // tighter, more wake-ups
    /// assert_eq!(lp.timer_slack(), Duration::from_micros(250));
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn set_timer_slack(&self, slack: Duration) {
        self.inner.timer_slack.set(slack);
    }

    /// Install `handler` as the exception handler, or restore the default
    /// (which logs through `tracing`) with `None` (ER-02).
    pub fn set_exception_handler(
        &self,
        handler: Option<impl Fn(&Loop, &ExceptionContext) + 'static>,
    ) {
        self.inner.exceptions.set(handler.map(|h| Rc::new(h) as _));
    }

    /// Whether a custom exception handler is installed.
    pub fn has_exception_handler(&self) -> bool {
        self.inner.exceptions.is_custom()
    }

    /// Send `context` to the current exception handler. A handler that
    /// panics is caught and logged; the loop survives (ER-03).
    pub fn call_exception_handler(&self, context: ExceptionContext) {
        self.inner.exceptions.call(self, &context);
    }

    /// The default handler: log `context` at error level through `tracing`.
    pub fn default_exception_handler(&self, context: &ExceptionContext) {
        crate::exception::log_context(self, context);
    }

    /// What happens to a panic in a callback or task (D3).
    pub fn panic_policy(&self) -> PanicPolicy {
        self.inner.exceptions.policy()
    }

    /// Change the panic policy (D3).
    pub fn set_panic_policy(&self, policy: PanicPolicy) {
        self.inner.exceptions.set_policy(policy);
    }

    /// The task whose step is running, if any (TK-05).
    pub fn current_task(&self) -> Option<crate::task::TaskRef> {
        self.inner.tasks.current(self.inner.shared.id)
    }

    /// The pending tasks of this loop (TK-05).
    pub fn all_tasks(&self) -> Vec<crate::task::TaskRef> {
        self.inner.tasks.all()
    }

    /// Debug counters: callbacks queued, timer entries held (live and not
    /// yet compacted), fds watched. For tests and leak checks.
    pub fn stats(&self) -> LoopStats {
        LoopStats {
            ready: self.inner.ready.borrow().len(),
            timers: self.inner.timers.borrow().len(),
            fds: self.inner.fds.borrow().entries.len(),
            tasks: self.inner.tasks.len(),
        }
    }
}

/// Counters from [`Loop::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Callbacks in the ready queue.
    pub ready: usize,
    /// Timer entries held, including cancelled ones not yet compacted.
    pub timers: usize,
    /// Watched fds.
    pub fds: usize,
    /// Pending tasks.
    pub tasks: usize,
}

/// A deadline "never" in practice, that still fits an `Instant` (TM-07).
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

/// The waker of `run_until_complete`'s root future: a flag plus a backend wake.
struct RootWake {
    woken: AtomicBool,
    remote: Arc<dyn RemoteWake>,
}

impl Wake for RootWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.remote.wake();
        }
    }
}

impl Drop for LoopInner {
    /// A loop dropped without `close()` still detaches from its host: an
    /// attached loop must not leave a dead source in a GTK or calloop loop.
    fn drop(&mut self) {
        if self.run_state.get() != RunState::Closed && !self.dispatching.get() {
            if self.run_state.get() == RunState::Running {
                self.run_state.set(RunState::Idle);
            }
            let _ = self.close();
        }
    }
}

/// Restores the loop's state when a run ends, even by unwinding.
pub(crate) struct RunGuard<'a> {
    inner: &'a LoopInner,
    /// Only with the `AllowNestedRun` fault: a nested run that changes nothing.
    nested: bool,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        let inner = self.inner;
        if self.nested {
            return;
        }
        if inner.run_state.get() == RunState::Running {
            inner.run_state.set(RunState::Idle);
        }
        // No stale stop request survives a run (LC-09).
        inner.stopping.set(false);
        inner.halted.set(false);
        policy::set_running(None);
    }
}

impl LoopInner {
    #[inline]
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.run_state.get() == RunState::Closed {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    fn enter_run(&self) -> Result<RunGuard<'_>> {
        match self.run_state.get() {
            RunState::Closed => return Err(Error::closed()),
            RunState::Running if self.faults.has(crate::fault::Fault::AllowNestedRun) => {
                return Ok(RunGuard {
                    inner: self,
                    nested: true,
                });
            }
            RunState::Running => {
                return Err(Error::new(
                    ErrorKind::AlreadyRunning,
                    "run_* called while the loop is running",
                ));
            }
            RunState::Attached => {
                return Err(Error::new(
                    ErrorKind::AlreadyRunning,
                    format!(
                        "the loop is attached to a {} host loop, which runs it",
                        self.backend.name()
                    ),
                ));
            }
            RunState::Idle => {}
        }
        if policy::running_loop_inner().is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "another event loop is running on this thread",
            ));
        }
        self.run_state.set(RunState::Running);
        self.halted.set(false);
        policy::set_running(Some(self));
        // Queued work from before the run, or a stop() before it (LC-05),
        // needs a dispatch without waiting.
        let next = self.compute_next();
        self.armed.set(next);
        self.backend.arm(next);
        Ok(RunGuard {
            inner: self,
            nested: false,
        })
    }

    fn close(&self) -> Result<()> {
        match self.run_state.get() {
            RunState::Closed => return Ok(()),
            RunState::Running => {
                return Err(Error::new(
                    ErrorKind::AlreadyRunning,
                    "cannot close a running event loop",
                ));
            }
            RunState::Attached | RunState::Idle => {}
        }
        if self.dispatching.get() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "cannot close the event loop from inside its callback",
            ));
        }
        self.run_state.set(RunState::Closed);
        if policy::running_is(self) {
            policy::set_running(None);
        }
        // Unwatch every fd, then let the backend remove its sources.
        let fds: Vec<RawFd> = self.fds.borrow().entries.keys().copied().collect();
        for fd in fds {
            let _ = self.backend.watch(fd, Interest::NONE);
        }
        self.backend.close();
        // Drop queued work without running it (LC-11). Take everything out
        // first: dropping a closure runs user `Drop` code, which may call
        // back into this loop.
        let ready = std::mem::take(&mut *self.ready.borrow_mut());
        let timers = self.timers.borrow_mut().clear();
        let fds = std::mem::take(&mut self.fds.borrow_mut().entries);
        let inbox = self.shared.close();
        let tasks = self.tasks.take_all();
        for t in &timers {
            t.cancel();
        }
        drop((ready, timers, fds, inbox));
        for t in tasks {
            t.abandon();
        }
        drop(std::mem::take(&mut *self.executor.borrow_mut()));
        policy::unregister_local(self.shared.id);
        Ok(())
    }

    fn add_fd(
        &self,
        fd: BorrowedFd<'_>,
        readable: bool,
        f: Box<dyn FnMut()>,
        location: &'static Location<'static>,
    ) -> Result<()> {
        self.check_open()?;
        check_watchable(fd)?;
        let fd = fd.as_raw_fd();
        let before = self.fds.borrow().interest(fd);
        let cb = FdCallback::new(f, location);
        let old = {
            let mut fds = self.fds.borrow_mut();
            fds.slot(fd, readable).replace(cb)
        };
        if let Some(old) = &old {
            old.active.set(false);
        }
        let after = self.fds.borrow().interest(fd);
        if before != after
            && let Err(e) = self.backend.watch(fd, after)
        {
            // Roll back so the registry matches what the backend watches.
            let mut fds = self.fds.borrow_mut();
            *fds.slot(fd, readable) = None;
            fds.prune(fd);
            drop(fds);
            return Err(match e.kind() {
                std::io::ErrorKind::Unsupported => {
                    Error::new(ErrorKind::Unsupported, e.to_string())
                }
                std::io::ErrorKind::PermissionDenied => Error::new(
                    ErrorKind::InvalidArgument,
                    format!("fd {fd} cannot be watched: {e}"),
                ),
                _ => Error::from(e),
            });
        }
        drop(old);
        Ok(())
    }

    fn remove_fd(&self, fd: RawFd, readable: bool) -> bool {
        if self.run_state.get() == RunState::Closed {
            return false;
        }
        let old = {
            let mut fds = self.fds.borrow_mut();
            if !fds.entries.contains_key(&fd) {
                return false;
            }
            let old = fds.slot(fd, readable).take();
            fds.prune(fd);
            old
        };
        let Some(old) = old else { return false };
        old.active.set(false);
        let after = self.fds.borrow().interest(fd);
        // The fd may already be closed by its owner; the registration is gone
        // from our side either way.
        let _ = self.backend.watch(fd, after);
        drop(old);
        true
    }
}

/// Refuse fds that readiness polling cannot watch: regular files and
/// directories are always "ready" and epoll rejects them (FD-08).
fn check_watchable(fd: BorrowedFd<'_>) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("fd {} cannot be watched: {e}", fd.as_raw_fd()),
        )
    })?;
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile | rustix::fs::FileType::Directory => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "fd {} is a regular file or directory, which cannot be watched for readiness",
                fd.as_raw_fd()
            ),
        )),
        _ => Ok(()),
    }
}
