//! [`Signals`]: `loop.add_signal_handler` on oneloop's own signal support
//! ([`Loop::add_signal_handler`]).
//!
//! oneloop's C handler writes to oneloop's own self-pipe, which the loop
//! watches like any fd, and queues the handler as an ordinary callback: the
//! signal wakes the host's wait (with the GIL released) and the asyncio
//! `Handle` runs among the other callbacks, on every host. Python's signal
//! module is not in that path (its wakeup fd is not needed for these
//! signals); the Python loop keeps its view consistent as asyncio's unix
//! loop does (`signal.signal(sig, _sighandler_noop)` before, the default
//! after; see `python/oneloop/_loop.py`).
//!
//! The asyncio handles are kept here, in a table the loop shows to Python's
//! collector; the closure oneloop holds has only a weak reference to it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use oneloop::Loop;
use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;

use crate::errors::{Escapes, escape};
use crate::rust_loop::{InCallback, is_cancelled, on_escape};

/// The asyncio `Handle` of each signal that has a handler, by number.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    handles: Rc<RefCell<HashMap<i32, Py<PyAny>>>>,
}

impl Signals {
    /// Run `handle` (asyncio's `Handle`) each time `sig` arrives, replacing
    /// the previous handler of `sig`. `owner` is the Python loop's
    /// `weakref.ref`, to remove a cancelled handle as asyncio's
    /// `_handle_signal` does.
    ///
    /// Errors are oneloop's as `RuntimeError` (asyncio raises it for a
    /// signal that cannot be caught and off the main thread): SIGKILL,
    /// SIGSTOP and the synchronous faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL)
    /// refused, another loop already handling signals, a closed loop.
    pub(crate) fn add(
        &self,
        lp: &Loop,
        sig: i32,
        handle: Py<PyAny>,
        owner: Weak<RefCell<Option<Py<PyAny>>>>,
        escapes: Escapes,
    ) -> PyResult<()> {
        let handles = Rc::downgrade(&self.handles);
        lp.add_signal_handler(sig, move || signal_ready(&handles, &owner, sig, escapes))
            .map_err(|e| match e.kind() {
                oneloop::ErrorKind::InvalidArgument => {
                    PyRuntimeError::new_err(format!("sig {sig} cannot be caught"))
                }
                _ => PyRuntimeError::new_err(e.to_string()),
            })?;
        let old = self.handles.borrow_mut().insert(sig, handle);
        // Dropped with no borrow held (a finalizer may call back).
        drop(old);
        Ok(())
    }

    /// Remove the handler of `sig` (oneloop gives the signal back the
    /// disposition it had before); whether there was one.
    pub(crate) fn remove(&self, lp: &Loop, sig: i32) -> PyResult<bool> {
        let old = self.handles.borrow_mut().remove(&sig);
        let removed = lp
            .remove_signal_handler(sig)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        drop(old);
        Ok(removed)
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(handles) = self.handles.try_borrow() {
            for h in handles.values() {
                visit.call(h)?;
            }
        }
        Ok(())
    }

    /// Let go of the handles (the collector's `__clear__`); a signal then
    /// finds no handle and does nothing until the loop removes it or closes.
    pub(crate) fn clear(&self) {
        let handles = std::mem::take(&mut *self.handles.borrow_mut());
        drop(handles);
    }
}

/// `sig` arrived (oneloop queued this as a callback): run its handle, or,
/// if the handle was cancelled, remove the handler through the Python loop
/// (asyncio's `_handle_signal`).
fn signal_ready(
    handles: &Weak<RefCell<HashMap<i32, Py<PyAny>>>>,
    owner: &Weak<RefCell<Option<Py<PyAny>>>>,
    sig: i32,
    escapes: Escapes,
) {
    let failed = Python::attach(|py| {
        let handle = handles.upgrade()?.borrow().get(&sig)?.clone_ref(py);
        let h = handle.bind(py);
        if is_cancelled(py, h) {
            let owner = owner.upgrade()?;
            let lp = owner.borrow().as_ref()?.bind(py).call0().ok()?;
            if lp.is_none() {
                return None;
            }
            return lp
                .call_method1(intern!(py, "remove_signal_handler"), (sig,))
                .err();
        }
        let _in = InCallback::enter(escapes);
        let err = h.call_method0(intern!(py, "_run")).err();
        err.and_then(|e| on_escape(py, h, e, escapes))
    });
    if let Some(err) = failed {
        escape(err);
    }
}
