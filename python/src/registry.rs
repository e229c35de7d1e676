//! [`Registry`]: the Python transport objects of a loop's live connections,
//! where Python's garbage collector can see them.
//!
//! A oneloop transport is held by the loop's fd callbacks, and it holds its
//! protocol bridge, which must reach the Python transport object (to pass
//! it to `connection_made`, to report errors with it). Held from inside the
//! Rust transport, that reference would be invisible to the collector: a
//! Python transport and its protocol (which points back at it) could never
//! be collected, nor an unclosed loop with an open connection. So the
//! bridge holds a key, and the object waits here, in a table that the
//! Python loop object owns and shows to the collector
//! (`RustLoop::__traverse__`), until `connection_lost`.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use pyo3::call::PyCallArgs;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The live Python transports of one loop, by key (a slab: freed keys are reused).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    slots: RefCell<Vec<Option<Py<PyAny>>>>,
    free: RefCell<Vec<usize>>,
}

impl Registry {
    /// Keep `obj` until [`remove`](Registry::remove); its key.
    pub(crate) fn insert(&self, obj: Py<PyAny>) -> usize {
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(key) => {
                slots[key] = Some(obj);
                key
            }
            None => {
                slots.push(Some(obj));
                slots.len() - 1
            }
        }
    }

    /// The object under `key`, if it is still registered.
    pub(crate) fn get<'py>(&self, py: Python<'py>, key: usize) -> Option<Bound<'py, PyAny>> {
        let slots = self.slots.try_borrow().ok()?;
        slots.get(key)?.as_ref().map(|o| o.bind(py).clone())
    }

    /// Let go of the object under `key` (the caller drops it, outside the borrow).
    pub(crate) fn remove(&self, key: usize) -> Option<Py<PyAny>> {
        let taken = self.slots.borrow_mut().get_mut(key)?.take();
        if taken.is_some() {
            self.free.borrow_mut().push(key);
        }
        taken
    }

    /// Show every registered object to the collector.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(slots) = self.slots.try_borrow() {
            for obj in slots.iter().flatten() {
                visit.call(obj)?;
            }
        }
        Ok(())
    }

    /// Let go of everything (the collector breaking a cycle, or the loop
    /// closing); the caller drops what is returned, outside the borrow.
    pub(crate) fn take_all(&self) -> Vec<Py<PyAny>> {
        let Ok(mut slots) = self.slots.try_borrow_mut() else {
            return Vec::new();
        };
        self.free.borrow_mut().clear();
        std::mem::take(&mut *slots).into_iter().flatten().collect()
    }
}

/// One registered Python transport object, as its Rust half holds it.
#[derive(Debug)]
pub(crate) struct Owner {
    registry: Weak<Registry>,
    key: usize,
    /// [`release`](Owner::release) ran: the key may belong to another
    /// transport now.
    released: Cell<bool>,
}

impl Owner {
    /// Register `obj` in `registry`.
    pub(crate) fn new(registry: &Rc<Registry>, obj: Py<PyAny>) -> Owner {
        Owner {
            key: registry.insert(obj),
            registry: Rc::downgrade(registry),
            released: Cell::new(false),
        }
    }

    /// The Python object, until released.
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        if self.released.get() {
            return None;
        }
        self.registry.upgrade()?.get(py, self.key)
    }

    /// Call the object's method `name`: `Ok(None)` once it is released.
    pub(crate) fn call<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        args: impl PyCallArgs<'py>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.get(py) {
            Some(obj) => obj.call_method1(name, args).map(Some),
            None => Ok(None),
        }
    }

    /// Let go of the object (once; later calls do nothing).
    pub(crate) fn release(&self) {
        if self.released.replace(true) {
            return;
        }
        let obj = self.registry.upgrade().and_then(|r| r.remove(self.key));
        drop(obj);
    }
}
