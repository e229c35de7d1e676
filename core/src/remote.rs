//! [`RemoteLoop`]: the `Send + Sync` handle other threads use.

use std::fmt;
use std::future::Future as StdFuture;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::context;
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::{Loop, LoopInner, far_future};
use crate::exception::panic_message;
use crate::scheduler::Ready;
use crate::scheduler::callback::{SharedTimer, SharedTimerEntry, State};
use crate::scheduler::inbox::{Remote, Shared};

/// The thread-safe handle of a loop, from [`Loop::remote`].
///
/// "Touch the loop from other threads only through `call_soon_threadsafe`"
/// (PEP 3156): this type is that rule in types. It is `Send + Sync` and
/// cheap to clone, and every method works from any thread, including the
/// loop's own.
///
/// # Examples
///
/// ```
/// let lp = oneloop::Loop::new()?;
/// let remote = lp.remote();
/// let worker = std::thread::spawn(move || remote.call_soon_threadsafe(|| println!("on the loop")));
/// worker.join().unwrap()?;
/// let remote = lp.remote();
/// std::thread::spawn(move || remote.stop());
/// lp.run_forever()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Clone)]
pub struct RemoteLoop {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for RemoteLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteLoop")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl RemoteLoop {
    /// Schedule `f` on the loop's thread, waking the loop if it is blocked
    /// (TH-01). It joins the same FIFO as [`Loop::call_soon`] (D8): from the
    /// loop's own thread it is queued at once, from another thread at the
    /// loop's next iteration. Wakes are coalesced.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed (TH-05); never panics.
    #[track_caller]
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let location = Location::caller();
        if std::thread::current().id() == self.shared.thread
            && let Some(inner) = context::local_loop(self.shared.id)
        {
            return inner
                .sched
                .try_push_ready_with(|| Ready::Boxed(Box::new(f), location));
        }
        self.shared
            .post(Remote::Call(Box::new(f), location))
            .map_err(|_| Error::closed())
    }

    /// Stop the loop, from any thread (TH-01: `call_soon_threadsafe(stop)`).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed.
    pub fn stop(&self) -> Result<()> {
        let id = self.shared.id;
        self.call_soon_threadsafe(move || {
            if let Some(inner) = context::local_loop(id) {
                Loop::from_inner(inner).stop();
            }
        })
    }

    /// Run a `Send` future as a task on the loop; the returned handle
    /// gives its output to any thread.
    ///
    /// The future is moved to the loop's thread before it starts, hence
    /// `Send`: it cannot hold the loop's own `!Send` values ([`sleep`](crate::sleep),
    /// a [`LoopFuture`](crate::LoopFuture)) across an await. For such work
    /// use [`spawn_with`](RemoteLoop::spawn_with), which builds the future
    /// on the loop's thread.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed.
    ///
    /// # Examples
    ///
    /// A worker thread hands the loop a job and waits for its answer:
    ///
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// let remote = lp.remote();
    /// let loop_thread = std::thread::current().id();
    /// let worker = std::thread::spawn(move || {
    ///     let (tx, rx) = futures::channel::oneshot::channel();
    ///     let task = remote.spawn(async move {
    ///         let asked: u32 = rx.await.unwrap_or(0);
    ///         (asked * 2, std::thread::current().id() == loop_thread)
    ///     })?;
    ///     tx.send(21).unwrap();
    ///     let answer = futures::executor::block_on(task)?; // any executor, any thread
    ///     remote.stop()?;
    ///     Ok::<_, oneloop::Error>(answer)
    /// });
    /// lp.run_forever()?;
    /// assert_eq!(worker.join().unwrap()?, (42, true)); // computed on the loop's thread
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Result<RemoteTask<F::Output>>
    where
        F: StdFuture + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_with(move |_| future)
    }

    /// Build a future on the loop's thread with `make` and run it there as
    /// a task; the returned handle gives its output to any thread.
    ///
    /// Only `make` and the output cross threads, so the future itself may
    /// be `!Send`: it may hold [`sleep`](crate::sleep)s, a
    /// [`LoopFuture`](crate::LoopFuture), streams, `Rc`s across its awaits
    /// (tokio's `LocalPoolHandle::spawn_pinned` has this shape). `make`
    /// gets the loop.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let remote = lp.remote();
    /// let worker = std::thread::spawn(move || {
    ///     let task = remote.spawn_with(|lp| async move {
    ///         let ticks = std::rc::Rc::new(std::cell::Cell::new(0)); // !Send
    ///         for _ in 0..3 {
    ///             oneloop::sleep(Duration::from_millis(1)).await?; // !Send too
    ///             ticks.set(ticks.get() + 1);
    ///         }
    ///         Ok::<(u32, bool), oneloop::Error>((ticks.get(), lp.is_running()))
    ///     })?;
    ///     let answer = futures::executor::block_on(task)?;
    ///     remote.stop()?;
    ///     answer
    /// });
    /// lp.run_forever()?;
    /// assert_eq!(worker.join().unwrap()?, (3, true));
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn spawn_with<C, F>(&self, make: C) -> Result<RemoteTask<F::Output>>
    where
        C: FnOnce(Loop) -> F + Send + 'static,
        F: StdFuture + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let id = self.shared.id;
        self.call_soon_threadsafe(move || {
            let Some(inner) = context::local_loop(id) else {
                return;
            };
            let lp = Loop::from_inner(inner);
            // A builder that panics: the handle says so (dropping `tx`
            // would say the loop closed), and the panic goes on to the
            // loop like any callback's, as in `run_coroutine_threadsafe`.
            let future = match catch_unwind(AssertUnwindSafe(|| make(lp.clone()))) {
                Ok(future) => future,
                Err(payload) => {
                    let error = Error::new(ErrorKind::Panicked, panic_message(&*payload));
                    let _ = tx.send(Err(error));
                    resume_unwind(payload);
                }
            };
            if let Ok(task) = lp.spawn(future) {
                // A helper: cancelling every task cancels the user's task,
                // whose ending this forwards, never the forwarding itself.
                let _ = lp.spawn_helper(async move {
                    let _ = tx.send(task.await);
                });
            }
        })?;
        Ok(RemoteTask { rx })
    }

    /// Schedule `f` to run on the loop's thread `delay` from now, from any
    /// thread; the returned handle is `Send + Sync` and cancels it from any
    /// thread (what a `Send` sleep needs, e.g. hyper's `Timer`).
    ///
    /// From the loop's own thread the timer is in the queue at once, as with
    /// [`Loop::call_later`]. From another thread it is installed when the
    /// loop next runs its inbox, and `delay` counts from then: never early
    /// (D7), possibly late by the loop's reaction time.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let start = lp.time();
    /// let remote = lp.remote();
    /// std::thread::spawn(move || {
    ///     let stop = remote.clone();
    ///     remote.call_later(Duration::from_millis(5), move || stop.stop().unwrap())
    /// });
    /// lp.run_forever()?; // until the timer fires, on this thread
    /// assert!(lp.time() >= start + Duration::from_millis(5));
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn call_later(
        &self,
        delay: Duration,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<RemoteTimer> {
        self.schedule(Deadline::After(delay), Box::new(f), Location::caller())
    }

    /// [`call_later`](Self::call_later) at a deadline on the loop's clock
    /// ([`Loop::time`]; `Instant::now()` on every shipped backend).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let deadline = lp.time() + Duration::from_millis(5);
    /// let remote = lp.remote();
    /// std::thread::spawn(move || {
    ///     let stop = remote.clone();
    ///     remote.call_at(deadline, move || stop.stop().unwrap())
    /// });
    /// lp.run_forever()?;
    /// assert!(lp.time() >= deadline); // never early
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn call_at(&self, when: Instant, f: impl FnOnce() + Send + 'static) -> Result<RemoteTimer> {
        self.schedule(Deadline::At(when), Box::new(f), Location::caller())
    }

    fn schedule(
        &self,
        deadline: Deadline,
        f: Box<dyn FnOnce() + Send>,
        location: &'static Location<'static>,
    ) -> Result<RemoteTimer> {
        let timer = Arc::new(SharedTimer::new(f, location));
        let install = {
            let timer = timer.clone();
            move |inner: &LoopInner| {
                let when = match deadline {
                    Deadline::At(when) => when,
                    Deadline::After(delay) => {
                        let now = inner.sched.backend().now();
                        now.checked_add(delay).unwrap_or_else(|| far_future(now))
                    }
                };
                inner
                    .sched
                    .push_timer(when, Rc::new(SharedTimerEntry(timer)))
                    .map_err(|_| Error::closed())
            }
        };
        let id = self.shared.id;
        if std::thread::current().id() == self.shared.thread
            && let Some(inner) = context::local_loop(id)
        {
            install(&inner)?;
        } else {
            self.shared
                .post(Remote::Call(
                    Box::new(move || {
                        if let Some(inner) = context::local_loop(id) {
                            let _ = install(&inner);
                        }
                    }),
                    location,
                ))
                .map_err(|_| Error::closed())?;
        }
        Ok(RemoteTimer {
            timer,
            remote: self.clone(),
        })
    }

    /// Whether the loop was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Wake the loop without scheduling anything (a dispatch with nothing to
    /// do). For adapters and tests; never needed by correct code.
    pub fn wake(&self) {
        self.shared.wake();
    }
}

/// `futures`' executor trait: a `Send` future spawned from any thread runs
/// as a task on the loop (`SpawnExt::spawn`, and libraries generic over
/// `Spawn`). The output is dropped.
///
/// A spawn that returns `Ok` is queued on the loop; if the loop closes
/// before it runs the future is dropped unstarted, like every queued
/// callback (LC-11). After close, spawning fails with
/// [`SpawnError::shutdown`](futures::task::SpawnError::shutdown).
///
/// # Examples
///
/// ```
/// use futures::task::SpawnExt;
///
/// let lp = oneloop::Loop::new()?;
/// let remote = lp.remote();
/// let (tx, rx) = futures::channel::oneshot::channel();
/// std::thread::spawn(move || SpawnExt::spawn(&remote, async move { let _ = tx.send(7); }).unwrap());
/// assert_eq!(lp.run_until_complete(rx)?, Ok(7));
/// # Ok::<(), oneloop::Error>(())
/// ```
impl futures::task::Spawn for RemoteLoop {
    fn spawn_obj(
        &self,
        future: futures::task::FutureObj<'static, ()>,
    ) -> std::result::Result<(), futures::task::SpawnError> {
        let id = self.shared.id;
        self.call_soon_threadsafe(move || {
            if let Some(inner) = context::local_loop(id) {
                let _ = Loop::from_inner(inner).spawn(future);
            }
        })
        .map_err(|_| futures::task::SpawnError::shutdown())
    }

    fn status(&self) -> std::result::Result<(), futures::task::SpawnError> {
        if self.is_closed() {
            Err(futures::task::SpawnError::shutdown())
        } else {
            Ok(())
        }
    }
}

#[derive(Clone, Copy)]
enum Deadline {
    At(Instant),
    After(Duration),
}

/// A timer scheduled with [`RemoteLoop::call_later`] or
/// [`RemoteLoop::call_at`]: `Send + Sync`, cancellable from any thread.
///
/// Dropping the handle does **not** cancel the timer.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop::Loop::new()?;
/// let t = lp.remote().call_later(Duration::from_secs(60), || unreachable!())?;
/// std::thread::spawn(move || t.cancel()).join().unwrap();
/// lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))??;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Clone)]
pub struct RemoteTimer {
    timer: Arc<SharedTimer>,
    remote: RemoteLoop,
}

impl RemoteTimer {
    /// Cancel the timer if it has not fired yet, from any thread. A
    /// cancelled timer never fires and never keeps the loop waiting; its
    /// closure is dropped here, on the calling thread.
    pub fn cancel(&self) {
        if self.timer.cancel() != State::Scheduled {
            return;
        }
        // Account for the cancelled entry, so that the queue compacts
        // (memory stays proportional to the live timers).
        let id = self.remote.shared.id;
        let note = move || {
            if let Some(inner) = context::local_loop(id) {
                inner.sched.timer_cancelled();
            }
        };
        if std::thread::current().id() == self.remote.shared.thread {
            note();
        } else {
            // Closed: nothing left to account for.
            let _ = self
                .remote
                .shared
                .post(Remote::Call(Box::new(note), Location::caller()));
        }
    }

    /// Whether the timer was cancelled before it fired.
    pub fn cancelled(&self) -> bool {
        self.timer.state() == State::Cancelled
    }

    /// Whether the timer fired (its callback ran or is running).
    pub fn fired(&self) -> bool {
        self.timer.state() == State::Done
    }
}

impl fmt::Debug for RemoteTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTimer")
            .field("state", &self.timer.state())
            .field("loop", &self.remote.shared.id)
            .finish()
    }
}

/// The output of a task started with [`RemoteLoop::spawn`]; a `Send` future
/// that any executor on any thread may await (see the example there).
///
/// It gives the task's output, or the error that ended the task:
/// [`ErrorKind::Cancelled`] if it was cancelled or the loop closed before
/// it finished, [`ErrorKind::Panicked`] if it (or the builder given to
/// [`spawn_with`](RemoteLoop::spawn_with)) panicked. Dropping it does not
/// cancel the task.
#[derive(Debug)]
pub struct RemoteTask<T> {
    rx: oneshot::Receiver<Result<T>>,
}

impl<T> StdFuture for RemoteTask<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::new(
                ErrorKind::Cancelled,
                "the loop was closed before the task finished",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Loop {
    /// A `Send + Sync` handle for other threads: `call_soon_threadsafe`,
    /// `spawn` of `Send` futures, `stop`.
    pub fn remote(&self) -> RemoteLoop {
        RemoteLoop {
            shared: self.inner.sched.shared().clone(),
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
}
