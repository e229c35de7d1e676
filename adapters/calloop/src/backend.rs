//! [`CalloopBackend`]: the [`Backend`] on a calloop event loop, owned or
//! attached; [`new_loop`] and [`attach`] build a [`Loop`] on it.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use calloop::{EventLoop, LoopHandle};
use oneloop::backend::{Backend, Driver, Interest, IntoBackend, NextDispatch, RemoteWake};
use oneloop::{Loop, LoopBuilder};

use crate::sources::Sources;

/// A oneloop [`Backend`] on a calloop event loop.
///
/// - **Owned** ([`CalloopBackend::new`], `D = ()`): the backend owns an
///   `EventLoop<'static, ()>`, and `Loop::run_forever`/`run_until_complete`
///   drive it, one `EventLoop::dispatch` per loop iteration. Native calloop
///   sources can run on it too: insert them through
///   [`handle`](CalloopBackend::handle).
/// - **Attached** ([`CalloopBackend::attached`], any `D`): the host (a
///   compositor) owns and runs its `EventLoop<'static, D>`; oneloop inserts
///   its sources through the host's `LoopHandle` and never dispatches
///   itself. The loop counts as running until `close()`, and `run_*`
///   answer [`AlreadyRunning`](oneloop::ErrorKind::AlreadyRunning).
///
/// Either way the backend inserts at most two sources, whatever the number
/// of callbacks, timers and watched fds: one `Generic` over the loop's
/// [`Selector`](oneloop::native::Selector) (every watched fd and the wake)
/// and, attached, one timer at the earliest deadline (an owned loop polls
/// with that deadline as its timeout instead); `Loop::close` (or dropping
/// the loop) removes them and leaves the host running.
///
/// Most programs use [`new_loop`] or [`attach`]; build the backend yourself
/// to keep its [`handle`](CalloopBackend::handle) or to pass a
/// [`LoopBuilder`] (see [`attach_with`]).
pub struct CalloopBackend<D: 'static> {
    sources: Rc<Sources<D>>,
    /// Owned mode: the event loop `turn` dispatches.
    owned: Option<RefCell<EventLoop<'static, ()>>>,
}

impl<D: 'static> fmt::Debug for CalloopBackend<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloopBackend")
            .field(
                "mode",
                &if self.owned.is_some() {
                    "owned"
                } else {
                    "attached"
                },
            )
            .field("host_sources", &self.sources.count())
            .field("watched_fds", &self.sources.watched())
            .finish()
    }
}

/// How to build a [`CalloopBackend`]: the event loop it runs on (owned,
/// or the host's handle). Give it to [`Loop::with_backend`] (it is an
/// [`IntoBackend`]), which inserts the backend's sources with the loop's
/// driver.
pub struct CalloopBuilder<D: 'static> {
    handle: LoopHandle<'static, D>,
    /// Owned mode: the event loop the backend will own.
    owned: Option<EventLoop<'static, ()>>,
}

impl<D: 'static> fmt::Debug for CalloopBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloopBuilder")
            .field("owned", &self.owned.is_some())
            .finish_non_exhaustive()
    }
}

impl<D: 'static> CalloopBuilder<D> {
    /// A handle to the calloop event loop the backend will run on, for
    /// native calloop sources.
    pub fn handle(&self) -> Option<LoopHandle<'static, D>> {
        Some(self.handle.clone())
    }
}

impl<D: 'static> IntoBackend for CalloopBuilder<D> {
    type Backend = CalloopBackend<D>;

    fn attached(&self) -> bool {
        self.owned.is_none()
    }

    /// Insert the selector's source into the event loop.
    ///
    /// # Errors
    /// If the selector cannot be created (out of fds), or calloop refuses
    /// the source.
    fn into_backend(self, driver: Driver) -> io::Result<CalloopBackend<D>> {
        let sources = Sources::new(&self.handle, driver, self.owned.is_some())?;
        Ok(CalloopBackend {
            sources,
            owned: self.owned.map(RefCell::new),
        })
    }
}

impl CalloopBackend<()> {
    /// An owned backend: a new `EventLoop<'static, ()>` that the loop runs.
    ///
    /// # Errors
    /// If calloop cannot create its poller.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use calloop::timer::{TimeoutAction, Timer};
    /// use oneloop_calloop::CalloopBackend;
    ///
    /// let backend = CalloopBackend::new()?;
    /// // A native calloop source on the same loop, beside oneloop's.
    /// backend
    ///     .handle()
    ///     .expect("the backend owns its event loop")
    ///     .insert_source(Timer::from_duration(Duration::from_millis(1)), |_, _, _| {
    ///         TimeoutAction::Drop
    ///     })
    ///     .map_err(|e| e.error)?;
    /// let lp = oneloop::Loop::with_backend(backend)?;
    /// lp.run_until_complete(oneloop::sleep(Duration::from_millis(2)))??;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> io::Result<CalloopBuilder<()>> {
        let event_loop: EventLoop<'static, ()> = EventLoop::try_new().map_err(io::Error::from)?;
        Ok(CalloopBuilder {
            handle: event_loop.handle(),
            owned: Some(event_loop),
        })
    }
}

impl<D: 'static> CalloopBackend<D> {
    /// An attached backend on the host's event loop: the host keeps running
    /// it; oneloop only inserts sources through `handle`.
    ///
    /// # Errors
    /// None today (building the loop creates the selector); kept
    /// fallible for the callers that `?` it.
    pub fn attached(handle: LoopHandle<'static, D>) -> io::Result<CalloopBuilder<D>> {
        Ok(CalloopBuilder {
            handle,
            owned: None,
        })
    }

    /// A handle to the calloop event loop this backend runs on, for native
    /// calloop sources; `None` once that loop was dropped.
    pub fn handle(&self) -> Option<LoopHandle<'static, D>> {
        self.sources.handle()
    }
}

impl<D: 'static> Backend for CalloopBackend<D> {
    fn name(&self) -> &str {
        "calloop"
    }

    fn arm(&self, next: NextDispatch) {
        self.sources.arm(next);
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.sources.waker()
    }

    fn turn(&self) -> io::Result<()> {
        let Some(owned) = &self.owned else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an attached calloop loop is run by its host",
            ));
        };
        let mut event_loop = owned
            .try_borrow_mut()
            .map_err(|_| io::Error::other("the calloop event loop is already dispatching"))?;
        // The poll ends on the selector's source (a ready fd, a wake), a
        // native source, or the armed deadline; `Now` does not block.
        let timeout = self.sources.poll_timeout(self.clock_resolution());
        event_loop
            .dispatch(timeout, &mut ())
            .map_err(io::Error::from)?;
        // The iteration runs outside calloop's dispatch and its borrow, as
        // an idle would, without inserting one.
        drop(event_loop);
        self.sources.dispatch_if_due();
        Ok(())
    }

    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.sources.watch(fd, interest)
    }

    fn is_attached(&self) -> bool {
        self.owned.is_none()
    }

    fn clock_resolution(&self) -> Duration {
        // calloop fires a timer only once `Instant::now()` passed its
        // deadline (and the owned turn dispatches only then), and its
        // poller (polling) waits with a timerfd on Linux and Android, with
        // whole milliseconds (rounded up) elsewhere.
        if cfg!(any(target_os = "linux", target_os = "android")) {
            Duration::from_micros(1)
        } else {
            Duration::from_millis(1)
        }
    }

    fn close(&self) {
        self.sources.close();
    }
}

impl<D: 'static> Drop for CalloopBackend<D> {
    /// A loop dropped without `close()` leaves nothing in the host either.
    fn drop(&mut self) {
        self.sources.close();
    }
}

/// A new loop that owns a calloop event loop (owned mode): run it with
/// `run_forever`/`run_until_complete`.
///
/// # Errors
/// [`ErrorKind::Io`](oneloop::ErrorKind::Io) if calloop cannot create its
/// poller.
///
/// # Examples
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop_calloop::new_loop()?;
/// let task = lp.spawn(async {
///     oneloop::sleep(Duration::from_millis(1)).await?;
///     Ok::<_, oneloop::Error>("done")
/// })?;
/// assert_eq!(lp.run_until_complete(task)???, "done");
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn new_loop() -> oneloop::Result<Loop> {
    Loop::with_backend(CalloopBackend::new()?)
}

/// A loop attached to the host's calloop event loop (attached mode): the
/// host's `EventLoop::dispatch`/`run` drives it.
///
/// `D` is the host's data type; oneloop callbacks never see the `&mut D`
/// (see the [crate docs](crate#sharing-state-with-the-hosts-data) for the
/// patterns that share state with it).
///
/// # Errors
/// [`ErrorKind::AlreadyRunning`](oneloop::ErrorKind::AlreadyRunning) if
/// another loop is running on this thread;
/// [`ErrorKind::Io`](oneloop::ErrorKind::Io) if the host's event loop was
/// dropped or the selector cannot be created.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use calloop::EventLoop;
///
/// struct Compositor { frames: u32 }
///
/// let mut event_loop: EventLoop<'static, Compositor> = EventLoop::try_new()?;
/// let lp = oneloop_calloop::attach(event_loop.handle())?;
/// assert!(lp.is_running());
///
/// let signal = event_loop.get_signal();
/// lp.call_later(Duration::from_millis(1), move || signal.stop())?;
/// let mut state = Compositor { frames: 0 };
/// event_loop.run(None, &mut state, |state| state.frames += 1)?;
///
/// lp.close()?; // removes oneloop's sources; the host loop lives on
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attach<D: 'static>(handle: LoopHandle<'static, D>) -> oneloop::Result<Loop> {
    attach_with(LoopBuilder::new(), handle)
}

/// [`attach`] with options (debug mode, panic policy).
///
/// # Errors
/// As [`attach`].
///
/// # Examples
///
/// ```
/// use calloop::EventLoop;
/// use oneloop::{Loop, PanicPolicy};
///
/// let event_loop: EventLoop<'static, ()> = EventLoop::try_new()?;
/// let builder = Loop::builder().debug(true).panic_policy(PanicPolicy::Report);
/// let lp = oneloop_calloop::attach_with(builder, event_loop.handle())?;
/// assert!(lp.debug() && lp.is_attached());
/// lp.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attach_with<D: 'static>(
    builder: LoopBuilder,
    handle: LoopHandle<'static, D>,
) -> oneloop::Result<Loop> {
    builder.build_with(CalloopBackend::attached(handle)?)
}
