//! The non-generic state of a task, the registry of a loop's pending tasks,
//! and [`TaskRef`]. Below the loop: nothing here holds a loop.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::task::Waker;

use crate::error::{Delivered, Error};
use crate::scheduler::TaskMeta;

pub(crate) static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

/// A `Cancelled` error for an await of `task` (when there is one): the
/// delivered cancellation itself, counted in the task's `delivered` while
/// it is alive (see [`Task`](crate::Task), *Cancellation*).
pub(crate) fn cancelled_error(task: Option<&TaskState>) -> Error {
    let mut e = Error::cancelled();
    if let Some(task) = task {
        e.set_delivered(Delivered::new(&task.delivered));
    }
    e
}

/// The non-generic state of a task.
pub(crate) struct TaskState {
    pub(crate) id: u64,
    /// Id of the loop, to answer `current_task` for the right loop only.
    pub(crate) loop_id: u64,
    pub(crate) location: &'static Location<'static>,
    /// One of the loop's own helper tasks (the one that brings an executor
    /// job's result to the loop thread, say): not listed by `all_tasks`, so
    /// that a shutdown that cancels every task cannot cancel it and lose
    /// the result of a future the user holds. asyncio runs these as
    /// callbacks, not tasks.
    pub(crate) helper: bool,
    /// `cancel()` was called and no oneloop await has delivered it yet.
    pub(crate) cancel_requested: Cell<bool>,
    /// Cancels the oneloop future the task is suspended on.
    pub(crate) awaiting: RefCell<Option<Box<dyn Fn() -> bool>>>,
    /// How many `Cancelled` errors delivered to this task are alive (not
    /// their clones): non-zero when the body completes means it let one
    /// escape.
    pub(crate) delivered: Arc<AtomicUsize>,
    /// The first step ran.
    pub(crate) started: Cell<bool>,
    /// Finished (result, error, cancelled, or abandoned at close).
    pub(crate) done: Cell<bool>,
    /// The task's own waker, to queue a step on `cancel()`.
    pub(crate) waker: RefCell<Option<Waker>>,
    /// The `async-task` handle, kept so that `close()` can cancel the task
    /// on the loop thread; taken when the task finishes.
    pub(crate) handle: RefCell<Option<async_task::Task<(), TaskMeta>>>,
    /// Cancels the result future when the loop closes under the task.
    pub(crate) abandon: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl TaskState {
    pub(crate) fn take_cancel_request(&self) -> bool {
        self.cancel_requested.replace(false)
    }

    pub(crate) fn set_awaiting(&self, cancel: Box<dyn Fn() -> bool>) {
        *self.awaiting.borrow_mut() = Some(cancel);
    }

    pub(crate) fn cancel(&self) -> bool {
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
        // Unless a step is already queued: one parked by a wake from
        // another thread that found the inbox closed, which `close` drops
        // after this (`Shared::park_orphan`).
        drop(handle);
        let abandon = self.abandon.borrow_mut().take();
        if let Some(f) = abandon {
            f();
        }
    }
}

/// The pending tasks of a loop (its helper tasks too: `close` must cancel
/// them on the loop thread like any other).
#[derive(Default)]
pub(crate) struct TaskRegistry {
    tasks: RefCell<HashMap<u64, Weak<TaskState>>>,
}

impl TaskRegistry {
    pub(crate) fn insert(&self, t: &Rc<TaskState>) {
        self.tasks.borrow_mut().insert(t.id, Rc::downgrade(t));
    }
    pub(crate) fn remove(&self, id: u64) {
        self.tasks.borrow_mut().remove(&id);
    }
    pub(crate) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }
    pub(crate) fn all(&self) -> Vec<TaskRef> {
        let mut v: Vec<TaskRef> = self
            .tasks
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .filter(|t| !t.helper)
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

/// A type-erased reference to a task, from [`Loop::current_task`](crate::Loop::current_task) and
/// [`Loop::all_tasks`](crate::Loop::all_tasks).
#[derive(Clone)]
pub struct TaskRef(pub(crate) Rc<TaskState>);

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
    /// Request cancellation (see [`Task::cancel`](crate::Task::cancel)).
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
