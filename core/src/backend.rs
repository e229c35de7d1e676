//! The plug: what an adapter implements so that a host loop can run oneloop.
//!
//! A host loop only has to **wait and wake**. Everything that decides *what*
//! runs and in which order (the ready queue, the timer queue, the fd
//! registry, the cross-thread inbox) lives in the scheduler in this crate, so
//! every backend gives the same guarantees, whatever order its host
//! dispatches in (`HOSTS.md`).
//!
//! The plug depends on nothing else in this crate: a backend sees a
//! [`Driver`], which reaches the loop through the small [`Dispatch`] trait,
//! and never the scheduler's types (`docs/architecture.md`).
//!
//! # What a backend must provide
//!
//! | item | required | carries |
//! |---|---|---|
//! | [`Backend::arm`] | yes | "dispatch now / at T / on events only": CB-02, TM-02…TM-06, EM-02 |
//! | [`Backend::remote_waker`] | yes | a `Send + Sync`, async-signal-safe wake (D6): TH-01, TH-02 |
//! | [`Backend::turn`] | owned mode | one host iteration, blocking until something happened: LC-01…LC-05 |
//! | [`Backend::watch`] | no (default: `Unsupported`) | level-triggered fd readiness: FD-01…FD-07 |
//! | [`Backend::is_attached`] | no (default: owned) | EM-01: an attached loop counts as running |
//! | [`Backend::now`] | no (default: `Instant::now`) | TM-01; a host may supply its own monotonic clock |
//! | [`Backend::clock_resolution`] | no (default: 1 µs) | TM-03: how late a timer may legitimately be |
//! | [`Backend::enter`] | no | host futures awaitable in `run_until_complete`'s root future |
//! | [`Backend::stop_requested`] | no | lets a nested host loop unwind on `stop()`: EM-04 |
//! | [`Backend::close`] | no | remove everything the backend inserted into the host |
//!
//! # The contract, step by step
//!
//! 1. [`LoopBuilder::build_with`](crate::LoopBuilder::build_with) hands the
//!    backend's constructor its [`Driver`], once, on the thread that will
//!    run the loop. The backend keeps it and inserts its host sources (one
//!    "dispatch" source, one timer, one fd source per watched fd: never one
//!    host source per callback).
//! 2. The scheduler calls [`arm`](Backend::arm) whenever the moment it needs
//!    to be dispatched changes, and at the end of every dispatch. The backend
//!    makes its host call [`Driver::dispatch`] at that moment: *at once* for
//!    [`NextDispatch::Now`], *not before* `t` for [`NextDispatch::At`] (a host
//!    whose timers round to milliseconds must round **up**; a dispatch that
//!    comes early is harmless but wasted), and only on fd readiness or a remote
//!    wake for [`NextDispatch::OnEvent`]. Each `arm` replaces the previous one.
//! 3. For every watched fd the host reports ready, the backend calls
//!    [`Driver::fd_ready`] **before** the [`Driver::dispatch`] of that host
//!    iteration. Readiness is level-triggered: report it on every iteration
//!    while the fd stays ready, and report hang-up and error conditions too
//!    (the scheduler turns them into both readable and writable, FD-07).
//! 4. The [`RemoteWake`] from [`remote_waker`](Backend::remote_waker) may be
//!    called from any thread and from a signal handler; it must make the host
//!    call [`Driver::dispatch`] soon. The scheduler coalesces: it wakes only
//!    when its inbox goes from empty to non-empty.
//! 5. In owned mode, [`turn`](Backend::turn) runs one iteration of the host
//!    loop: it blocks until at least one of (an armed dispatch is due, a
//!    watched fd is ready, a remote wake) happened, and dispatches it. The
//!    scheduler calls it in a loop from `run_forever`/`run_until_complete`.
//! 6. [`Driver::dispatch`] never nests: called while a dispatch is already
//!    running on this loop (a host loop iterated from inside a oneloop
//!    callback, a modal dialog), it returns at once and the work waits until
//!    the outer callback returns (decision D4). Hosts need no guard of their own.
//! 7. [`close`](Backend::close) comes once, after every fd was unwatched;
//!    the backend is dropped with the loop.
//!
//! A backend never runs oneloop callbacks itself and never decides their
//! order: it only says *when* to dispatch.
//!
//! # Threads and re-entrancy
//!
//! | call | thread | may come during |
//! |---|---|---|
//! | the constructor given to `build_with` | the loop's | nothing: no dispatch can run yet |
//! | [`arm`](Backend::arm), [`watch`](Backend::watch), [`stop_requested`](Backend::stop_requested) | the loop's | a [`Driver::dispatch`] (from a callback) or plain user code, so also inside [`turn`](Backend::turn) when the host dispatches from there |
//! | [`turn`](Backend::turn) | the loop's | never inside a dispatch (a nested run is refused first) |
//! | [`enter`](Backend::enter) | the loop's | only around `run_until_complete`'s root poll, between turns |
//! | [`now`](Backend::now), [`name`](Backend::name), [`clock_resolution`](Backend::clock_resolution), [`is_attached`](Backend::is_attached) | the loop's | anything |
//! | [`close`](Backend::close) | the loop's | never inside a dispatch or a turn |
//! | [`RemoteWake::wake`] | any, and signal handlers | anything |
//!
//! The scheduler holds no borrow of its own state while it calls a backend
//! method, so a backend may call the [`Driver`] from inside `arm`, `watch`
//! or `stop_requested` without a borrow panic, but it should not: a
//! `Driver::dispatch` there would run callbacks inside the user code that
//! scheduled them. The [`Driver`] itself may be called at any time on the
//! loop's thread; calls after the loop is gone do nothing.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When the scheduler next needs [`Driver::dispatch`] to be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextDispatch {
    /// As soon as possible: callbacks are ready to run.
    Now,
    /// Not before this instant (the earliest pending timer).
    At(Instant),
    /// Only when a watched fd becomes ready or a remote wake arrives.
    OnEvent,
}

impl NextDispatch {
    /// The time a host poll may block for, seen from `now`: `None` means
    /// "until an event", zero means "do not block".
    ///
    /// Rounds **up** to whole `granularity` steps, so a host whose timeouts
    /// have millisecond granularity never wakes before the deadline (D7).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use oneloop::backend::NextDispatch;
    ///
    /// let now = Instant::now();
    /// let next = NextDispatch::At(now + Duration::from_micros(1_200));
    /// assert_eq!(next.timeout(now, Duration::from_millis(1)), Some(Duration::from_millis(2)));
    /// assert_eq!(NextDispatch::Now.timeout(now, Duration::from_millis(1)), Some(Duration::ZERO));
    /// ```
    pub fn timeout(self, now: Instant, granularity: Duration) -> Option<Duration> {
        match self {
            NextDispatch::Now => Some(Duration::ZERO),
            NextDispatch::OnEvent => None,
            NextDispatch::At(t) => {
                let left = t.saturating_duration_since(now);
                let g = granularity.as_nanos().max(1);
                let steps = left.as_nanos().div_ceil(g);
                // Saturate instead of overflowing for deadlines years away
                // (TM-07); no host waits that long in one poll anyway.
                let nanos = steps.saturating_mul(g).min(u64::MAX as u128) as u64;
                Some(Duration::from_nanos(nanos))
            }
        }
    }
}

/// Which readiness a watched fd is interested in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interest {
    /// Report the fd when it is readable (a reader is registered).
    pub readable: bool,
    /// Report the fd when it is writable (a writer is registered).
    pub writable: bool,
}

impl Interest {
    /// No interest: the backend must stop watching the fd.
    pub const NONE: Interest = Interest {
        readable: false,
        writable: false,
    };
    /// Readable only.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both readable and writable.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };

    /// Whether neither readiness is wanted.
    pub fn is_none(self) -> bool {
        !self.readable && !self.writable
    }
}

/// What the host reported for a watched fd in one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Readiness {
    /// The fd is readable.
    pub readable: bool,
    /// The fd is writable.
    pub writable: bool,
    /// The peer hung up or the fd is in error; the scheduler calls both the
    /// reader and the writer so that their I/O sees EOF or the error (FD-07).
    pub hangup: bool,
}

impl Readiness {
    /// Readable.
    pub const READABLE: Readiness = Readiness {
        readable: true,
        writable: false,
        hangup: false,
    };
    /// Writable.
    pub const WRITABLE: Readiness = Readiness {
        readable: false,
        writable: true,
        hangup: false,
    };
}

/// A thread-safe wake: makes the host call [`Driver::dispatch`] soon.
///
/// Must be callable from any thread and from a signal handler (an eventfd or
/// pipe write, a `Poller::notify`, `g_main_context_wakeup`): decision D6.
///
/// # Examples
///
/// A closure is one, which suits hosts whose wake is a plain function:
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
/// use oneloop::backend::RemoteWake;
///
/// let woken = Arc::new(AtomicBool::new(false));
/// let flag = woken.clone();
/// let wake: Arc<dyn RemoteWake> = Arc::new(move || flag.store(true, Ordering::Release));
/// std::thread::spawn(move || wake.wake()).join().unwrap();
/// assert!(woken.load(Ordering::Acquire));
/// ```
pub trait RemoteWake: Send + Sync + 'static {
    /// Wake the host so that it dispatches the loop soon.
    fn wake(&self);
}

impl<F: Fn() + Send + Sync + 'static> RemoteWake for F {
    fn wake(&self) {
        self()
    }
}

/// What an adapter implements to run oneloop on a host loop.
///
/// See the [module documentation](self) for the contract, the call order
/// and the thread rules. The required core is three methods; fd watching,
/// attached mode, the clock and closing have defaults. A backend is built by
/// the constructor given to [`LoopBuilder::build_with`](crate::LoopBuilder::build_with),
/// which receives the backend's [`Driver`].
///
/// # Examples
///
/// A complete owned-mode backend whose "host" is a
/// [`Selector`](crate::native::Selector), the OS poller every shipped
/// adapter embeds: the default loop again, in a few lines. A backend for
/// a real host puts the selector's one fd into that host instead of
/// blocking on it (`docs/writing-an-adapter.md`).
///
/// ```
/// use std::{cell::Cell, io, os::fd::RawFd, sync::Arc, time::{Duration, Instant}};
/// use oneloop::backend::{Backend, Driver, Interest, NextDispatch, RemoteWake};
/// use oneloop::native::Selector;
///
/// struct Blocking {
///     selector: Selector,
///     driver: Driver,
///     next: Cell<NextDispatch>,
/// }
///
/// impl Backend for Blocking {
///     fn name(&self) -> &str {
///         "blocking"
///     }
///     fn arm(&self, next: NextDispatch) {
///         self.next.set(next); // the next `turn` waits accordingly
///     }
///     fn remote_waker(&self) -> Arc<dyn RemoteWake> {
///         self.selector.waker()
///     }
///     fn turn(&self) -> io::Result<()> {
///         let timeout = self.next.get().timeout(Instant::now(), Duration::from_nanos(1));
///         self.selector.select(timeout, |fd, ready| self.driver.fd_ready(fd, ready))?;
///         self.driver.dispatch(); // after every fd_ready of this iteration
///         Ok(())
///     }
///     fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
///         self.selector.watch(fd, interest)
///     }
///     fn close(&self) {
///         self.selector.clear();
///     }
/// }
///
/// let lp = oneloop::Loop::with_backend(|driver| -> io::Result<Blocking> {
///     Ok(Blocking { selector: Selector::new()?, driver, next: Cell::new(NextDispatch::OnEvent) })
/// })?;
/// assert_eq!(lp.backend_name(), "blocking");
/// let out = lp.run_until_complete(async {
///     oneloop::sleep(Duration::from_millis(1)).await?;
///     Ok::<_, oneloop::Error>("slept on a Selector")
/// })??;
/// assert_eq!(out, "slept on a Selector");
/// # Ok::<(), oneloop::Error>(())
/// ```
pub trait Backend: 'static {
    /// A short name for reports and debug output (`"native"`, `"tokio"`).
    fn name(&self) -> &str;

    /// Make the host call [`Driver::dispatch`] at `next` (see
    /// [`NextDispatch`]); replaces any earlier arming.
    fn arm(&self, next: NextDispatch);

    /// The thread-safe, async-signal-safe wake for this host (D6).
    fn remote_waker(&self) -> Arc<dyn RemoteWake>;

    /// Owned mode: run the host loop for at least one iteration, blocking
    /// until an armed dispatch fell due, a watched fd was ready, or a remote
    /// wake arrived, and dispatch it.
    ///
    /// A turn may dispatch several times (a host that runs until something
    /// happens, like an executor's `block_on`), but must return promptly once
    /// the loop halted ([`Driver::is_live`] turns false) or a remote wake
    /// arrived: the scheduler checks for the end of the run, and polls
    /// `run_until_complete`'s future, between turns.
    ///
    /// Attached backends never get this call (their host runs the loop); the
    /// default answers [`io::ErrorKind::Unsupported`].
    fn turn(&self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this backend cannot run its host loop",
        ))
    }

    /// Watch `fd` for `interest`, level-triggered, replacing the previous
    /// interest; [`Interest::NONE`] stops watching it.
    ///
    /// When a registration is created (the first non-empty interest for an
    /// fd), the fd is open for the duration of the call: it is borrowed from
    /// its owner by `add_reader`/`add_writer`. It stays open until the
    /// `Interest::NONE` call by the `Loop` API's contract (closing a
    /// registered fd is a caller error).
    ///
    /// The scheduler merges readers and writers, so a backend sees one
    /// registration per fd (epoll, tokio, calloop and async-io all refuse a
    /// second one). The default answers [`io::ErrorKind::Unsupported`], which
    /// `add_reader`/`add_writer` report as [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        let _ = (fd, interest);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this backend cannot watch file descriptors",
        ))
    }

    /// Whether the backend is attached to a host loop someone else runs.
    ///
    /// An attached loop counts as running from creation until `close()`, and
    /// `run_forever`/`run_until_complete` answer
    /// [`ErrorKind::AlreadyRunning`](crate::ErrorKind::AlreadyRunning) (EM-01).
    fn is_attached(&self) -> bool {
        false
    }

    /// The host's monotonic clock; never decreases (TM-01).
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// How late, at most, the host may dispatch an armed timer by its own
    /// rounding (tokio's wheel: 1 ms). Timers are never early (D7).
    fn clock_resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    /// Run `f` inside the host's context: owned mode calls it around each
    /// poll of `run_until_complete`'s root future, which runs between host
    /// iterations, so that the future may await the host's own futures
    /// (tokio's runtime and `LocalSet` entered, glib's context pushed as
    /// thread-default). The default just calls `f`.
    fn enter(&self, f: &mut dyn FnMut()) {
        f()
    }

    /// `Loop::stop()` was called. Called every time, even from inside a
    /// callback (where `arm` is deferred to the end of the dispatch), so that
    /// a backend can wake a host poll blocked in a nested host loop, which
    /// may then check [`Loop::is_stopping`](crate::Loop::is_stopping) and
    /// unwind (EM-04). The default does nothing.
    fn stop_requested(&self) {}

    /// Remove every source the backend inserted into the host. Called once,
    /// by `Loop::close`, after every fd was unwatched.
    fn close(&self) {}
}

/// What [`LoopBuilder::build_with`](crate::LoopBuilder::build_with) takes:
/// something that builds a backend once it is given the loop's [`Driver`].
///
/// A closure `FnOnce(Driver) -> io::Result<B>` is one; so is an adapter's
/// backend configuration (`GlibBackend::attach(&ctx)`,
/// `TokioBackend::new()?`), which holds what the backend needs from the
/// host and builds the backend, driver in hand, when the loop is made.
///
/// # Examples
///
/// ```
/// use oneloop::{Loop, native::NativeBackend};
///
/// let lp = Loop::with_backend(NativeBackend::new)?; // a constructor is one
/// assert_eq!(lp.backend_name(), "native");
/// # Ok::<(), oneloop::Error>(())
/// ```
pub trait IntoBackend {
    /// The backend built.
    type Backend: Backend;

    /// Build the backend for the loop `driver` dispatches. Called once, on
    /// the thread that will run the loop, before anything can dispatch.
    ///
    /// # Errors
    /// Whatever keeps the backend from being built; the loop is not made.
    fn into_backend(self, driver: Driver) -> io::Result<Self::Backend>;

    /// Whether the backend it builds will be attached to a host loop. The
    /// loop asks before building, so that an attached loop refused because
    /// another loop runs on this thread (PO-03) claims nothing in the host
    /// first. The default says no; the built backend's
    /// [`Backend::is_attached`] is checked too.
    fn attached(&self) -> bool {
        false
    }
}

impl<B: Backend, F: FnOnce(Driver) -> io::Result<B>> IntoBackend for F {
    type Backend = B;

    fn into_backend(self, driver: Driver) -> io::Result<B> {
        self(driver)
    }
}

/// What a [`Driver`] calls: the loop's side of the plug.
///
/// The scheduler implements it; a backend only ever sees it through a
/// [`Driver`]. It is public so that a backend can be tested on its own,
/// against a recording implementation, without a loop.
///
/// # Examples
///
/// A recording target, to check what a backend reports and in which
/// order:
///
/// ```
/// use std::{cell::RefCell, os::fd::RawFd, rc::{Rc, Weak}};
/// use oneloop::backend::{Dispatch, Driver, NextDispatch, Readiness};
///
/// #[derive(Default)]
/// struct Record(RefCell<Vec<String>>);
/// impl Dispatch for Record {
///     fn fd_ready(&self, fd: RawFd, r: Readiness) { self.0.borrow_mut().push(format!("fd {fd} readable={}", r.readable)); }
///     fn dispatch(&self) { self.0.borrow_mut().push("dispatch".into()); }
///     fn next_dispatch(&self) -> NextDispatch { NextDispatch::OnEvent }
///     fn is_live(&self) -> bool { true }
/// }
///
/// let record = Rc::new(Record::default());
/// let driver = Driver::new(Rc::downgrade(&record) as Weak<dyn Dispatch>);
/// // ... hand `driver` to the backend under test, make its host report fd 7 ...
/// driver.fd_ready(7, Readiness::READABLE);
/// driver.dispatch();
/// assert_eq!(*record.0.borrow(), ["fd 7 readable=true", "dispatch"]);
///
/// drop(record);
/// driver.dispatch(); // the loop is gone: does nothing
/// assert!(!driver.is_live());
/// ```
pub trait Dispatch {
    /// See [`Driver::fd_ready`].
    fn fd_ready(&self, fd: RawFd, readiness: Readiness);
    /// See [`Driver::dispatch`].
    fn dispatch(&self);
    /// See [`Driver::next_dispatch`].
    fn next_dispatch(&self) -> NextDispatch;
    /// See [`Driver::is_live`].
    fn is_live(&self) -> bool;
}

/// The backend's handle back into the scheduler: report readiness, dispatch.
///
/// `!Send`: a backend calls it on the loop's thread only. It holds the loop
/// weakly, so a backend that keeps it does not keep the loop alive; once the
/// loop is gone every call does nothing.
#[derive(Clone)]
pub struct Driver {
    target: Weak<dyn Dispatch>,
}

impl Driver {
    /// A driver that calls `target` while it is alive.
    ///
    /// A loop makes its own; this is for testing a backend without one
    /// (see the example of [`Dispatch`]).
    pub fn new(target: Weak<dyn Dispatch>) -> Driver {
        Driver { target }
    }

    /// Report that `fd` is ready as `readiness` in this host iteration.
    ///
    /// Call it before [`dispatch`](Driver::dispatch), in the same host
    /// iteration: what it queues waits for that dispatch, without asking
    /// the backend to [`arm`](Backend::arm) one. Readiness of an fd that is
    /// no longer watched, or while the loop is not running, is ignored
    /// (EM-06).
    pub fn fd_ready(&self, fd: RawFd, readiness: Readiness) {
        if let Some(target) = self.target.upgrade() {
            target.fd_ready(fd, readiness);
        }
    }

    /// Run one scheduler iteration (DESIGN.md §2): queue ready fds and due
    /// timers, drain the cross-thread inbox, run the callbacks that were ready
    /// when it began, then [`arm`](Backend::arm) the next dispatch.
    ///
    /// Does nothing when the loop is not running, is closed, or is already
    /// dispatching further up this thread's stack (D4).
    pub fn dispatch(&self) {
        if let Some(target) = self.target.upgrade() {
            target.dispatch();
        }
    }

    /// The loop, held for one host turn: a backend that reports ready fds
    /// and then dispatches can upgrade the driver's weak reference once,
    /// rather than in every [`fd_ready`](Driver::fd_ready) and
    /// [`dispatch`](Driver::dispatch) (10–25 instructions each). `None`
    /// once the loop is gone. Drop it when the turn ends: it keeps the
    /// loop alive.
    ///
    /// # Examples
    ///
    /// ```
    /// # use oneloop::backend::{Driver, Readiness};
    /// fn turn(driver: &Driver, ready: &[(std::os::fd::RawFd, Readiness)]) {
    ///     let Some(lp) = driver.target() else { return };
    ///     for &(fd, r) in ready {
    ///         lp.fd_ready(fd, r);
    ///     }
    ///     lp.dispatch();
    /// }
    /// # let _ = turn;
    /// ```
    pub fn target(&self) -> Option<Rc<dyn Dispatch>> {
        self.target.upgrade()
    }

    /// When the scheduler next needs a dispatch, for hosts that ask rather
    /// than being told (a GSource's `prepare`).
    pub fn next_dispatch(&self) -> NextDispatch {
        match self.target.upgrade() {
            Some(target) => target.next_dispatch(),
            None => NextDispatch::OnEvent,
        }
    }

    /// Whether the loop would run callbacks if dispatched now (it is running
    /// or attached, not closed, not halted by `stop()`).
    pub fn is_live(&self) -> bool {
        self.target.upgrade().is_some_and(|target| target.is_live())
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("live", &self.is_live())
            .finish()
    }
}

/// A boxed backend is a backend: adapters may pick their backend at run time.
impl<B: Backend + ?Sized> Backend for Box<B> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn arm(&self, next: NextDispatch) {
        (**self).arm(next)
    }
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        (**self).remote_waker()
    }
    fn turn(&self) -> io::Result<()> {
        (**self).turn()
    }
    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        (**self).watch(fd, interest)
    }
    fn is_attached(&self) -> bool {
        (**self).is_attached()
    }
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn clock_resolution(&self) -> Duration {
        (**self).clock_resolution()
    }
    fn enter(&self, f: &mut dyn FnMut()) {
        (**self).enter(f)
    }
    fn stop_requested(&self) {
        (**self).stop_requested()
    }
    fn close(&self) {
        (**self).close()
    }
}
