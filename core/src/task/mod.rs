//! [`Task`]: runs any std future on a [`Loop`], one step per callback.
//!
//! Tasks are allocated and woken by `async-task`; each wake queues one step
//! on the loop's ready queue (or its inbox, when woken from another thread),
//! so task steps obey every callback guarantee: FIFO with other callbacks,
//! never nested (TK-04), first step queued rather than run (TK-02).
//!
//! Cancellation follows asyncio's model where oneloop can see it; the rules
//! are on [`Task`] (section *Cancellation*).

pub(crate) mod state;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use async_task::Runnable;

use crate::context::{self, TaskScope};
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::{Loop, LoopInner};
use crate::exception::{ExceptionContext, panic_message};
use crate::future::{CallbackId, LoopFuture};
use crate::scheduler::inbox::{Remote, Shared};
use crate::scheduler::{Ready, TaskMeta};
use state::{NEXT_TASK_ID, TaskRef, TaskState};

/// A future running on a loop; itself a future of the output (TK-03).
///
/// Awaiting a `Task<T>` gives `Ok(output)`, or `Err` with
/// [`ErrorKind::Cancelled`] or [`ErrorKind::Panicked`]. Dropping the handle
/// does not cancel the task (as in asyncio, and like a detached tokio task).
///
/// The output need not be `Clone`, so awaiting the `Task` *moves* it out:
/// afterwards [`result`](Task::result) and done-callbacks see the task done
/// but get [`ErrorKind::InvalidState`] for the value. To observe the output
/// from several places, await `task.as_future().clone()` instead, which
/// clones it (`T: Clone`).
///
/// # Cancellation
///
/// PEP 3156 cancels a task by throwing `CancelledError` into its coroutine
/// at the next suspension point; the coroutine may catch it. oneloop keeps
/// that model for what it can see, and drops the future for what it can't:
///
/// 1. [`Task::cancel`] requests cancellation and cancels the oneloop
///    [`LoopFuture`] the task is suspended on, if any (CN-02).
/// 2. The next oneloop await inside the task (a [`LoopFuture`], a [`Task`],
///    [`sleep`](crate::sleep)…) returns `Err(Cancelled)`: that delivers the
///    request (CN-01). The coroutine may handle the error and carry on or
///    return a value; the task then ends normally (CN-03).
/// 3. If the coroutine instead lets that `Cancelled` error escape (for
///    example with `?`), so that its output still holds it when it
///    completes, the task ends cancelled (CN-04). What counts is the
///    delivered error *value*, never its clones: a body that logs or stores
///    a clone and returns a value ends with that value. (A body that stores
///    the delivered value itself somewhere that outlives its step, rather
///    than a clone, is taken to have let it escape.)
/// 4. If the step after `cancel()` ends with the coroutine suspended on
///    something that is not a oneloop awaitable (a tokio or glib future,
///    say) and the request was not delivered, the future is dropped, which is
///    how Rust cancels, and the task ends cancelled. A task cancelled before
///    its first step never starts.
/// 5. A cancellation requested during the task's last step and not
///    delivered by an await before the body returned (a task that cancels
///    itself, then returns) ends the task cancelled, as in asyncio.
///
/// # Examples
///
/// ```
/// let lp = oneloop::Loop::new()?;
/// let task = lp.spawn(async { 6 * 7 })?;
/// assert!(!task.done()); // the first step is only queued
/// assert_eq!(lp.run_until_complete(task)??, 42);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub struct Task<T> {
    state: Rc<TaskState>,
    result: LoopFuture<T>,
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.state.id)
            .field("result", &self.result)
            .finish()
    }
}

impl<T: 'static> Task<T> {
    /// Request cancellation: see *Cancellation* above. Returns false if the
    /// task is already done (CN-01).
    ///
    /// # Examples
    ///
    /// A task that lets the cancellation escape with `?` ends cancelled:
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let task = lp.spawn(async {
    ///     oneloop::sleep(Duration::from_secs(3600)).await?;
    ///     Ok::<_, oneloop::Error>("slept")
    /// })?;
    /// lp.stop();
    /// lp.run_forever()?; // one iteration: the task starts and sleeps
    /// assert!(task.cancel());
    /// let err = lp.run_until_complete(task)?.unwrap_err();
    /// assert!(err.is_cancelled());
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    ///
    /// A task may instead handle the cancellation, clean up and return a
    /// value; it then ends normally:
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let task = lp.spawn(async {
    ///     match oneloop::sleep(Duration::from_secs(3600)).await {
    ///         Err(e) if e.is_cancelled() => "cleaned up",
    ///         _ => "slept",
    ///     }
    /// })?;
    /// lp.stop();
    /// lp.run_forever()?;
    /// task.cancel();
    /// assert_eq!(lp.run_until_complete(task)??, "cleaned up");
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.state.cancel()
    }

    /// Whether the task finished.
    pub fn done(&self) -> bool {
        self.result.done()
    }

    /// Whether the task ended cancelled.
    pub fn cancelled(&self) -> bool {
        self.result.cancelled()
    }

    /// The task's id.
    pub fn id(&self) -> u64 {
        self.state.id
    }

    /// A type-erased reference to the task.
    pub fn as_ref(&self) -> TaskRef {
        TaskRef(self.state.clone())
    }

    /// The future that receives the task's output; its `cancel()` cancels
    /// the task.
    pub fn as_future(&self) -> &LoopFuture<T> {
        &self.result
    }

    /// The error, `Ok(None)` after a result; see [`LoopFuture::exception`].
    ///
    /// # Errors
    /// As [`LoopFuture::exception`].
    pub fn exception(&self) -> Result<Option<Error>> {
        self.result.exception()
    }

    /// Schedule `f` once the task is done (TK-03).
    ///
    /// # Examples
    ///
    /// Stop the loop when a task ends, however it ends:
    ///
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// let task = lp.spawn(async { 7 })?;
    /// task.add_done_callback({ let lp = lp.clone(); move |_| lp.stop() });
    /// lp.run_forever()?;
    /// assert_eq!(task.result()?, 7);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn add_done_callback(&self, f: impl FnOnce(&LoopFuture<T>) + 'static) -> CallbackId {
        self.result.add_done_callback(f)
    }

    /// Remove a done-callback; see [`LoopFuture::remove_done_callback`].
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        self.result.remove_done_callback(id)
    }
}

impl<T: Clone + 'static> Task<T> {
    /// The output; see [`LoopFuture::result`].
    ///
    /// # Errors
    /// As [`LoopFuture::result`].
    pub fn result(&self) -> Result<T> {
        self.result.result()
    }
}

impl<T: 'static> StdFuture for Task<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.result.poll_take(cx)
    }
}

/// The future `async-task` runs: steps the user's future with the task
/// machinery around it.
struct Step<F: StdFuture> {
    fut: Option<Pin<Box<F>>>,
    state: Rc<TaskState>,
    result: LoopFuture<F::Output>,
    lp: Weak<LoopInner>,
}

impl<F: StdFuture> Step<F>
where
    F::Output: 'static,
{
    /// The task is over: drop the future and let go of the task's
    /// bookkeeping. Dropping the future runs user code (its locals'
    /// `Drop`); a panic there is caught and returned, so that the task
    /// still ends (see [`fail`](Step::fail)).
    fn finish(&mut self) -> Option<Box<dyn Any + Send>> {
        let fut = self.fut.take();
        let panicked = catch_unwind(AssertUnwindSafe(move || drop(fut))).err();
        self.state.done.set(true);
        self.state.awaiting.borrow_mut().take();
        self.state.abandon.borrow_mut().take();
        if let Some(h) = self.state.handle.borrow_mut().take() {
            h.detach();
        }
        if let Some(lp) = self.lp.upgrade() {
            lp.tasks.remove(self.state.id);
        }
        panicked
    }

    /// End the task `Panicked` and resume the panic, which the dispatch
    /// loop reports (or propagates); the error value must not be reported
    /// a second time.
    fn fail(&self, payload: Box<dyn Any + Send>) -> ! {
        let _ = self
            .result
            .set_exception(Error::new(ErrorKind::Panicked, panic_message(&*payload)));
        self.result.mark_retrieved();
        resume_unwind(payload);
    }

    /// End the task cancelled, unless dropping its future panicked.
    fn cancelled(&mut self) -> Poll<()> {
        if let Some(payload) = self.finish() {
            self.fail(payload);
        }
        self.result.cancel_now();
        Poll::Ready(())
    }
}

impl<F: StdFuture> StdFuture for Step<F>
where
    F::Output: 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(());
        };
        let state = this.state.clone();
        if state.waker.borrow().is_none() {
            *state.waker.borrow_mut() = Some(cx.waker().clone());
        }
        let requested_before = state.cancel_requested.get();
        if requested_before && !state.started.get() {
            return this.cancelled();
        }
        state.started.set(true);
        state.awaiting.borrow_mut().take();
        let guard = TaskScope::enter(&state);
        let outcome = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        drop(guard);
        match outcome {
            Err(payload) => {
                // A second panic, from dropping the future that panicked,
                // is dropped: the first one is the news.
                let _ = this.finish();
                this.fail(payload);
            }
            Ok(Poll::Ready(value)) => {
                let panicked = this.finish();
                // The body let a delivered cancellation escape (CN-04),
                // or a cancellation requested during its last step was
                // never delivered (asyncio's `_must_cancel` at the end):
                // the task ends cancelled.
                let escaped = state.delivered.load(std::sync::atomic::Ordering::Acquire) > 0
                    || state.cancel_requested.get();
                if panicked.is_some() || escaped {
                    let dropped = catch_unwind(AssertUnwindSafe(move || drop(value)));
                    if let Some(payload) = panicked.or(dropped.err()) {
                        this.fail(payload);
                    }
                    this.result.cancel_now();
                } else {
                    let _ = this.result.set_result(value);
                }
                Poll::Ready(())
            }
            Ok(Poll::Pending) => {
                if requested_before && state.cancel_requested.get() {
                    // Suspended on something that cannot deliver the
                    // cancellation: drop the future (module docs, point 4).
                    return this.cancelled();
                }
                Poll::Pending
            }
        }
    }
}

impl<F: StdFuture> Drop for Step<F> {
    /// A step still holding its future is dropped by `async-task` when the
    /// task was cancelled under it (the loop's close), under a guard that
    /// aborts the process on a panic: a panic in the future's `Drop` is
    /// caught here and reported instead.
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else {
            return;
        };
        let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(fut))) else {
            return;
        };
        let message = panic_message(&*payload);
        match self.lp.upgrade() {
            Some(inner) => Loop::from_inner(inner).call_exception_handler(
                ExceptionContext::new("task panicked while its future was dropped")
                    .with_panic(message.clone())
                    .with_error(Error::new(ErrorKind::Panicked, message))
                    .with_location(self.state.location),
            ),
            // The loop's last handle is going: no handler to call.
            None => tracing::error!(
                target: "oneloop",
                "task spawned at {} panicked while its future was dropped: {message}",
                self.state.location
            ),
        }
    }
}

/// Queue a task step: straight into the ready queue on the loop's thread,
/// through the inbox from any other.
fn schedule(shared: &Arc<Shared>, runnable: Runnable<TaskMeta>) {
    // Found among this thread's loops: this is the loop's thread (the
    // table is per thread), with no `thread::current()` to ask.
    if let Some(inner) = context::local_loop(shared.id) {
        // On a closed loop the step is dropped here, which drops the
        // future on its own thread.
        let _ = inner.sched.try_push_ready_with(|| Ready::Task(runnable));
        return;
    }
    if std::thread::current().id() == shared.thread {
        // The loop is being dropped (a task cancelled by its close):
        // dropping the runnable here drops the future, on the loop's
        // thread, as it must be.
        return;
    }
    if let Err(Remote::Task(r)) = shared.post(Remote::Task(runnable)) {
        // The loop is closed and this is another thread: a local task's
        // future must not be dropped here (`async-task` would panic). This
        // only happens to a wake that raced with `close`, which drops the
        // steps parked here on the loop thread once it has cancelled the
        // tasks. A wake that comes after that is leaked, not dropped.
        if let Err(r) = shared.park_orphan(r) {
            std::mem::forget(r);
        }
    }
}

pub(crate) fn spawn<F>(
    lp: &Loop,
    future: F,
    location: &'static Location<'static>,
    helper: bool,
) -> Task<F::Output>
where
    F: StdFuture + 'static,
    F::Output: 'static,
{
    let shared = lp.inner.sched.shared().clone();
    let state = Rc::new(TaskState {
        id: NEXT_TASK_ID.fetch_add(1, Ordering::Relaxed),
        loop_id: shared.id,
        location,
        helper,
        cancel_requested: Cell::new(false),
        awaiting: RefCell::new(None),
        delivered: Arc::default(),
        started: Cell::new(false),
        done: Cell::new(false),
        waker: RefCell::new(None),
        handle: RefCell::new(None),
        abandon: RefCell::new(None),
    });
    let result = LoopFuture::new(lp);
    let weak_state = Rc::downgrade(&state);
    result.set_canceller(Box::new(move || {
        weak_state.upgrade().is_some_and(|s| s.cancel())
    }));
    *state.abandon.borrow_mut() = Some(Box::new({
        let result = result.clone();
        move || {
            result.cancel_now();
        }
    }));
    let step = Step {
        fut: Some(Box::pin(future)),
        state: state.clone(),
        result: result.clone(),
        lp: lp.inner.weak.clone(),
    };
    let (runnable, handle) = async_task::Builder::new()
        .metadata(TaskMeta { location })
        .spawn_local(move |_| step, move |r| schedule(&shared, r));
    *state.handle.borrow_mut() = Some(handle);
    lp.inner.tasks.insert(&state);
    // TK-02: the first step is queued, not run.
    runnable.schedule();
    Task { state, result }
}

impl Loop {
    /// Run `future` as a task on this loop (PEP `create_task`). Its first
    /// step is queued with `call_soon`, never run inside the call (TK-02).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close (LC-11).
    ///
    /// # Examples
    ///
    /// Tasks run concurrently on the loop's one thread; awaiting a
    /// [`Task`] gives its output:
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let slow = lp.spawn(async {
    ///     oneloop::sleep(Duration::from_millis(2)).await?;
    ///     Ok::<_, oneloop::Error>("slow")
    /// })?;
    /// let fast = lp.spawn(async { "fast" })?;
    /// let both = lp.run_until_complete(async { (slow.await, fast.await) })?;
    /// assert_eq!((both.0??, both.1?), ("slow", "fast"));
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[doc(alias = "create_task")]
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Result<Task<F::Output>>
    where
        F: StdFuture + 'static,
        F::Output: 'static,
    {
        self.inner.sched.check_open()?;
        Ok(spawn(self, future, Location::caller(), false))
    }

    /// [`spawn`](Loop::spawn) one of the loop's own helper tasks: not
    /// listed by [`all_tasks`](Loop::all_tasks), so that cancelling every
    /// listed task (a shutdown routine) cannot cancel it. For a helper
    /// that completes a future or a channel the user holds, and that must
    /// therefore run to its end.
    #[track_caller]
    pub(crate) fn spawn_helper<F>(&self, future: F) -> Result<Task<F::Output>>
    where
        F: StdFuture + 'static,
        F::Output: 'static,
    {
        self.inner.sched.check_open()?;
        Ok(spawn(self, future, Location::caller(), true))
    }

    /// The task whose step is running, if any (TK-05).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// assert!(lp.current_task().is_none()); // not inside a task
    /// let task = lp.spawn(async {
    ///     let lp = oneloop::get_running_loop().unwrap();
    ///     lp.current_task().map(|t| t.id())
    /// })?;
    /// let id = task.id();
    /// assert_eq!(lp.run_until_complete(task)??, Some(id));
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn current_task(&self) -> Option<TaskRef> {
        let id = self.inner.sched.shared().id;
        context::current_task()
            .filter(|s| s.loop_id == id)
            .map(TaskRef)
    }

    /// The pending tasks of this loop (TK-05): those spawned with
    /// [`spawn`](Loop::spawn) and its kin, not the helper tasks the loop
    /// runs for its own services (bringing a `run_in_executor` result to
    /// this thread, say), which no caller of `all_tasks` may cancel.
    ///
    /// # Examples
    ///
    /// Cancel whatever is still pending before shutting down:
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let forever = lp.spawn(oneloop::sleep(Duration::from_secs(3600)))?;
    /// assert_eq!(lp.all_tasks().len(), 1);
    /// for t in lp.all_tasks() {
    ///     t.cancel();
    /// }
    /// assert!(lp.run_until_complete(forever)?.unwrap_err().is_cancelled());
    /// assert!(lp.all_tasks().is_empty());
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn all_tasks(&self) -> Vec<TaskRef> {
        self.inner.tasks.all()
    }
}

/// `futures`' executor trait: libraries generic over a local spawner
/// (`LocalSpawnExt::spawn_local`) run their tasks on this loop. A spawned
/// future is a detached task (its output is dropped; a panic is reported
/// to the exception handler like any task's).
///
/// # Examples
///
/// ```
/// use futures::task::LocalSpawnExt;
///
/// let lp = oneloop::Loop::new()?;
/// let (tx, rx) = futures::channel::oneshot::channel();
/// lp.spawn_local(async move { let _ = tx.send(7); }).unwrap();
/// assert_eq!(lp.run_until_complete(rx)?, Ok(7));
/// lp.close()?;
/// assert!(lp.spawn_local(async {}).unwrap_err().is_shutdown());
/// # Ok::<(), oneloop::Error>(())
/// ```
impl futures::task::LocalSpawn for Loop {
    fn spawn_local_obj(
        &self,
        future: futures::task::LocalFutureObj<'static, ()>,
    ) -> std::result::Result<(), futures::task::SpawnError> {
        self.spawn(future)
            .map(drop)
            .map_err(|_| futures::task::SpawnError::shutdown())
    }

    fn status_local(&self) -> std::result::Result<(), futures::task::SpawnError> {
        self.check_open()
            .map_err(|_| futures::task::SpawnError::shutdown())
    }
}
