//! [`SmolBackend`]: the [`Backend`] on async-io and async-executor, owned
//! or attached, and [`DriverFuture`], its driver for any host executor.

use std::cell::RefCell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_executor::{LocalExecutor, Task};
use futures_lite::FutureExt;
use oneloop::backend::{Backend, Driver, Interest, IntoBackend, NextDispatch, RemoteWake};

use crate::driver::{Core, DriverTask, Gate};

/// Executor tasks an owned turn runs between two reactor polls.
const TICKS_PER_POLL: u32 = 64;

/// oneloop on smol: the async-io reactor and an async-executor
/// `LocalExecutor`, the engine under smol and async-std.
///
/// Build a [`Loop`](oneloop::Loop) with it through
/// [`Loop::with_backend`](oneloop::Loop::with_backend):
///
/// | constructor | mode | who runs the loop |
/// |---|---|---|
/// | [`new`](SmolBackend::new) | owned | `run_forever`/`run_until_complete`, on an executor of its own |
/// | [`with_executor`](SmolBackend::with_executor) | owned | the same, and your executor's tasks run alongside |
/// | [`attach`](SmolBackend::attach) | attached | whoever runs your `LocalExecutor` (e.g. `smol::block_on(ex.run(..))`) |
/// | [`attach_async_std`](SmolBackend::attach_async_std) | attached | async-std's runtime on this thread (`async_std::task::block_on`) |
/// | [`attached`](SmolBackend::attached) | attached | any executor you spawn the returned [`DriverFuture`] on |
///
/// One driver task drains oneloop's ready queue; one `async_io::Timer`
/// follows the earliest deadline; one `Async` registration, the loop's
/// [`Selector`](oneloop::native::Selector), holds every watched fd
/// (level-triggered, each fd's blocking mode left alone) and the wake of
/// other threads (an eventfd write: async-signal-safe, coalesced).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use oneloop::Loop;
/// use oneloop_smol::SmolBackend;
///
/// let lp = Loop::with_backend(SmolBackend::new()?)?;
/// let out = lp.run_until_complete(async {
///     // async-io's own timer and oneloop's sleep, in one task.
///     async_io::Timer::after(Duration::from_millis(1)).await;
///     oneloop::sleep(Duration::from_millis(1)).await?;
///     Ok::<_, oneloop::Error>(7)
/// })??;
/// assert_eq!(out, 7);
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[doc(alias = "async-io")]
#[doc(alias = "async-std")]
pub struct SmolBackend {
    core: Rc<Core>,
    mode: Mode,
}

enum Mode {
    /// `turn()` runs `ex` inside `async_io::block_on`.
    Owned {
        ex: Rc<LocalExecutor<'static>>,
        task: RefCell<Option<Task<()>>>,
    },
    /// The host runs the driver; `task` is its handle when we have one
    /// (dropping it cancels the driver).
    Attached { task: RefCell<Option<Task<()>>> },
}

impl fmt::Debug for SmolBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Owned { .. } => "owned",
            Mode::Attached { .. } => "attached",
        };
        f.debug_struct("SmolBackend")
            .field("mode", &mode)
            .field("core", &self.core)
            .finish()
    }
}

/// The driver of an attached [`SmolBackend`], for a host executor that
/// is neither an async-executor `LocalExecutor` nor async-std's runtime.
///
/// Spawn it once, as a `!Send` task on the executor that runs on the loop's
/// thread, and keep that executor running: it is what dispatches the loop.
/// It completes when the loop is closed (or dropped).
///
/// # Examples
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use futures::executor::LocalPool;
/// use futures::task::LocalSpawnExt;
/// use oneloop::Loop;
/// use oneloop_smol::SmolBackend;
///
/// let mut pool = LocalPool::new();
/// let (backend, driver) = SmolBackend::attached()?;
/// pool.spawner().spawn_local(driver).unwrap();
/// let lp = Loop::with_backend(backend)?;
/// let ran = Rc::new(Cell::new(false));
/// lp.call_soon({ let ran = ran.clone(); move || ran.set(true) })?;
/// pool.run_until_stalled();
/// assert!(ran.get());
/// lp.close()?;
/// pool.run(); // the driver ends with the loop
/// # Ok::<(), oneloop::Error>(())
/// ```
///
/// It may be spawned before the loop is built: it waits for the loop, and
/// completes at once if the [`SmolBuilder`] is dropped unbuilt.
#[must_use = "the loop is dispatched only while its driver runs on an executor"]
pub struct DriverFuture {
    pending: Rc<Pending>,
    task: Option<DriverTask>,
}

/// Where an attached backend's [`DriverFuture`] finds its loop's driver
/// task once the loop is built.
#[derive(Default)]
struct Pending {
    task: RefCell<Option<DriverTask>>,
    waker: RefCell<Option<std::task::Waker>>,
    /// The builder was dropped without building a loop.
    abandoned: std::cell::Cell<bool>,
}

impl Pending {
    fn fill(&self, task: Option<DriverTask>) {
        match task {
            Some(task) => *self.task.borrow_mut() = Some(task),
            None => self.abandoned.set(true),
        }
        let waker = self.waker.borrow_mut().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl fmt::Debug for DriverFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverFuture").finish_non_exhaustive()
    }
}

impl Future for DriverFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.task.is_none() {
            this.task = this.pending.task.borrow_mut().take();
        }
        match &mut this.task {
            Some(task) => Pin::new(task).poll(cx),
            None if this.pending.abandoned.get() => Poll::Ready(()),
            None => {
                *this.pending.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// How to build an [`SmolBackend`]: its executor (owned mode), or the
/// driver already handed to a host executor (attached mode). Give it to
/// [`Loop::with_backend`](oneloop::Loop::with_backend) (it is an
/// [`IntoBackend`]), which builds the backend with the loop's driver.
pub struct SmolBuilder {
    mode: Build,
}

enum Build {
    Owned(Rc<LocalExecutor<'static>>),
    Attached {
        pending: Rc<Pending>,
        task: Option<Task<()>>,
    },
    /// Built (or being built): nothing left to hand over.
    Taken,
}

impl fmt::Debug for SmolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Build::Owned(_) => "owned",
            Build::Attached { .. } => "attached",
            Build::Taken => "taken",
        };
        f.debug_struct("SmolBuilder").field("mode", &mode).finish()
    }
}

impl IntoBackend for SmolBuilder {
    type Backend = SmolBackend;

    fn attached(&self) -> bool {
        matches!(self.mode, Build::Attached { .. })
    }

    /// Make the backend's state and start (or release) its driver task.
    ///
    /// # Errors
    /// If the selector cannot be created or registered (out of fds).
    fn into_backend(mut self, driver: Driver) -> io::Result<SmolBackend> {
        match std::mem::replace(&mut self.mode, Build::Taken) {
            Build::Owned(ex) => {
                let core = Rc::new(Core::new(Gate::Closed, driver)?);
                let task = ex.spawn(DriverTask {
                    core: Rc::downgrade(&core),
                });
                Ok(SmolBackend {
                    core,
                    mode: Mode::Owned {
                        ex,
                        task: RefCell::new(Some(task)),
                    },
                })
            }
            Build::Attached { pending, task } => {
                let core = match Core::new(Gate::Open, driver) {
                    Ok(core) => Rc::new(core),
                    Err(e) => {
                        pending.fill(None);
                        return Err(e);
                    }
                };
                pending.fill(Some(DriverTask {
                    core: Rc::downgrade(&core),
                }));
                Ok(SmolBackend {
                    core,
                    mode: Mode::Attached {
                        task: RefCell::new(task),
                    },
                })
            }
            Build::Taken => Err(io::Error::other("this backend was already built")),
        }
    }
}

impl Drop for SmolBuilder {
    /// A driver handed out for a loop that is never built ends.
    fn drop(&mut self) {
        if let Build::Attached { pending, .. } = &self.mode {
            pending.fill(None);
        }
    }
}

impl SmolBackend {
    /// Owned mode, on an executor of its own: `run_forever` and
    /// `run_until_complete` run it inside `async_io::block_on`, so the
    /// reactor runs on the loop's thread.
    ///
    /// # Errors
    /// If the selector cannot be created or registered (out of fds).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> io::Result<SmolBuilder> {
        SmolBackend::with_executor(Rc::new(LocalExecutor::new()))
    }

    /// Owned mode on `ex`: while the loop runs, `ex`'s other tasks (smol or
    /// async-std code spawned with `ex.spawn`) run too, interleaved with
    /// oneloop's iterations on the same thread.
    ///
    /// # Errors
    /// If the selector cannot be created or registered (out of fds).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use async_executor::LocalExecutor;
    /// use oneloop::Loop;
    /// use oneloop_smol::SmolBackend;
    ///
    /// let ex = Rc::new(LocalExecutor::new());
    /// let lp = Loop::with_backend(SmolBackend::with_executor(ex.clone())?)?;
    /// let smol_task = ex.spawn(async { 6 * 7 });
    /// assert_eq!(lp.run_until_complete(smol_task)?, 42);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn with_executor(ex: Rc<LocalExecutor<'static>>) -> io::Result<SmolBuilder> {
        Ok(SmolBuilder {
            mode: Build::Owned(ex),
        })
    }

    /// Attached mode: the driver is spawned on `ex`, which the host already
    /// runs on this thread (`smol::block_on(ex.run(..))`, or
    /// `async_io::block_on(ex.run(..))`). The loop counts as running from
    /// now until [`Loop::close`](oneloop::Loop::close); `run_*` answer
    /// `AlreadyRunning`.
    ///
    /// # Errors
    /// If the selector cannot be created or registered (out of fds).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_executor::LocalExecutor;
    /// use oneloop::Loop;
    /// use oneloop_smol::SmolBackend;
    ///
    /// let ex = LocalExecutor::new();
    /// let lp = Loop::with_backend(SmolBackend::attach(&ex)?)?;
    /// assert!(lp.is_running());
    /// let task = lp.spawn(async {
    ///     oneloop::sleep(Duration::from_millis(2)).await?;
    ///     Ok::<_, oneloop::Error>("done")
    /// })?;
    /// // The host runs its executor; oneloop runs inside it.
    /// let out = async_io::block_on(ex.run(task))??;
    /// assert_eq!(out, "done");
    /// lp.close()?;
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn attach(ex: &LocalExecutor<'_>) -> io::Result<SmolBuilder> {
        let (mut builder, driver) = SmolBackend::attached()?;
        let spawned = ex.spawn(driver);
        if let Build::Attached { task, .. } = &mut builder.mode {
            *task = Some(spawned);
        }
        Ok(builder)
    }

    /// Attached mode on async-std's runtime: the driver is spawned with
    /// `async_std::task::spawn_local`, so it runs while this thread is inside
    /// `async_std::task::block_on`.
    ///
    /// async-std is discontinued upstream; this is for programs that still
    /// run it. Feature `async-std` (on by default).
    ///
    /// # Errors
    /// If the selector cannot be created or registered (out of fds).
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::Loop;
    /// use oneloop_smol::SmolBackend;
    ///
    /// async_std::task::block_on(async {
    ///     let lp = Loop::with_backend(SmolBackend::attach_async_std()?)?;
    ///     let fut = lp.create_future::<u32>();
    ///     lp.call_soon({ let fut = fut.clone(); move || { let _ = fut.set_result(5); } })?;
    ///     assert_eq!(fut.await?, 5);
    ///     lp.close()
    /// })?;
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[cfg(feature = "async-std")]
    pub fn attach_async_std() -> io::Result<SmolBuilder> {
        let (builder, driver) = SmolBackend::attached()?;
        // The handle detaches on drop; the driver ends when the loop closes.
        drop(async_std::task::spawn_local(driver));
        Ok(builder)
    }

    /// Attached mode on any executor: spawn the returned [`DriverFuture`] on
    /// the executor that runs on this thread.
    ///
    /// # Errors
    /// If the selector cannot be created or registered (out of fds).
    pub fn attached() -> io::Result<(SmolBuilder, DriverFuture)> {
        let pending = Rc::new(Pending::default());
        let driver = DriverFuture {
            pending: pending.clone(),
            task: None,
        };
        let builder = SmolBuilder {
            mode: Build::Attached {
                pending,
                task: None,
            },
        };
        Ok((builder, driver))
    }

    fn shut(&self) {
        self.core.shut();
        let task = match &self.mode {
            Mode::Owned { task, .. } | Mode::Attached { task } => task.borrow_mut().take(),
        };
        drop(task);
    }
}

impl Backend for SmolBackend {
    fn name(&self) -> &str {
        "smol"
    }

    fn arm(&self, next: NextDispatch) {
        self.core.arm(next);
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.core.waker.clone()
    }

    fn turn(&self) -> io::Result<()> {
        let Mode::Owned { ex, .. } = &self.mode else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an attached smol loop is run by its host executor",
            ));
        };
        let core = &self.core;
        core.open_turn();
        // Closes the turn even if a task's panic unwinds out of the executor.
        struct TurnGuard<'a>(&'a Core);
        impl Drop for TurnGuard<'_> {
            fn drop(&mut self) {
                self.0.close_turn();
            }
        }
        let _guard = TurnGuard(core);
        async_io::block_on(async {
            // Run the executor's tasks in its FIFO order, the driver among
            // them, until the turn ends. Before the first oneloop
            // iteration, and after every one that left the driver more to
            // do (it woke itself: callbacks are ready, or fds are owed),
            // yield once: `block_on` then polls the reactor with a zero
            // timeout, as any loop polls I/O once per iteration, so a
            // callback storm cannot starve fds and timers (CB-04). After an
            // iteration that left nothing to do, `block_on` polls the
            // reactor anyway, waiting in it: a yield would be a second poll
            // per event. Long stretches of other tasks yield every
            // `TICKS_PER_POLL` for the same reason.
            let mut ticks = 0u32;
            let mut seen = core.dispatches.get();
            futures_lite::future::yield_now().await;
            while core.gate.get() == Gate::Turn {
                ex.tick().or(poll_fn(|cx| core.poll_turn(cx))).await;
                ticks += 1;
                let dispatched = core.dispatches.get() != seen;
                seen = core.dispatches.get();
                if (dispatched && core.rerun_pending()) || ticks.is_multiple_of(TICKS_PER_POLL) {
                    futures_lite::future::yield_now().await;
                }
            }
        });
        Ok(())
    }

    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.core.watch(fd, interest)
    }

    fn is_attached(&self) -> bool {
        matches!(self.mode, Mode::Attached { .. })
    }

    fn close(&self) {
        self.shut();
    }
}

impl Drop for SmolBackend {
    fn drop(&mut self) {
        // A loop dropped without `close` still deregisters every fd now,
        // while its owner keeps it open.
        self.shut();
    }
}
