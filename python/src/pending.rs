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
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;

/// The handles queued in one loop, by ticket number.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    next: Cell<u64>,
    map: RefCell<HashMap<u64, Py<PyAny>>>,
}

impl Pending {
    /// Park `handle` until its callback runs (or is dropped unrun).
    pub(crate) fn park(self: &Rc<Self>, handle: Py<PyAny>) -> Queued {
        let key = self.next.get();
        self.next.set(key + 1);
        self.map.borrow_mut().insert(key, handle);
        Queued {
            pending: Rc::downgrade(self),
            key,
        }
    }

    /// Show every parked handle to the collector.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(map) = self.map.try_borrow() {
            for h in map.values() {
                visit.call(h)?;
            }
        }
        Ok(())
    }

    /// Let go of every parked handle (the collector breaking a cycle); the
    /// callbacks then find nothing to run.
    pub(crate) fn clear(&self) {
        let taken = self
            .map
            .try_borrow_mut()
            .map(|mut m| std::mem::take(&mut *m));
        // Dropped after the borrow: a finalizer may queue or cancel.
        drop(taken);
    }
}

/// A oneloop callback's claim on its parked handle.
#[derive(Debug)]
pub(crate) struct Queued {
    pending: Weak<Pending>,
    key: u64,
}

impl Queued {
    /// The handle, for running it: once.
    pub(crate) fn take(&self) -> Option<Py<PyAny>> {
        let pending = self.pending.upgrade()?;
        let mut map = pending.map.try_borrow_mut().ok()?;
        map.remove(&self.key)
    }
}

impl Drop for Queued {
    /// Unrun (cancelled timer, closed loop): the handle goes too.
    fn drop(&mut self) {
        let Some(pending) = self.pending.upgrade() else {
            return;
        };
        let Ok(mut map) = pending.map.try_borrow_mut() else {
            return;
        };
        let handle = map.remove(&self.key);
        drop(map);
        drop(handle);
    }
}
