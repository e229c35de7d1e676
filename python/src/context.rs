//! A callback's `contextvars.Context`: copied and entered through CPython's
//! C API (`PyContext_CopyCurrent`, `PyContext_Enter`, `PyContext_Exit`),
//! as uvloop does.
//!
//! Through Python instead, each `call_soon` called `copy_context()` and each
//! run called `Context.run(context, callback, *args)`: a method call that
//! packs and unpacks its arguments; about 190 instructions of a callback's
//! 3 540 in the `call_soon` benchmark (callgrind). These three functions are not in the limited API that an abi3
//! module is built against (pyo3-ffi leaves them out of an abi3 build), so
//! they are declared here. They are CPython's documented context API
//! (<https://docs.python.org/3/c-api/contextvars.html>), exported with
//! these signatures by every CPython since 3.7, which covers the 3.11 and
//! later that this wheel is for; a CPython without them would refuse to
//! load the module (an undefined symbol), not misbehave.
//!
//! A `context=` that is not a `contextvars.Context` (asyncio does not
//! check) goes through `context.run(...)`, so its error is asyncio's.

use std::ffi::c_int;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

unsafe extern "C" {
    fn PyContext_CopyCurrent() -> *mut ffi::PyObject;
    fn PyContext_Enter(ctx: *mut ffi::PyObject) -> c_int;
    fn PyContext_Exit(ctx: *mut ffi::PyObject) -> c_int;
}

/// `contextvars.copy_context()`: a copy of the current context.
pub(crate) fn copy_current(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: the GIL is held (`py`); the function takes no argument and
    // returns a new reference, or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, PyContext_CopyCurrent()) }
}

/// `contextvars.Context`, looked up once.
fn context_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static T: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    T.import(py, "contextvars", "Context")
}

/// `context.run(callback, *args)`.
pub(crate) fn run<'py>(
    context: &Bound<'py, PyAny>,
    callback: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = context.py();
    // The type's address compared: no reference to it taken and dropped.
    if !std::ptr::eq(context.get_type_ptr(), context_type(py)?.as_type_ptr()) {
        let all: Vec<Bound<'py, PyAny>> = std::iter::once(callback.clone())
            .chain(args.iter())
            .collect();
        return context.call_method1("run", PyTuple::new(py, all)?);
    }
    let ctx = context.as_ptr();
    // SAFETY: the GIL is held and `ctx` is a live `contextvars.Context`
    // (checked above). On failure (the context is already entered) it
    // returns -1 with an exception set, and nothing was entered.
    if unsafe { PyContext_Enter(ctx) } != 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `callback` and `args` (a tuple) are live objects the caller
    // holds for the call; a new reference or NULL with an exception set
    // comes back, which `from_owned_ptr_or_err` takes over.
    let result = unsafe {
        let r = ffi::PyObject_Call(callback.as_ptr(), args.as_ptr(), std::ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, r)
    };
    // SAFETY: `ctx` is the context entered above, still current: whatever
    // the callback entered it has exited (a `Context.run` always exits
    // what it enters). -1 only if it is not the current context, which
    // would be a CPython bug; its exception then replaces the callback's
    // outcome, as `Context.run` does.
    if unsafe { PyContext_Exit(ctx) } != 0 {
        return Err(PyErr::fetch(py));
    }
    result
}
