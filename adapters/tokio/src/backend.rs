//! [`TokioBackend`]: the `Backend` on a tokio current-thread runtime, owned
//! or attached, and the two one-line constructors [`new_loop`] and [`attach`].

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use oneloop::backend::{Backend, Driver, Interest, IntoBackend, NextDispatch, RemoteWake};
use oneloop::{Error, ErrorKind, Loop};
use tokio::runtime::{Handle, Runtime};
use tokio::task::{JoinHandle, LocalSet};

use crate::driver::{DriverTask, DriverTimer, State, panic_message};
use crate::stats::{Counters, DriverStats};
use crate::turn::{Turn, TurnWakes};

/// The backend's name, as `Loop::backend_name` reports it.
pub(crate) const NAME: &str = "tokio";

/// oneloop on tokio: a [`Backend`] whose host is a tokio current-thread
/// runtime with a local task set.
///
/// - **Owned** ([`TokioBackend::new`]): the backend builds and owns the
///   runtime and its [`LocalSet`]; `run_forever`/`run_until_complete` drive
///   them on the calling thread.
/// - **Attached** ([`TokioBackend::attached`]): created inside a running
///   `LocalSet` or `LocalRuntime`, it spawns its driver there and never
///   blocks; the program's tokio code keeps running the thread.
///
/// Either way one driver drains oneloop's queues (a local task when
/// attached; owned, the future each turn blocks on), one `Sleep` serves
/// every oneloop timer, and one `AsyncFd`, over the loop's
/// [`Selector`](oneloop::native::Selector), serves every watched fd and the
/// wake of other threads. Callbacks run
/// inside the runtime's context, so tokio-native futures (`tokio::net`,
/// `tokio::time`, `tokio::sync`, `tokio::process`) and
/// `tokio::task::spawn_local` work inside oneloop callbacks and tasks.
///
/// Most programs call [`new_loop`] or [`attach`] instead.
pub struct TokioBackend {
    state: Rc<State>,
    /// Attached: the driver task, which close aborts.
    task: RefCell<Option<JoinHandle<()>>>,
    mode: Mode,
}

enum Mode {
    /// The backend owns the host. `rt` is only `None` while dropping.
    Owned {
        /// Borrowed mutably by a turn, which polls it (see `turn.rs`).
        local: RefCell<LocalSet>,
        rt: Option<Runtime>,
        /// The driver's timer, kept from turn to turn (each turn's root
        /// future is the driver).
        timer: RefCell<Option<DriverTimer>>,
        /// The turns' wakers, kept from turn to turn.
        wakes: RefCell<Option<TurnWakes>>,
    },
    /// A `LocalSet`/`LocalRuntime` someone else runs is the host.
    Attached,
}

impl fmt::Debug for TokioBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioBackend")
            .field("attached", &self.is_attached())
            .field("state", &self.state)
            .finish()
    }
}

/// How to build a [`TokioBackend`]: the runtime it runs on (and, in owned
/// mode, the runtime and `LocalSet` it owns). Give it to
/// [`Loop::with_backend`] (it is an [`IntoBackend`]), which sets up the
/// driver with the loop's driver.
pub struct TokioBuilder {
    mode: Mode,
    handle: Handle,
    counters: Rc<Counters>,
}

impl fmt::Debug for TokioBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioBuilder")
            .field("attached", &matches!(self.mode, Mode::Attached))
            .finish_non_exhaustive()
    }
}

impl TokioBuilder {
    /// The tokio runtime the backend will run on: the escape hatch for
    /// tokio APIs outside oneloop callbacks (inside them,
    /// `tokio::runtime::Handle::current()` works too).
    pub fn runtime_handle(&self) -> Handle {
        self.handle.clone()
    }

    /// A live view of what the driver will do (dispatches, wakes, fd
    /// reports, selects): for tests, benchmarks and host drivers.
    pub fn stats(&self) -> DriverStats {
        DriverStats {
            counters: self.counters.clone(),
        }
    }
}

impl IntoBackend for TokioBuilder {
    type Backend = TokioBackend;

    fn attached(&self) -> bool {
        matches!(self.mode, Mode::Attached)
    }

    /// Set up the driver: its timer, for the turns of an owned loop; the
    /// driver task, spawned on the `LocalSet` running this thread, in
    /// attached mode.
    ///
    /// # Errors
    /// [`io::ErrorKind::Unsupported`] in attached mode outside a
    /// `LocalSet`/`LocalRuntime` (tokio reports that with a panic, which
    /// this call catches and turns into the error; the panic hook still
    /// prints it), or on a runtime built without I/O or timers.
    fn into_backend(mut self, driver: Driver) -> io::Result<TokioBackend> {
        // The builder's `Drop` then has nothing left to drop.
        let mode = std::mem::replace(&mut self.mode, Mode::Attached);
        let (handle, counters) = (self.handle.clone(), self.counters.clone());
        let (state, task) = match &mode {
            Mode::Owned {
                rt: Some(rt),
                timer,
                ..
            } => {
                let state = Rc::new(State::new(handle, driver, counters)?);
                let _enter = rt.enter();
                *timer.borrow_mut() = Some(DriverTimer::new());
                (state, None)
            }
            Mode::Owned { rt: None, .. } => {
                return Err(io::Error::other("the tokio runtime is gone"));
            }
            Mode::Attached => catch_unwind(AssertUnwindSafe(|| {
                let state = Rc::new(State::new(handle, driver, counters)?);
                let task = tokio::task::spawn_local(DriverTask::new(state.clone()));
                Ok::<_, io::Error>((state, Some(task)))
            }))
            .map_err(|payload| {
                unsupported(&format!(
                    "attach() needs a LocalSet or LocalRuntime with I/O and timers enabled: {}",
                    panic_message(&*payload)
                ))
            })??,
        };
        state.wake_driver();
        Ok(TokioBackend {
            state,
            task: RefCell::new(task),
            mode,
        })
    }
}

impl Drop for TokioBuilder {
    fn drop(&mut self) {
        drop_mode(&mut self.mode);
    }
}

impl TokioBackend {
    /// An owned backend: a new current-thread runtime (I/O and timers
    /// enabled) with a [`LocalSet`], run by `run_forever`/`run_until_complete`.
    ///
    /// # Errors
    /// If the runtime cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop_tokio::TokioBackend;
    ///
    /// let backend = TokioBackend::new()?;
    /// let handle = backend.runtime_handle(); // the escape hatch
    /// let lp = oneloop::Loop::with_backend(backend)?;
    /// let joined = handle.spawn(async { 6 * 7 });
    /// assert_eq!(lp.run_until_complete(joined)?.unwrap(), 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> io::Result<TokioBuilder> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(TokioBuilder {
            handle: rt.handle().clone(),
            mode: Mode::Owned {
                local: RefCell::new(LocalSet::new()),
                rt: Some(rt),
                timer: RefCell::new(None),
                wakes: RefCell::new(None),
            },
            counters: Rc::new(Counters::default()),
        })
    }

    /// An attached backend: joins the `LocalSet` or `LocalRuntime` running on
    /// this thread, which then drives the loop; never blocks.
    ///
    /// Call it, and build the loop, from inside that context (in
    /// `LocalSet::run_until`, in a task spawned on it, or under
    /// `LocalRuntime::block_on`). The loop counts as running until it is
    /// closed (or dropped), which removes its task and fds and leaves the
    /// `LocalSet` running.
    ///
    /// # Errors
    /// [`io::ErrorKind::Unsupported`] outside a tokio runtime; building the
    /// loop fails the same way outside a `LocalSet`/`LocalRuntime`.
    pub fn attached() -> io::Result<TokioBuilder> {
        let handle = Handle::try_current().map_err(|_| {
            unsupported(
                "attach() must be called inside a tokio runtime, in a LocalSet or LocalRuntime",
            )
        })?;
        Ok(TokioBuilder {
            handle,
            mode: Mode::Attached,
            counters: Rc::new(Counters::default()),
        })
    }

    /// The tokio runtime this backend runs on: the escape hatch for tokio
    /// APIs outside oneloop callbacks (inside them,
    /// `tokio::runtime::Handle::current()` works too).
    pub fn runtime_handle(&self) -> Handle {
        self.state.handle.clone()
    }

    /// A live view of what the driver does (dispatches, wakes, fd
    /// reports, selects): for tests, benchmarks and host drivers.
    pub fn stats(&self) -> DriverStats {
        DriverStats {
            counters: self.state.counters.clone(),
        }
    }
}

/// Drop an owned mode's `LocalSet` (and the tasks on it) before its
/// runtime, without blocking inside another runtime's context.
fn drop_mode(mode: &mut Mode) {
    if let Mode::Owned {
        local,
        rt,
        timer,
        wakes,
    } = mode
    {
        // The `Sleep` is the runtime's too.
        drop(timer.get_mut().take());
        drop(std::mem::take(local.get_mut()));
        drop(wakes.get_mut().take());
        if let Some(rt) = rt.take() {
            if Handle::try_current().is_ok() {
                // Dropping a runtime blocks, which tokio forbids inside
                // another runtime's context.
                rt.shutdown_background();
            } else {
                drop(rt);
            }
        }
    }
}

fn unsupported(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, msg.to_owned())
}

impl Backend for TokioBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn enter(&self, f: &mut dyn FnMut()) {
        // `run_until_complete`'s root future is polled between turns: enter
        // the runtime and the LocalSet so it can await tokio futures
        // (`tokio::time::sleep`, `tokio::net`) and `spawn_local` directly.
        match &self.mode {
            Mode::Owned {
                local,
                rt: Some(rt),
                ..
            } => {
                let _rt = rt.enter();
                // Borrowed: inside a turn, whose thread is in the
                // `LocalSet`'s context already.
                let _local = local.try_borrow().ok().map(|l| l.enter());
                f()
            }
            _ => f(),
        }
    }

    fn arm(&self, next: NextDispatch) {
        self.state.armed.set(next);
        if next != NextDispatch::OnEvent {
            self.state.wake_driver();
        }
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.state.wake.clone()
    }

    fn turn(&self) -> io::Result<()> {
        let Mode::Owned {
            local,
            rt: Some(rt),
            timer,
            wakes,
        } = &self.mode
        else {
            return Err(unsupported("an attached tokio loop is run by its host"));
        };
        let turning = || io::Error::other("the tokio loop is already turning");
        let mut timer = timer.try_borrow_mut().map_err(|_| turning())?;
        let mut local = local.try_borrow_mut().map_err(|_| turning())?;
        let mut wakes = wakes.try_borrow_mut().map_err(|_| turning())?;
        let Some(timer) = timer.as_mut() else {
            return Err(io::Error::other("the tokio runtime is gone"));
        };
        let local = &mut *local;
        // `spawn_local` from callbacks and tasks spawns on the owned set.
        let _local = local.enter();
        let turn = Turn {
            state: &self.state,
            timer,
            local: std::pin::Pin::new(local),
            wakes: &mut wakes,
            primed: false,
            ending: false,
        };
        // tokio refuses to block inside a runtime's async context with a
        // panic, before it runs anything; report that as an error. Callback
        // panics never get here: the scheduler catches them (D3); a panic
        // of the driver itself (a bug in this adapter) is reported too.
        catch_unwind(AssertUnwindSafe(|| rt.block_on(turn))).map_err(|payload| {
            io::Error::other(format!(
                "the tokio runtime could not run the loop: {} (an owned tokio loop cannot run \
                 inside a tokio runtime's async context; use oneloop_tokio::attach() there)",
                panic_message(&*payload)
            ))
        })
    }

    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.state.watch(fd, interest)
    }

    fn is_attached(&self) -> bool {
        matches!(self.mode, Mode::Attached)
    }

    fn clock_resolution(&self) -> Duration {
        // tokio's timer wheel has millisecond slots and rounds up.
        Duration::from_millis(1)
    }

    fn close(&self) {
        let st = &self.state;
        st.closed.set(true);
        st.clear();
        if let Some(task) = self.task.borrow_mut().take() {
            task.abort();
        }
    }
}

impl Drop for TokioBackend {
    fn drop(&mut self) {
        self.close();
        // The driver and any local tasks go before their runtime.
        drop_mode(&mut self.mode);
    }
}

/// A new loop on an owned tokio current-thread runtime.
///
/// # Errors
/// [`ErrorKind::Io`] if the runtime cannot be created.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop_tokio::new_loop()?;
/// let answer = lp.run_until_complete(lp.spawn(async {
///     tokio::time::sleep(Duration::from_millis(2)).await; // tokio-native
///     oneloop::sleep(Duration::from_millis(1)).await?;    // oneloop
///     Ok::<_, oneloop::Error>(42)
/// })?)???;
/// assert_eq!(answer, 42);
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn new_loop() -> oneloop::Result<Loop> {
    Loop::with_backend(TokioBackend::new()?)
}

/// A loop attached to the `LocalSet` or `LocalRuntime` running on this
/// thread (see [`TokioBackend::attached`]).
///
/// # Errors
/// [`ErrorKind::Unsupported`] outside a `LocalSet`/`LocalRuntime`;
/// [`ErrorKind::AlreadyRunning`] if another oneloop loop runs on this thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let local = tokio::task::LocalSet::new();
/// local.block_on(&rt, async {
///     let lp = oneloop_tokio::attach()?;
///     assert!(lp.is_running()); // the LocalSet runs it
///     let (tx, rx) = tokio::sync::oneshot::channel();
///     lp.call_later(Duration::from_millis(1), move || { let _ = tx.send("fired"); })?;
///     assert_eq!(rx.await.unwrap(), "fired");
///     lp.close()?; // detaches; the LocalSet goes on
///     Ok::<(), oneloop::Error>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attach() -> oneloop::Result<Loop> {
    let backend = TokioBackend::attached().map_err(|e| match e.kind() {
        io::ErrorKind::Unsupported => Error::new(ErrorKind::Unsupported, e.to_string()),
        _ => Error::from(e),
    })?;
    Loop::with_backend(backend)
}
