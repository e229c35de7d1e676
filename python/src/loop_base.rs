//! [`LoopBase`]: the Rust base class of `oneloop.OneloopEventLoop`, whose
//! `call_soon` is a method of the type, as uvloop's is.
//!
//! `loop.call_soon` runs once per callback queued, so how Python finds it
//! counts. A method of the type is found the way CPython 3.11 specialises
//! (`LOAD_METHOD_WITH_DICT`: a type-version check), and called without a
//! bound-method object. The loop used to put a bound Rust method in each
//! instance's `__dict__` instead, which CPython cannot specialise: every
//! call then looked the name up in the type, then in the instance dict.
//!
//! In asyncio's debug mode `call_soon` is asyncio's own Python method (its
//! handles record where they were made, for debug reports, and it checks
//! the callback and the thread): the Python loop switches with
//! [`LoopBase::_set_fast_call_soon`]. A subclass's own `call_soon` comes
//! first in its method order and is left to work.

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::rust_loop::RustLoop;

/// The base class of `oneloop.OneloopEventLoop` (see the module docs).
#[pyclass(subclass, module = "oneloop._oneloop")]
#[derive(Debug, Default)]
pub struct LoopBase {
    /// The loop's Rust half, once the Python loop has made it.
    rust: Option<Py<RustLoop>>,
    /// Whether `call_soon` makes a Rust `Handle` (outside debug mode).
    fast: bool,
}

/// asyncio's own `BaseEventLoop.call_soon`, for debug mode.
fn asyncio_call_soon(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static F: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    F.get_or_try_init(py, || {
        py.import("asyncio.base_events")?
            .getattr("BaseEventLoop")?
            .getattr("call_soon")
            .map(Bound::unbind)
    })
    .map(|f| f.bind(py))
}

#[pymethods]
impl LoopBase {
    /// Takes (and leaves to the subclass's `__init__`) any arguments.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> LoopBase {
        LoopBase::default()
    }

    /// Give the loop its Rust half (once, from the Python loop's `_init`).
    fn _bind_rust(&mut self, rust: Py<RustLoop>) {
        self.rust = Some(rust);
    }

    /// Make `call_soon` the Rust one (`True`) or asyncio's (`False`, debug
    /// mode).
    fn _set_fast_call_soon(&mut self, on: bool) {
        self.fast = on;
    }

    /// asyncio's `call_soon(callback, *args, context=None)`: a `Handle` for
    /// `callback(*args)` in `context` (a copy of the current one if
    /// `None`), queued on oneloop's ready queue.
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.borrow();
        if this.fast
            && let Some(rust) = &this.rust
        {
            let rust = rust.bind(py).borrow();
            return rust
                .call_soon_handle(py, callback, args, context)
                .map(Py::into_any);
        }
        drop(this);
        let all: Vec<Bound<'_, PyAny>> = [slf.clone().into_any(), callback.into_bound(py)]
            .into_iter()
            .chain(args.bind(py).iter())
            .collect();
        let all = PyTuple::new(py, all)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("context", context)?;
        asyncio_call_soon(py)?
            .call(all, Some(&kwargs))
            .map(Bound::unbind)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(rust) = &self.rust {
            visit.call(rust)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.rust = None;
    }
}
