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

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;

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
    fn dropped_unrun(self) {
        if let Parked::Ours(h) = &self {
            let released = h.get().release();
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
