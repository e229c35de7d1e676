//! The ready queue's items: what runs, where it was scheduled, and how a
//! panic in it is reported.

use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::rc::Rc;

use super::callback::Callback;
use super::fds::FdCallback;
use super::prefetch;

/// What `async-task` keeps beside each task: for debug output.
#[derive(Debug)]
pub(crate) struct TaskMeta {
    /// Where the task was spawned.
    pub(crate) location: &'static Location<'static>,
}

/// An item of the ready queue.
pub(crate) enum Ready {
    /// `call_soon` or a timer that fell due, and where it was scheduled
    /// (kept here too, so that reading it costs no virtual call).
    Call(Rc<dyn Callback>, &'static Location<'static>),
    /// `call_soon_detached`, or `call_soon_threadsafe` drained from the inbox.
    Boxed(Box<dyn FnOnce()>, &'static Location<'static>),
    /// A task step.
    Task(async_task::Runnable<TaskMeta>),
    /// An fd reader or writer whose fd was reported ready.
    Fd(Rc<FdCallback>),
}

/// A callback that panicked: what it was, where it was scheduled, why.
pub(crate) struct Failed {
    pub(crate) what: &'static str,
    pub(crate) location: &'static Location<'static>,
    pub(crate) payload: Box<dyn std::any::Any + Send>,
}

impl Ready {
    /// Ask for the memory this item will touch first when it runs.
    pub(super) fn prefetch(&self) {
        match self {
            Ready::Call(cb, _) => prefetch::prefetch(Rc::as_ptr(cb)),
            Ready::Fd(f) => prefetch::prefetch(Rc::as_ptr(f)),
            Ready::Boxed(f, _) => prefetch::prefetch(&raw const **f),
            Ready::Task(_) => {}
        }
    }

    pub(super) fn location(&self) -> &'static Location<'static> {
        match self {
            Ready::Call(_, location) => location,
            Ready::Boxed(_, location) => location,
            Ready::Task(r) => r.metadata().location,
            Ready::Fd(f) => f.location,
        }
    }

    pub(super) fn describe(&self) -> &'static str {
        match self {
            Ready::Call(..) | Ready::Boxed(..) => "callback",
            Ready::Task(_) => "task step",
            Ready::Fd(_) => "fd callback",
        }
    }

    /// Run the item; a panic unwinds out of here, to the batch's guard.
    /// Always inlined: in the batch loop the call itself (a stack frame,
    /// the item spilled to memory, a second dispatch on its variant) was
    /// ~15 instructions of a `call_soon`'s ~200 outside the allocator.
    #[inline(always)]
    pub(super) fn run_unguarded(self) {
        match self {
            Ready::Call(cb, _) => cb.run(),
            Ready::Boxed(f, _) => f(),
            Ready::Task(r) => {
                r.run();
            }
            Ready::Fd(f) => f.run(),
        }
    }

    /// Run the item, catching a panic.
    pub(super) fn run(self) -> Result<(), Failed> {
        let (what, location) = (self.describe(), self.location());
        catch_unwind(AssertUnwindSafe(|| self.run_unguarded())).map_err(|payload| Failed {
            what,
            location,
            payload,
        })
    }
}
