//! The thread-locals of loops and tasks, in one place: which loop runs on
//! this thread, which loop `set_event_loop` chose, the open loops made here
//! and the task whose step is running. (Others live beside their one user:
//! the wakes a thread holds back with [`crate::defer_wakes`] in `defer`,
//! below the scheduler that uses them; the run contexts, the signal owner,
//! the transports' read buffers.)
//!
//! They hold loops weakly (only `set_event_loop`'s choice, a user's own
//! handle, is strong), so a thread-local never keeps a dropped loop alive.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use crate::event_loop::{Loop, LoopInner};
use crate::task::state::TaskState;

thread_local! {
    /// The loop running on this thread.
    static RUNNING: RefCell<Option<Weak<LoopInner>>> = const { RefCell::new(None) };
    /// The loop set with `set_event_loop`.
    static CURRENT_LOOP: RefCell<Option<Loop>> = const { RefCell::new(None) };
    /// Every open loop made on this thread, by id: lets a `RemoteLoop` or a
    /// waker used on its own loop's thread push straight into the ready
    /// queue (TH-03).
    static LOCAL: RefCell<Vec<(u64, Weak<LoopInner>)>> = const { RefCell::new(Vec::new()) };
    /// The task whose step is running on this thread. A `Cell`: every task
    /// step sets and restores it, and a `RefCell`'s borrow checks were a
    /// tenth of that.
    static CURRENT_TASK: Cell<Option<Rc<TaskState>>> = const { Cell::new(None) };
}

/// In a child just forked (see `fork.rs`): no loop runs here. The old
/// values are leaked, not dropped: dropping may free memory, which a fork
/// child may not do before `exec`.
pub(crate) fn forget_running_after_fork() {
    let _ = RUNNING.try_with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            std::mem::forget(r.take());
        }
    });
    let _ = CURRENT_TASK.try_with(|c| std::mem::forget(c.take()));
}

// `RUNNING` is read with `try_with` throughout: a loop may be closed from
// another thread-local's destructor (the `set_event_loop` slot, a user's
// own) after this one is gone, and no loop runs on a thread that is ending.

pub(crate) fn running_loop_inner() -> Option<Rc<LoopInner>> {
    RUNNING
        .try_with(|r| r.borrow().as_ref().and_then(Weak::upgrade))
        .ok()
        .flatten()
}

/// Whether `weak` is the running loop.
pub(crate) fn running_is_weak(weak: &Weak<LoopInner>) -> bool {
    RUNNING
        .try_with(|r| r.borrow().as_ref().is_some_and(|w| Weak::ptr_eq(w, weak)))
        .unwrap_or(false)
}

pub(crate) fn set_running(inner: Option<&LoopInner>) {
    let _ = RUNNING.try_with(|r| *r.borrow_mut() = inner.map(|i| i.weak.clone()));
}

pub(crate) fn running_is(inner: &LoopInner) -> bool {
    running_is_weak(&inner.weak)
}

/// Marks `inner` as the running loop for a dispatch, restoring the previous
/// value afterwards (a dispatch driven by a host while no run is active).
pub(crate) struct RunningScope {
    previous: Option<Option<Weak<LoopInner>>>,
}

impl RunningScope {
    pub(crate) fn enter(inner: &LoopInner) -> RunningScope {
        if running_is(inner) {
            return RunningScope { previous: None };
        }
        let previous = RUNNING
            .try_with(|r| r.borrow_mut().replace(inner.weak.clone()))
            .ok();
        RunningScope { previous }
    }
}

impl Drop for RunningScope {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = RUNNING.try_with(|r| *r.borrow_mut() = previous);
        }
    }
}

pub(crate) fn current_loop() -> Option<Loop> {
    CURRENT_LOOP.with(|c| c.borrow().clone())
}

pub(crate) fn set_current_loop(lp: Option<Loop>) {
    let old = CURRENT_LOOP.with(|c| c.replace(lp));
    // Dropped outside the borrow: dropping the last handle closes a loop,
    // which runs user code.
    drop(old);
}

pub(crate) fn register_local(id: u64, inner: &Weak<LoopInner>) {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        l.retain(|(_, w)| w.strong_count() > 0);
        l.push((id, inner.clone()));
    });
}

pub(crate) fn unregister_local(id: u64) {
    // `try_with`: a loop may be closed from a thread-local destructor.
    let _ = LOCAL.try_with(|l| l.borrow_mut().retain(|(i, _)| *i != id));
}

pub(crate) fn local_loop(id: u64) -> Option<Rc<LoopInner>> {
    LOCAL
        .try_with(|l| {
            l.borrow()
                .iter()
                .find(|(i, _)| *i == id)
                .and_then(|(_, w)| w.upgrade())
        })
        .ok()
        .flatten()
}

/// The task whose step is running on this thread.
pub(crate) fn current_task() -> Option<Rc<TaskState>> {
    CURRENT_TASK
        .try_with(|c| {
            let current = c.take();
            let copy = current.clone();
            c.set(current);
            copy
        })
        .ok()
        .flatten()
}

/// Makes a task current for the duration of one step.
pub(crate) struct TaskScope(Option<Rc<TaskState>>);

impl TaskScope {
    pub(crate) fn enter(state: &Rc<TaskState>) -> TaskScope {
        TaskScope(CURRENT_TASK.with(|c| c.replace(Some(state.clone()))))
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        let prev = self.0.take();
        // The step's own handle is dropped out here, not inside the access.
        let _step = CURRENT_TASK.with(|c| c.replace(prev));
    }
}
