//! [`Task`]: runs any std future on a [`Loop`], one step per callback.
//!
//! Tasks are allocated and woken by `async-task`; each wake queues one step
//! on the loop's ready queue (or its inbox, when woken from another thread),
//! so task steps obey every callback guarantee: FIFO with other callbacks,
//! never nested (TK-04), first step queued rather than run (TK-02).
//!
//! Cancellation follows asyncio's model where oneloop can see it; the rules
//! are on [`Task`] (section *Cancellation*).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future as StdFuture;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use async_task::Runnable;

use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;
use crate::exception::panic_message;
use crate::future::{CallbackId, Future, Slot};
use crate::policy;
use crate::scheduler::Ready;
use crate::scheduler::inbox::{Remote, Shared};

/// What `async-task` keeps beside each task: for debug output.
#[derive(Debug)]
pub(crate) struct TaskMeta {
    /// Where the task was spawned.
    pub(crate) location: &'static Location<'static>,
}

static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The task whose step is running on this thread.
    static CURRENT: RefCell<Option<Rc<TaskState>>> = const { RefCell::new(None) };
}

pub(crate) fn current_state() -> Option<Rc<TaskState>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// A `Cancelled` error, tied to the current task's cancellation when there
/// is one (see the module docs, point 3).
pub(crate) fn cancelled_error(task: Option<&TaskState>) -> Error {
    let mut e = Error::cancelled();
    if let Some(task) = task {
        e.token = Some(
            task.token
                .borrow_mut()
                .get_or_insert_with(|| Arc::new(()))
                .clone(),
        );
    }
    e
}

/// The non-generic state of a task.
pub(crate) struct TaskState {
    id: u64,
    /// Id of the loop, to answer `current_task` for the right loop only.
    loop_id: u64,
    location: &'static Location<'static>,
    /// `cancel()` was called and no oneloop await has delivered it yet.
    cancel_requested: Cell<bool>,
    /// Cancels the oneloop future the task is suspended on.
    awaiting: RefCell<Option<Box<dyn Fn() -> bool>>>,
    /// Shared by every `Cancelled` error delivered to this task.
    token: RefCell<Option<Arc<()>>>,
    /// The first step ran.
    started: Cell<bool>,
    /// Finished (result, error, cancelled, or abandoned at close).
    done: Cell<bool>,
    /// The task's own waker, to queue a step on `cancel()`.
    waker: RefCell<Option<Waker>>,
    /// The `async-task` handle, kept so that `close()` can cancel the task
    /// on the loop thread; taken when the task finishes.
    handle: RefCell<Option<async_task::Task<(), TaskMeta>>>,
    /// Cancels the result future when the loop closes under the task.
    abandon: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl TaskState {
    pub(crate) fn take_cancel_request(&self) -> bool {
        self.cancel_requested.replace(false)
    }

    pub(crate) fn set_awaiting(&self, cancel: Box<dyn Fn() -> bool>) {
        *self.awaiting.borrow_mut() = Some(cancel);
    }

    fn cancel(&self) -> bool {
        if self.done.get() {
            return false;
        }
        self.cancel_requested.set(true);
        let awaiting = self.awaiting.borrow_mut().take();
        match awaiting {
            // Completing the awaited future wakes the task.
            Some(cancel_awaited) => {
                cancel_awaited();
            }
            None => {
                let waker = self.waker.borrow().clone();
                if let Some(w) = waker {
                    w.wake();
                }
            }
        }
        true
    }

    /// The loop closed under the task: cancel it where it stands.
    pub(crate) fn abandon(&self) {
        self.done.set(true);
        let handle = self.handle.borrow_mut().take();
        // Dropping the handle cancels the task; `async-task` reschedules it
        // once so the future is dropped by a runnable, on this thread.
        drop(handle);
        let abandon = self.abandon.borrow_mut().take();
        if let Some(f) = abandon {
            f();
        }
    }
}

/// The pending tasks of a loop.
#[derive(Default)]
pub(crate) struct TaskRegistry {
    tasks: RefCell<HashMap<u64, Weak<TaskState>>>,
}

impl TaskRegistry {
    fn insert(&self, t: &Rc<TaskState>) {
        self.tasks.borrow_mut().insert(t.id, Rc::downgrade(t));
    }
    fn remove(&self, id: u64) {
        self.tasks.borrow_mut().remove(&id);
    }
    pub(crate) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }
    pub(crate) fn current(&self, loop_id: u64) -> Option<TaskRef> {
        current_state()
            .filter(|s| s.loop_id == loop_id)
            .map(TaskRef)
    }
    pub(crate) fn all(&self) -> Vec<TaskRef> {
        let mut v: Vec<TaskRef> = self
            .tasks
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .map(TaskRef)
            .collect();
        v.sort_by_key(|t| t.0.id);
        v
    }
    pub(crate) fn take_all(&self) -> Vec<Rc<TaskState>> {
        std::mem::take(&mut *self.tasks.borrow_mut())
            .into_values()
            .filter_map(|w| w.upgrade())
            .collect()
    }
}

/// A type-erased reference to a task, from [`Loop::current_task`] and
/// [`Loop::all_tasks`].
#[derive(Clone)]
pub struct TaskRef(Rc<TaskState>);

impl TaskRef {
    /// The task's id, unique in the process.
    pub fn id(&self) -> u64 {
        self.0.id
    }
    /// Where the task was spawned.
    pub fn location(&self) -> &'static Location<'static> {
        self.0.location
    }
    /// Whether the task finished.
    pub fn done(&self) -> bool {
        self.0.done.get()
    }
    /// Request cancellation (see [`Task::cancel`]).
    pub fn cancel(&self) -> bool {
        self.0.cancel()
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRef")
            .field("id", &self.0.id)
            .field("location", &self.0.location)
            .finish()
    }
}

impl PartialEq for TaskRef {
    fn eq(&self, other: &TaskRef) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

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
///    [`Future`] the task is suspended on, if any (CN-02).
/// 2. The next oneloop await inside the task (a [`Future`], a [`Task`],
///    [`sleep`](crate::sleep)…) returns `Err(Cancelled)`: that delivers the
///    request (CN-01). The coroutine may handle the error and carry on or
///    return a value; the task then ends normally (CN-03).
/// 3. If the coroutine instead lets that `Cancelled` error escape (for
///    example with `?`), so that its output still holds it when it
///    completes, the task ends cancelled (CN-04).
/// 4. If the step after `cancel()` ends with the coroutine suspended on
///    something that is not a oneloop awaitable (a tokio or glib future,
///    say) and the request was not delivered, the future is dropped, which is
///    how Rust cancels, and the task ends cancelled. A task cancelled before
///    its first step never starts.
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
    result: Future<T>,
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
    pub fn as_future(&self) -> &Future<T> {
        &self.result
    }

    /// The error, `Ok(None)` after a result; see [`Future::exception`].
    ///
    /// # Errors
    /// As [`Future::exception`].
    pub fn exception(&self) -> Result<Option<Error>> {
        self.result.exception()
    }

    /// Schedule `f` once the task is done (TK-03).
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + 'static) -> CallbackId {
        self.result.add_done_callback(f)
    }

    /// Remove a done-callback; see [`Future::remove_done_callback`].
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        self.result.remove_done_callback(id)
    }
}

impl<T: Clone + 'static> Task<T> {
    /// The output; see [`Future::result`].
    ///
    /// # Errors
    /// As [`Future::result`].
    pub fn result(&self) -> Result<T> {
        self.result.result()
    }
}

impl<T: 'static> StdFuture for Task<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.result
            .poll_slot(cx, |slot| match std::mem::replace(slot, Slot::Taken) {
                Slot::Done(r) => r,
                other => {
                    *slot = other;
                    Err(Error::new(
                        ErrorKind::InvalidState,
                        "the task's output was already taken",
                    ))
                }
            })
    }
}

/// The future `async-task` runs: steps the user's future with the task
/// machinery around it.
struct Step<F: StdFuture> {
    fut: Option<Pin<Box<F>>>,
    state: Rc<TaskState>,
    result: Future<F::Output>,
    lp: Weak<crate::event_loop::LoopInner>,
}

/// Makes a task current for the duration of one step.
struct CurrentGuard(Option<Rc<TaskState>>);

impl CurrentGuard {
    fn enter(state: &Rc<TaskState>) -> CurrentGuard {
        CurrentGuard(CURRENT.with(|c| c.borrow_mut().replace(state.clone())))
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

impl<F: StdFuture> Step<F>
where
    F::Output: 'static,
{
    fn finish(&mut self) {
        self.fut = None;
        self.state.done.set(true);
        self.state.awaiting.borrow_mut().take();
        self.state.abandon.borrow_mut().take();
        if let Some(h) = self.state.handle.borrow_mut().take() {
            h.detach();
        }
        if let Some(lp) = self.lp.upgrade() {
            lp.tasks.remove(self.state.id);
        }
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
            this.finish();
            this.result.cancel_now();
            return Poll::Ready(());
        }
        state.started.set(true);
        state.awaiting.borrow_mut().take();
        let guard = CurrentGuard::enter(&state);
        let outcome = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        drop(guard);
        match outcome {
            Err(payload) => {
                this.finish();
                let _ = this
                    .result
                    .set_exception(Error::new(ErrorKind::Panicked, panic_message(&*payload)));
                // The panic itself is reported (or propagated) by the
                // dispatch loop; the error value must not be reported twice.
                this.result.mark_retrieved();
                resume_unwind(payload);
            }
            Ok(Poll::Ready(value)) => {
                this.finish();
                let escaped = state
                    .token
                    .borrow()
                    .as_ref()
                    .is_some_and(|t| Arc::strong_count(t) > 1);
                if escaped {
                    drop(value);
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
                    this.finish();
                    this.result.cancel_now();
                    return Poll::Ready(());
                }
                Poll::Pending
            }
        }
    }
}

/// Queue a task step: straight into the ready queue on the loop's thread,
/// through the inbox from any other.
fn schedule(shared: &Arc<Shared>, runnable: Runnable<TaskMeta>) {
    if std::thread::current().id() == shared.thread
        && let Some(inner) = policy::local_loop(shared.id)
    {
        if inner.check_open().is_ok() {
            inner.push_ready(Ready::Task(runnable));
        }
        return;
    }
    if let Err(Remote::Task(r)) = shared.post(Remote::Task(runnable)) {
        // The loop is closed and this is another thread: a local task's
        // future must not be dropped here (`async-task` would panic). Tasks
        // are cancelled on the loop thread before the inbox closes, so this
        // only happens to a wake that raced with `close`.
        std::mem::forget(r);
    }
}

pub(crate) fn spawn<F>(
    lp: &Loop,
    future: F,
    location: &'static Location<'static>,
) -> Task<F::Output>
where
    F: StdFuture + 'static,
    F::Output: 'static,
{
    let state = Rc::new(TaskState {
        id: NEXT_TASK_ID.fetch_add(1, Ordering::Relaxed),
        loop_id: lp.inner.shared.id,
        location,
        cancel_requested: Cell::new(false),
        awaiting: RefCell::new(None),
        token: RefCell::new(None),
        started: Cell::new(false),
        done: Cell::new(false),
        waker: RefCell::new(None),
        handle: RefCell::new(None),
        abandon: RefCell::new(None),
    });
    let result = Future::new(lp);
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
    let shared = lp.inner.shared.clone();
    let (runnable, handle) = async_task::Builder::new()
        .metadata(TaskMeta { location })
        .spawn_local(move |_| step, move |r| schedule(&shared, r));
    *state.handle.borrow_mut() = Some(handle);
    lp.inner.tasks.insert(&state);
    // TK-02: the first step is queued, not run.
    runnable.schedule();
    Task { state, result }
}
