//! [`Pending`]: the asyncio handles queued inside oneloop, where Python's
//! garbage collector can see them.
//!
//! A queued `Handle` or `TimerHandle` holds its loop (`handle._loop`). Held
//! only inside a oneloop closure, that reference is invisible to the
//! collector, so an unclosed loop with a callback, a timer or a task step
//! queued could never be collected (nor closed by asyncio's `__del__`): it
//! leaked. So the closure holds a [`Queued`] ticket and the handle waits
//! here, in a map the Python loop object owns alone and shows to the
//! collector (`RustLoop::__traverse__`).
//!
//! The handles of `call_soon` wait in [`Soon`] instead, a FIFO beside
//! oneloop's ready queue, which lets the closure queued in oneloop carry
//! nothing (see there).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;

use crate::errors::Escapes;
use crate::handle::Handle;

/// A queued handle: one of ours (made by `call_soon`), or one of asyncio's
/// (a `TimerHandle`, a debug-mode `Handle`, a signal's handle).
#[derive(Debug)]
pub(crate) enum Parked {
    Ours(Py<Handle>),
    Asyncio(Py<PyAny>),
}

impl Parked {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Parked::Asyncio(h) => visit.call(h),
            // Not a collected type: its references are the loop's own
            // while only the loop holds it (see `handle`), and otherwise
            // count as held from outside.
            Parked::Ours(h) if only_ours(h) => h.get().traverse_contents(visit),
            Parked::Ours(_) => Ok(()),
        }
    }

    /// A handle the closing loop drops unrun lets go of its callback.
    pub(crate) fn dropped_unrun(self) {
        if let Parked::Ours(h) = &self {
            // The GIL, if it is not held already (a Rust program dropping
            // its loop); none at interpreter shutdown, when the handle's
            // references simply go with it.
            let released = Python::try_attach(|py| h.get().release(py));
            drop(released);
        }
        drop(self);
    }
}

/// Whether the loop's reference is the only one to `h`.
fn only_ours(h: &Py<Handle>) -> bool {
    // SAFETY: `h` is a live object we hold a reference to, so its header
    // (and refcount) is valid to read; traversals run with the GIL held,
    // so the count does not change under us.
    unsafe { pyo3::ffi::Py_REFCNT(h.as_ptr()) == 1 }
}

/// The handles queued in one loop, by ticket: a slab whose freed slots are
/// reused (one `Vec` index per park and per take, no hashing: this is on
/// the path of every `call_soon`).
///
/// A freed slot's ticket may be given to a new handle while an old
/// [`Queued`] with that ticket still exists only if the old one was
/// taken or dropped first, and both free the slot exactly once: a
/// `Queued` is consumed by [`Queued::take`] or its drop, never both
/// (`take` disarms it).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    slots: RefCell<Vec<Option<Parked>>>,
    free: RefCell<Vec<usize>>,
}

impl Pending {
    /// Park `handle` until its callback runs (or is dropped unrun).
    pub(crate) fn park(self: &Rc<Self>, handle: Parked) -> Queued {
        let mut slots = self.slots.borrow_mut();
        let key = match self.free.borrow_mut().pop() {
            Some(key) => {
                slots[key] = Some(handle);
                key
            }
            None => {
                slots.push(Some(handle));
                slots.len() - 1
            }
        };
        Queued {
            pending: Rc::downgrade(self),
            key: Cell::new(Some(key)),
        }
    }

    fn remove(&self, key: usize) -> Option<Parked> {
        let mut slots = self.slots.try_borrow_mut().ok()?;
        let handle = slots.get_mut(key)?.take();
        if handle.is_some() {
            self.free.borrow_mut().push(key);
        }
        handle
    }

    /// Show every parked handle to the collector.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(slots) = self.slots.try_borrow() {
            for h in slots.iter().flatten() {
                h.traverse(visit)?;
            }
        }
        Ok(())
    }

    /// Let go of every parked handle (the collector breaking a cycle); the
    /// callbacks then find nothing to run.
    pub(crate) fn clear(&self) {
        let taken = self.slots.try_borrow_mut().map(|mut s| {
            let all: Vec<_> = s.iter_mut().filter_map(Option::take).collect();
            all
        });
        // Slots stay (empty) and are not put on the free list: the
        // outstanding tickets still point at them and find nothing.
        // Dropped after the borrow: a finalizer may queue or cancel.
        drop(taken);
    }
}

/// A oneloop callback's claim on its parked handle.
#[derive(Debug)]
pub(crate) struct Queued {
    pending: Weak<Pending>,
    /// `None` once taken.
    key: Cell<Option<usize>>,
}

impl Queued {
    /// The handle, for running it: once.
    pub(crate) fn take(&self) -> Option<Parked> {
        let pending = self.pending.upgrade()?;
        let key = self.key.take()?;
        pending.remove(key)
    }
}

impl Drop for Queued {
    /// Unrun (cancelled timer, closed loop): the handle goes too.
    fn drop(&mut self) {
        let (Some(pending), Some(key)) = (self.pending.upgrade(), self.key.get()) else {
            return;
        };
        if let Some(handle) = pending.remove(key) {
            handle.dropped_unrun();
        }
    }
}

/// The handles queued by `call_soon` on a loop this module owns, in the
/// order of their closures in oneloop's ready queue.
///
/// A oneloop callback that captures anything is a boxed closure: a
/// `malloc` and a `free` per callback, the dearest part of queueing one
/// when a batch queues more than the allocator's per-thread cache holds
/// (the `call_soon` benchmark queues 1 000). So the closure queued for a
/// handle captures nothing (no allocation) and takes the front handle of
/// this queue when it runs. That is the handle it was queued for, because
/// oneloop runs `call_soon` callbacks in the order they were queued, each
/// exactly once (CB-01), and drops queued ones unrun only when the loop
/// closes, and then all of them; the closure finds this queue through the
/// loop's run context (`gil::HoldGil`), entered around every batch.
///
/// Only for a oneloop `Loop` that one Python loop owns: a Rust program's
/// own `Loop` (`embed`) may run other Python loops' callbacks or outlive
/// this one, so its handles wait in [`Pending`] with a ticket each.
#[derive(Debug)]
pub(crate) struct Soon {
    queue: RefCell<VecDeque<Parked>>,
    /// Closures still queued in oneloop whose handles were let go of
    /// ([`Soon::clear`]): they take nothing.
    orphans: Cell<usize>,
    escapes: Escapes,
}

impl Soon {
    pub(crate) fn new(escapes: Escapes) -> Soon {
        Soon {
            queue: RefCell::default(),
            orphans: Cell::new(0),
            escapes,
        }
    }

    /// What a handle's `BaseException` does on this loop.
    pub(crate) fn escapes(&self) -> Escapes {
        self.escapes
    }

    /// Add the handle of a closure just queued in oneloop.
    pub(crate) fn push(&self, handle: Parked) {
        self.queue.borrow_mut().push_back(handle);
    }

    /// The handle of the closure that runs now.
    pub(crate) fn pop(&self) -> Option<Parked> {
        let orphans = self.orphans.get();
        if orphans > 0 {
            self.orphans.set(orphans - 1);
            return None;
        }
        self.queue.try_borrow_mut().ok()?.pop_front()
    }

    /// Show every queued handle to the collector.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(queue) = self.queue.try_borrow() {
            for h in queue.iter() {
                h.traverse(visit)?;
            }
        }
        Ok(())
    }

    /// Let go of every queued handle (the collector breaking a cycle); the
    /// closures still queued in oneloop then take nothing.
    pub(crate) fn clear(&self) {
        let taken = self
            .queue
            .try_borrow_mut()
            .map(|mut q| std::mem::take(&mut *q));
        if let Ok(taken) = taken {
            self.orphans.set(self.orphans.get() + taken.len());
            // Dropped after the borrow: a finalizer may queue or cancel.
            for h in taken {
                h.dropped_unrun();
            }
        }
    }
}

impl Drop for Soon {
    /// The loop is gone (closed, or collected): handles never run let go of
    /// their callbacks.
    fn drop(&mut self) {
        for h in std::mem::take(self.queue.get_mut()) {
            h.dropped_unrun();
        }
    }
}
