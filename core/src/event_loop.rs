//! [`Loop`], the handle frameworks program against, and [`LoopBuilder`].

use std::cell::RefCell;
use std::fmt;
use std::future::Future as StdFuture;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::panic::Location;
use std::pin::pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Dispatch, Driver, IntoBackend, NextDispatch, Readiness, RemoteWake};
use crate::context;
use crate::error::{Error, ErrorKind, Result};
use crate::exception::{ExceptionContext, ExceptionHandler, PanicPolicy};
use crate::executor::ExecutorSlot;
use crate::fault::Fault;
use crate::handle::{Handle, TimerHandle};
use crate::run_context::RunContexts;
use crate::scheduler::callback::{CallbackCell, State};
use crate::scheduler::fds::FdCallback;
use crate::scheduler::inbox::Shared;
use crate::scheduler::{Ready, RunState, Scheduler, Settings};
use crate::task::state::TaskRegistry;

/// Everything a loop owns: the [`Scheduler`] and the services around it.
/// `Loop` is an `Rc` of this.
///
/// # Ownership
/// Only user handles (`Loop`) hold it strongly. Everything it owns, and
/// everything oneloop hands out that it may end up owning (futures, tasks,
/// timers, fd callbacks of transports), holds it weakly, so dropping the
/// last user handle drops it, and its `Drop` closes it.
pub(crate) struct LoopInner {
    /// This loop, weakly, to hand out `Loop`s and `Driver`s from `&self`.
    pub(crate) weak: Weak<LoopInner>,
    /// The engine: queues, timers, fds, inbox, the backend.
    pub(crate) sched: Scheduler,
    /// Exception handler, panic policy, a panic waiting to be resumed.
    pub(crate) exceptions: ExceptionHandler,
    /// The executor of `run_in_executor`.
    pub(crate) executor: RefCell<ExecutorSlot>,
    /// Pending tasks, for `all_tasks` (TK-05).
    pub(crate) tasks: TaskRegistry,
    /// Entered around every batch and root poll (bridges).
    pub(crate) contexts: RunContexts,
    /// The process's fork count when the loop was made: another count is
    /// a fork child's copy of it ([`crate::fork::generation`]).
    generation: u64,
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
/// # Examples
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
            .field("id", &self.inner.sched.shared().id)
            .field("backend", &self.inner.sched.backend_name())
            .field("state", &self.inner.sched.state())
            .finish()
    }
}

impl PartialEq for Loop {
    fn eq(&self, other: &Loop) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Loop {}

/// A [`Loop`] held weakly (see [`Loop::downgrade`]).
#[derive(Clone)]
pub(crate) struct WeakLoop(Weak<LoopInner>);

impl WeakLoop {
    /// The loop, while a user handle keeps it.
    pub(crate) fn upgrade(&self) -> Option<Loop> {
        self.0.upgrade().map(Loop::from_inner)
    }

    /// The loop, or [`ErrorKind::Closed`] once it was dropped.
    pub(crate) fn get(&self) -> Result<Loop> {
        self.upgrade().ok_or_else(Error::closed)
    }
}

/// Options for a new loop: debug mode and the panic policy.
///
/// # Examples
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
        self.build_with(crate::native::NativeBackend::new)
    }

    /// A loop on the backend that `make` builds from the loop's [`Driver`]:
    /// a closure or an adapter's backend configuration ([`IntoBackend`]).
    ///
    /// `make` runs once, here, on the thread that will run the loop; the
    /// backend keeps the driver to report readiness and dispatch (see
    /// [`backend`](crate::backend) for the contract).
    ///
    /// # Errors
    /// Whatever `make` fails with; [`ErrorKind::AlreadyRunning`] for an
    /// attached backend on a thread where another loop is running (PO-03).
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::{LoopBuilder, native::NativeBackend};
    ///
    /// let lp = LoopBuilder::new().build_with(|driver| NativeBackend::new(driver))?;
    /// assert_eq!(lp.backend_name(), "native");
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn build_with(self, make: impl IntoBackend) -> Result<Loop> {
        let another_runs = || {
            Error::new(
                ErrorKind::AlreadyRunning,
                "another event loop is running on this thread; one thread runs one loop at a time",
            )
        };
        if make.attached() && context::running_loop_inner().is_some() {
            return Err(another_runs());
        }
        crate::fork::forget_running_loop_in_children();
        let id = NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed);
        let mut failed = None;
        let inner = Rc::new_cyclic(|weak: &Weak<LoopInner>| {
            let driver = Driver::new(weak.clone() as Weak<dyn Dispatch>);
            let backend: Box<dyn Backend> = match make.into_backend(driver) {
                Ok(b) => Box::new(b),
                Err(e) => {
                    failed = Some(match e.kind() {
                        io::ErrorKind::Unsupported => {
                            Error::new(ErrorKind::Unsupported, e.to_string())
                        }
                        _ => Error::from(e),
                    });
                    Box::new(Unbuilt)
                }
            };
            let attached = backend.is_attached() && failed.is_none();
            if attached && context::running_loop_inner().is_some() {
                failed = Some(another_runs());
            }
            let shared = Arc::new(Shared::new(
                id,
                std::thread::current().id(),
                backend.remote_waker(),
            ));
            let sched = Scheduler::new(
                backend,
                shared,
                Settings {
                    attached,
                    timer_slack: self.timer_slack,
                    slow_callback: self.debug.then_some(self.slow_callback),
                    faults: self.faults,
                },
            );
            LoopInner {
                weak: weak.clone(),
                sched,
                exceptions: ExceptionHandler::new(self.panic_policy),
                executor: RefCell::new(ExecutorSlot::Unset),
                tasks: TaskRegistry::default(),
                contexts: RunContexts::default(),
                generation: crate::fork::generation(),
            }
        });
        if let Some(e) = failed {
            // Nothing was handed out: close the half-made loop, which tells
            // the backend (if one was built) to remove what it inserted.
            let _ = inner.close();
            return Err(e);
        }
        context::register_local(id, &inner.weak);
        if inner.sched.state() == RunState::Attached {
            context::set_running(Some(&inner));
        }
        Ok(Loop { inner })
    }
}

/// The backend of a loop whose backend could not be built; never runs.
struct Unbuilt;

impl Backend for Unbuilt {
    fn name(&self) -> &str {
        "unbuilt"
    }
    fn arm(&self, _: NextDispatch) {}
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        Arc::new(|| {})
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

    /// A new loop on the backend `make` builds, with default options.
    ///
    /// # Errors
    /// See [`LoopBuilder::build_with`].
    pub fn with_backend(make: impl IntoBackend) -> Result<Loop> {
        LoopBuilder::new().build_with(make)
    }

    pub(crate) fn from_inner(inner: Rc<LoopInner>) -> Loop {
        Loop { inner }
    }

    /// A handle that does not keep the loop alive, for what the loop may
    /// end up owning (transports, whose fd callbacks the loop holds).
    pub(crate) fn downgrade(&self) -> WeakLoop {
        WeakLoop(self.inner.weak.clone())
    }

    /// The loop's id, unique in the process.
    #[cfg(feature = "signal")]
    pub(crate) fn id(&self) -> u64 {
        self.inner.sched.shared().id
    }

    /// [`ErrorKind::Closed`] once the loop is closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        self.inner.sched.check_open()
    }

    /// The name of the backend (`"native"`, `"tokio"`, `"glib"`, …).
    pub fn backend_name(&self) -> &str {
        self.inner.sched.backend_name()
    }

    /// The loop's monotonic clock (TM-01); deadlines of
    /// [`call_at`](Loop::call_at) are on this clock.
    pub fn time(&self) -> Instant {
        self.inner.sched.backend().now()
    }

    /// How late the host may dispatch a timer by its own rounding (TM-03).
    /// Timers are never early (D7).
    pub fn clock_resolution(&self) -> Duration {
        self.inner.sched.backend().clock_resolution()
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
    /// # Examples
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
        let cb = CallbackCell::new_rc(f, State::Ready, location);
        self.inner
            .sched
            .try_push_ready_with(|| Ready::Call(cb.clone(), location))?;
        Ok(Handle { cb })
    }

    /// [`call_soon`](Loop::call_soon) without a handle: the fastest way to
    /// queue a callback, for code that never cancels it (protocol
    /// plumbing, done-callbacks, wakers). Same FIFO, same guarantees.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after [`close`](Loop::close).
    ///
    /// # Examples
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
        self.inner
            .sched
            .try_push_ready_with(|| Ready::Boxed(Box::new(f), location))
    }

    /// Schedule `f` to run `delay` from now: the same as
    /// `call_at(time() + delay, f)` (TM-02).
    ///
    /// The returned [`TimerHandle`] cancels it.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after [`close`](Loop::close).
    ///
    /// # Examples
    ///
    /// Timers run in deadline order, whatever order they were scheduled in:
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let order = Rc::new(RefCell::new(Vec::new()));
    /// for ms in [3, 1, 2] {
    ///     let order = order.clone();
    ///     lp.call_later(Duration::from_millis(ms), move || order.borrow_mut().push(ms))?;
    /// }
    /// lp.call_later(Duration::from_millis(3), { let lp = lp.clone(); move || lp.stop() })?;
    /// lp.run_forever()?;
    /// assert_eq!(*order.borrow(), [1, 2, 3]);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// Deadlines are on the loop's clock, [`time`](Loop::time):
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let deadline = lp.time() + Duration::from_millis(5);
    /// let stop = lp.clone();
    /// let timer = lp.call_at(deadline, move || stop.stop())?;
    /// assert_eq!(timer.when(), deadline);
    /// lp.run_forever()?;
    /// assert!(lp.time() >= deadline); // never early (D7)
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn call_at(&self, when: Instant, f: impl FnOnce() + 'static) -> Result<TimerHandle> {
        let location = Location::caller();
        let cb = CallbackCell::new_rc(f, State::Scheduled, location);
        if let Err(cb) = self.inner.sched.push_timer(when, cb.clone()) {
            // Dropped outside the scheduler's borrow: it owns `f`.
            drop(cb);
            return Err(Error::closed());
        }
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
    ///
    /// # Examples
    ///
    /// Read a socket as data arrives, and stop watching it at EOF:
    ///
    /// ```
    /// use std::{cell::RefCell, io::{Read, Write}, os::unix::net::UnixStream, rc::Rc};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let (ours, mut theirs) = UnixStream::pair()?;
    /// ours.set_nonblocking(true)?;
    /// let ours = Rc::new(ours);
    /// let got = Rc::new(RefCell::new(Vec::new()));
    /// let (sock, seen, stop) = (ours.clone(), got.clone(), lp.clone());
    /// lp.add_reader(&*ours, move || {
    ///     let mut buf = [0; 1024];
    ///     match (&*sock).read(&mut buf) {
    ///         Ok(0) => {
    ///             stop.remove_reader(&*sock); // EOF: level-triggered, it would fire forever
    ///             stop.stop();
    ///         }
    ///         Ok(n) => seen.borrow_mut().extend_from_slice(&buf[..n]),
    ///         Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    ///     }
    /// })?;
    /// std::thread::spawn(move || theirs.write_all(b"hello")); // then hangs up
    /// lp.run_forever()?;
    /// assert_eq!(*got.borrow(), b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn add_reader(&self, fd: impl AsFd, f: impl FnMut() + 'static) -> Result<()> {
        self.inner
            .add_fd(fd.as_fd(), true, Box::new(f), Location::caller())
            .map(drop)
    }

    /// [`add_reader`](Loop::add_reader), handing back the registered
    /// callback, on which a task may [`park`](FdCallback::park).
    #[cfg(feature = "net")]
    #[track_caller]
    pub(crate) fn add_reader_parkable(
        &self,
        fd: impl AsFd,
        f: impl FnMut() + 'static,
    ) -> Result<Rc<FdCallback>> {
        self.inner
            .add_fd(fd.as_fd(), true, Box::new(f), Location::caller())
    }

    /// Call `f` every time `fd` is writable, until
    /// [`remove_writer`](Loop::remove_writer). See [`add_reader`](Loop::add_reader).
    ///
    /// # Errors
    /// As [`add_reader`](Loop::add_reader).
    ///
    /// # Examples
    ///
    /// A writer is level-triggered too: it runs on every iteration while
    /// the fd has room, so remove it once there is nothing left to write.
    ///
    /// ```
    /// use std::{io::{Read, Write}, os::unix::net::UnixStream, rc::Rc};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let (ours, mut theirs) = UnixStream::pair()?;
    /// ours.set_nonblocking(true)?;
    /// let ours = Rc::new(ours);
    /// let (sock, lp2) = (ours.clone(), lp.clone());
    /// lp.add_writer(&*ours, move || {
    ///     (&*sock).write_all(b"ready").unwrap();
    ///     assert!(lp2.remove_writer(&*sock));
    ///     lp2.stop();
    /// })?;
    /// lp.run_forever()?;
    /// let mut buf = [0; 5];
    /// theirs.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"ready");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn add_writer(&self, fd: impl AsFd, f: impl FnMut() + 'static) -> Result<()> {
        self.inner
            .add_fd(fd.as_fd(), false, Box::new(f), Location::caller())
            .map(drop)
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

    /// [`remove_reader`](Loop::remove_reader) by number, for an fd its
    /// owner may have closed already: a library that closes its fds
    /// without telling the loop first (GLib drops a source's fd before its
    /// guest learns the source is gone). Removal does nothing with the fd
    /// but compare its number, so it needs no open fd to borrow.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let (ours, _theirs) = std::os::unix::net::UnixStream::pair()?;
    /// lp.add_reader(&ours, || {})?;
    /// let fd = ours.as_raw_fd();
    /// drop(ours); // closed before the loop was told
    /// assert!(lp.remove_reader_raw(fd));
    /// assert!(!lp.remove_reader_raw(fd));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_reader_raw(&self, fd: RawFd) -> bool {
        self.inner.remove_fd(fd, true)
    }

    /// [`remove_writer`](Loop::remove_writer) by number; see
    /// [`remove_reader_raw`](Loop::remove_reader_raw).
    pub fn remove_writer_raw(&self, fd: RawFd) -> bool {
        self.inner.remove_fd(fd, false)
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
            if self.inner.sched.is_halted() {
                break Ok(());
            }
            if let Err(e) = self.inner.sched.backend().turn() {
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
    /// `'static`; a oneloop [`Task`](crate::Task) or [`LoopFuture`](crate::LoopFuture) works as well as any other.
    ///
    /// # Errors
    /// As [`run_forever`](Loop::run_forever), and [`ErrorKind::Stopped`] if
    /// [`stop`](Loop::stop) ends the run first; the future is then dropped
    /// unfinished, so pass a [`Task`](crate::Task) to keep it running later (D5, LC-08).
    ///
    /// # Panics
    /// As [`run_forever`](Loop::run_forever); a panic of `future` itself
    /// unwinds out of this call.
    ///
    /// # Examples
    ///
    /// A `stop()` ends the run with [`ErrorKind::Stopped`]; a task given
    /// to it keeps running, and a later run finishes it:
    ///
    /// ```
    /// use std::time::Duration;
    /// use oneloop::ErrorKind;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let task = lp.spawn(async {
    ///     oneloop::sleep(Duration::from_millis(1)).await?;
    ///     Ok::<_, oneloop::Error>(7)
    /// })?;
    /// lp.call_soon({ let lp = lp.clone(); move || lp.stop() })?;
    /// let err = lp.run_until_complete(task.as_future().clone()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Stopped);
    /// assert!(!task.done()); // still sleeping, not cancelled
    /// assert_eq!(lp.run_until_complete(task)???, 7);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
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
            remote: self.inner.sched.backend().remote_waker(),
        });
        let waker = Waker::from(root.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        let result = loop {
            if root.woken.swap(false, Ordering::AcqRel) {
                // Polled between host iterations: inside the host's context,
                // so that it may await the host's own futures.
                let mut polled = Poll::Pending;
                self.inner.sched.backend().enter(&mut || {
                    self.inner
                        .contexts
                        .run(&mut || polled = future.as_mut().poll(&mut cx))
                });
                if let Poll::Ready(out) = polled {
                    break Ok(out);
                }
            }
            // Work the root poll queued (a spawned task, a call_soon)
            // armed the backend itself.
            if self.inner.sched.is_halted() {
                break Err(Error::new(
                    ErrorKind::Stopped,
                    "stop() was called before the future completed",
                ));
            }
            if let Err(e) = self.inner.sched.backend().turn() {
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
    ///
    /// # Examples
    ///
    /// `stop()` then `run_forever()` runs exactly one iteration, without
    /// blocking: what was ready runs, what it queues waits.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let runs = Rc::new(Cell::new(0));
    /// let (n, lp2) = (runs.clone(), lp.clone());
    /// lp.call_soon(move || {
    ///     n.set(n.get() + 1);
    ///     let n = n.clone();
    ///     lp2.call_soon(move || n.set(n.get() + 1)).unwrap(); // the next iteration's
    /// })?;
    /// lp.stop();
    /// lp.run_forever()?;
    /// assert_eq!(runs.get(), 1);
    /// lp.stop();
    /// lp.run_forever()?;
    /// assert_eq!(runs.get(), 2); // kept for the next run (LC-03)
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn stop(&self) {
        self.inner.sched.request_stop();
    }

    /// Whether `stop()` was called and the current batch is still finishing.
    ///
    /// A nested host loop run from a oneloop callback (a modal dialog helper)
    /// checks it to unwind when the loop is stopped (EM-04).
    pub fn is_stopping(&self) -> bool {
        self.inner.sched.is_stopping()
    }

    /// Whether the loop is running: inside a run (until it returns, even
    /// after `stop()`, D1), or attached to a host (EM-01).
    pub fn is_running(&self) -> bool {
        matches!(
            self.inner.sched.state(),
            RunState::Running | RunState::Attached
        )
    }

    /// Whether the loop is attached to a host loop that runs it (its backend
    /// is in attached mode): `run_*` then answer
    /// [`ErrorKind::AlreadyRunning`] and the host drives dispatch.
    pub fn is_attached(&self) -> bool {
        self.inner.sched.backend().is_attached()
    }

    /// Whether [`close`](Loop::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.sched.state() == RunState::Closed
    }

    /// Close the loop: drop every queued callback without running it, stop
    /// watching every fd, detach from the host, refuse further work (LC-11).
    /// Idempotent (LC-10).
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyRunning`] inside `run_*` or inside a callback;
    /// the loop keeps running (LC-10). An attached loop may be closed from
    /// outside its callbacks: that detaches it.
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::ErrorKind;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// lp.call_soon(|| unreachable!("dropped unrun by close"))?;
    /// lp.close()?;
    /// lp.close()?; // idempotent
    /// assert!(lp.is_closed());
    /// assert_eq!(lp.call_soon(|| ()).unwrap_err().kind(), ErrorKind::Closed);
    /// assert_eq!(lp.run_forever().unwrap_err().kind(), ErrorKind::Closed);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }

    /// Whether debug mode (slow-callback warnings) is on.
    pub fn debug(&self) -> bool {
        self.inner.sched.slow_callback().is_some()
    }

    /// Turn debug mode on or off, keeping the slow-callback threshold at
    /// 100 ms unless [`set_slow_callback_duration`](Loop::set_slow_callback_duration) changed it.
    pub fn set_debug(&self, on: bool) {
        let sched = &self.inner.sched;
        let d = sched.slow_callback().unwrap_or(Duration::from_millis(100));
        sched.set_slow_callback(on.then_some(d));
    }

    /// Turn debug mode on with `d` as the slow-callback threshold.
    pub fn set_slow_callback_duration(&self, d: Duration) {
        self.inner.sched.set_slow_callback(Some(d));
    }

    /// How late the loop may wake up for a timer so that the timers due
    /// within that span share the wake-up (default [`DEFAULT_TIMER_SLACK`]).
    pub fn timer_slack(&self) -> Duration {
        self.inner.sched.timer_slack()
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
    /// # Examples
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
        self.inner.sched.set_timer_slack(slack);
    }

    /// Install `handler` as the exception handler, or restore the default
    /// (which logs through `tracing`) with `None` (ER-02).
    ///
    /// The handler is told of every panic caught in a callback or task
    /// (under [`PanicPolicy::Report`], the default), of errors nobody
    /// retrieved from a failed [`LoopFuture`](crate::LoopFuture), and of
    /// what library code reports with
    /// [`call_exception_handler`](Loop::call_exception_handler).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use oneloop::{ErrorKind, ExceptionContext, Loop};
    ///
    /// let lp = Loop::new()?;
    /// let reports = Rc::new(RefCell::new(Vec::new()));
    /// let seen = reports.clone();
    /// lp.set_exception_handler(Some(move |_: &Loop, ctx: &ExceptionContext| {
    ///     seen.borrow_mut().push((ctx.panic_message().map(String::from), ctx.error().map(|e| e.kind())));
    /// }));
    /// lp.call_soon(|| panic!("boom"))?;
    /// lp.call_soon({ let lp = lp.clone(); move || lp.stop() })?; // still runs: the loop carries on
    /// lp.run_forever()?;
    /// assert_eq!(*reports.borrow(), [(Some("boom".to_string()), Some(ErrorKind::Panicked))]);
    /// lp.set_exception_handler(None::<fn(&Loop, &ExceptionContext)>); // back to logging
    /// # Ok::<(), oneloop::Error>(())
    /// ```
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
    ///
    /// For errors that have no caller to return to: a protocol's
    /// background failure, a callback's `Err`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use oneloop::{Error, ErrorKind, ExceptionContext, Loop};
    ///
    /// let lp = Loop::new()?;
    /// let told = Rc::new(Cell::new(false));
    /// let t = told.clone();
    /// lp.set_exception_handler(Some(move |_: &Loop, ctx: &ExceptionContext| {
    ///     t.set(ctx.message() == "heartbeat failed");
    /// }));
    /// lp.call_exception_handler(
    ///     ExceptionContext::new("heartbeat failed").with_error(Error::from_kind(ErrorKind::TimedOut)),
    /// );
    /// assert!(told.get()); // called at once, not queued
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn call_exception_handler(&self, context: ExceptionContext) {
        self.inner.exceptions.call(self, &context);
    }

    /// The default handler: log `context` at error level through `tracing`.
    ///
    /// # Examples
    ///
    /// A handler that silences one kind of report and passes the rest on:
    ///
    /// ```
    /// use oneloop::{ExceptionContext, Loop};
    ///
    /// let lp = Loop::new()?;
    /// lp.set_exception_handler(Some(|lp: &Loop, ctx: &ExceptionContext| {
    ///     if ctx.message().starts_with("connection reset") {
    ///         return; // expected under load: not worth a log line
    ///     }
    ///     lp.default_exception_handler(ctx);
    /// }));
    /// # Ok::<(), oneloop::Error>(())
    /// ```
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

    /// Debug counters: callbacks queued, timer entries held (live and not
    /// yet compacted), fds watched, pending tasks. For tests and leak
    /// checks; see [`LoopStats`].
    pub fn stats(&self) -> LoopStats {
        let counts = self.inner.sched.counts();
        LoopStats {
            ready: counts.ready,
            timers: counts.timers,
            fds: counts.fds,
            tasks: self.inner.tasks.len(),
        }
    }
}

/// Counters from [`Loop::stats`].
///
/// # Examples
///
/// A leak check: once the work is done, nothing is left queued, watched or
/// pending.
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop::Loop::new()?;
/// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
/// lp.add_reader(&a, || ())?;
/// let task = lp.spawn(oneloop::sleep(Duration::from_millis(1)))?;
/// let s = lp.stats();
/// assert_eq!((s.ready, s.fds, s.tasks), (1, 1, 1)); // the task's first step is queued
///
/// lp.run_until_complete(task)???;
/// lp.remove_reader(&a);
/// let s = lp.stats();
/// assert_eq!((s.ready, s.timers, s.fds, s.tasks), (0, 0, 0, 0));
/// # Ok::<(), oneloop::Error>(())
/// ```
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
pub(crate) fn far_future(now: Instant) -> Instant {
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
    /// Dropping the last handle closes the loop: queued work and pending
    /// tasks are dropped, fds unwatched, and an attached loop detaches from
    /// its host, so that the thread can attach another.
    fn drop(&mut self) {
        if self.sched.state() != RunState::Closed && !self.sched.is_dispatching() {
            self.sched.end_run();
            let _ = self.close();
        }
    }
}

/// The loop's side of the plug: what the backend's [`Driver`] calls.
impl Dispatch for LoopInner {
    fn fd_ready(&self, fd: RawFd, readiness: Readiness) {
        self.sched.fd_ready(fd, readiness);
    }

    fn dispatch(&self) {
        if !self.sched.is_live() {
            return;
        }
        // No handle is taken here to keep the loop alive while a callback
        // drops the last user handle: `self` is only reachable through the
        // `Driver`'s weak reference, whose upgrade the `Driver` holds for
        // the whole call.
        let _running = context::RunningScope::enter(self);
        let owned_run = self.sched.state() == RunState::Running;
        self.contexts.run(|| {
            self.sched.run_once(|failed| match self.weak.upgrade() {
                Some(inner) => {
                    self.exceptions
                        .callback_panicked(&Loop { inner }, failed, owned_run)
                }
                None => false,
            });
        });
    }

    fn next_dispatch(&self) -> NextDispatch {
        self.sched.next_dispatch()
    }

    fn is_live(&self) -> bool {
        self.sched.is_live()
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
        if self.nested {
            return;
        }
        self.inner.sched.end_run();
        context::set_running(None);
    }
}

impl LoopInner {
    fn enter_run(&self) -> Result<RunGuard<'_>> {
        match self.sched.state() {
            RunState::Closed => return Err(Error::closed()),
            RunState::Running if self.sched.has_fault(Fault::AllowNestedRun) => {
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
                        self.sched.backend().name()
                    ),
                ));
            }
            RunState::Idle => {}
        }
        if context::running_loop_inner().is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "another event loop is running on this thread",
            ));
        }
        context::set_running(Some(self));
        self.sched.begin_run();
        Ok(RunGuard {
            inner: self,
            nested: false,
        })
    }

    pub(crate) fn close(&self) -> Result<()> {
        match self.sched.state() {
            RunState::Closed => return Ok(()),
            RunState::Running => {
                return Err(Error::new(
                    ErrorKind::AlreadyRunning,
                    "cannot close a running event loop",
                ));
            }
            RunState::Attached | RunState::Idle => {}
        }
        if self.sched.is_dispatching() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "cannot close the event loop from inside its callback",
            ));
        }
        if context::running_is(self) {
            context::set_running(None);
        }
        let crate::scheduler::Leftovers {
            ready,
            timers,
            fds,
            inbox,
            host,
        } = self
            .sched
            .close(self.generation != crate::fork::generation());
        // Drop queued work without running it (LC-11), outside every
        // borrow: dropping a closure runs user `Drop` code, which may call
        // back into this loop.
        for t in &timers {
            t.cancel();
        }
        drop((ready, timers, fds, inbox));
        for t in self.tasks.take_all() {
            t.abandon();
        }
        // Steps woken on other threads while this closed, which hold their
        // tasks' futures: dropped here, on the loop's thread.
        drop(self.sched.shared().take_orphans());
        drop(std::mem::take(&mut *self.executor.borrow_mut()));
        // The host's resources (poller, wake fd, an owned runtime), after
        // the tasks that may hold the host's own futures.
        drop(host);
        // Last: a bridge's context may own a runtime its tasks used.
        drop(self.contexts.take());
        context::unregister_local(self.sched.shared().id);
        Ok(())
    }

    /// Register `f` as `fd`'s reader (`readable`) or writer; the callback
    /// is handed back for [`FdCallback::park`].
    fn add_fd(
        &self,
        fd: BorrowedFd<'_>,
        readable: bool,
        f: Box<dyn FnMut()>,
        location: &'static Location<'static>,
    ) -> Result<Rc<FdCallback>> {
        self.sched.check_open()?;
        check_watchable(fd)?;
        let fd = fd.as_raw_fd();
        let cb = FdCallback::new(f, location);
        self.sched
            .watch_fd(fd, readable, cb.clone())
            .map(|()| cb)
            .map_err(|e| match e.kind() {
                io::ErrorKind::Unsupported => Error::new(ErrorKind::Unsupported, e.to_string()),
                io::ErrorKind::PermissionDenied => Error::new(
                    ErrorKind::InvalidArgument,
                    format!("fd {fd} cannot be watched: {e}"),
                ),
                _ => Error::from(e),
            })
    }

    pub(crate) fn remove_fd(&self, fd: RawFd, readable: bool) -> bool {
        self.sched.unwatch_fd(fd, readable)
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
