//! [`LoopBase`]: the Rust base class of `oneloop.OneloopEventLoop`, whose
//! `call_soon` is a method of the type, as uvloop's is.
//!
//! `loop.call_soon` runs once per callback queued, so how Python finds it
//! counts. A method of the type is found the way CPython 3.11 specialises
//! (`LOAD_METHOD_WITH_VALUES` or `_WITH_DICT`: version checks, no lookup),
//! and called without a bound-method object. The loop used to put a bound Rust method in each
//! instance's `__dict__` instead, which CPython cannot specialise: every
//! call then looked the name up in the type, then in the instance dict.
//!
//! `call_soon` is a C function of CPython's fastcall convention put on the
//! type by hand ([`install_call_soon`]) rather than a `#[pymethods]`
//! method: pyo3's generic wrapper (its trampoline, a type check of `self`
//! that the method descriptor already made, its argument parser) cost
//! about 160 instructions more per call (callgrind, the `call_soon`
//! benchmark: 3 348 → 3 188 instructions per callback).
//!
//! In asyncio's debug mode `call_soon` is asyncio's own Python method (its
//! handles record where they were made, for debug reports, and it checks
//! the callback and the thread): the Python loop switches with
//! [`LoopBase::_set_fast_call_soon`]. A subclass's own `call_soon` comes
//! first in its method order and is left to work.

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

use crate::rust_loop::RustLoop;

/// The base class of `oneloop.OneloopEventLoop` (see the module docs).
///
/// Frozen (no borrow flag: pyo3's is an atomic read-modify-write per
/// borrow, twice per `call_soon`).
#[pyclass(frozen, subclass, module = "oneloop._oneloop")]
#[derive(Debug, Default)]
pub struct LoopBase {
    /// The loop's Rust half, once the Python loop has made it.
    rust: OnceLock<Py<RustLoop>>,
    /// Whether `call_soon` makes a Rust `Handle` (outside debug mode).
    fast: AtomicBool,
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
    fn _bind_rust(&self, rust: Py<RustLoop>) -> PyResult<()> {
        self.rust
            .set(rust)
            .map_err(|_| PyRuntimeError::new_err("this loop already has its Rust half"))
    }

    /// Make `call_soon` the Rust one (`True`) or asyncio's (`False`, debug
    /// mode).
    fn _set_fast_call_soon(&self, on: bool) {
        self.fast.store(on, Ordering::Relaxed);
    }

    /// No `__clear__`: a frozen object cannot let go of its `RustLoop`;
    /// the collector breaks a cycle through it by clearing the Python
    /// loop's `__dict__` (which holds `_rust` too) and the `RustLoop`.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(rust) = self.rust.get() {
            visit.call(rust)?;
        }
        Ok(())
    }
}

/// `loop.call_soon(callback, *args, context=None)`: a Rust `Handle` queued on
/// oneloop's ready queue, or in debug mode asyncio's own `call_soon`.
fn call_soon<'py>(
    slf: &Bound<'py, LoopBase>,
    callback: Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let this = slf.get();
    if this.fast.load(Ordering::Relaxed)
        && let Some(rust) = this.rust.get()
    {
        return rust
            .get()
            .call_soon_handle(
                py,
                callback.unbind(),
                args.unbind(),
                context.map(Bound::unbind),
            )
            .map(Py::into_any);
    }
    let all: Vec<Bound<'py, PyAny>> = [slf.clone().into_any(), callback]
        .into_iter()
        .chain(args.iter())
        .collect();
    let kwargs = PyDict::new(py);
    kwargs.set_item("context", context)?;
    asyncio_call_soon(py)?
        .call(PyTuple::new(py, all)?, Some(&kwargs))
        .map(Bound::unbind)
}

/// [`call_soon`]'s arguments from CPython's fastcall convention: the
/// positional ones, then the values of the keywords named in `kwnames`.
type Parsed<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
    Option<Bound<'py, PyAny>>,
);

fn parse<'a, 'py>(
    py: Python<'py>,
    positional: &[*mut ffi::PyObject],
    kwnames: Option<Borrowed<'a, 'py, PyTuple>>,
    values: &[*mut ffi::PyObject],
) -> PyResult<Parsed<'py>> {
    // SAFETY: the pointers are the live, non-NULL borrowed arguments of the
    // fastcall that is running (see `call_soon_fastcall`).
    let arg = |p: &*mut ffi::PyObject| unsafe { Borrowed::from_ptr(py, *p) };
    let mut callback = positional.first().map(|c| arg(c).to_owned());
    let mut context = None;
    if let Some(kwnames) = kwnames {
        for (name, value) in kwnames.iter().zip(values) {
            let name = name.cast_into::<PyString>()?;
            let slot = match name.to_str()? {
                "context" => &mut context,
                "callback" if callback.is_none() => &mut callback,
                "callback" => {
                    return Err(PyTypeError::new_err(
                        "call_soon() got multiple values for argument 'callback'",
                    ));
                }
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "call_soon() got an unexpected keyword argument '{other}'"
                    )));
                }
            };
            *slot = Some(arg(value).to_owned());
        }
    }
    let Some(callback) = callback else {
        return Err(PyTypeError::new_err(
            "call_soon() missing 1 required positional argument: 'callback'",
        ));
    };
    let args = if positional.len() > 1 {
        PyTuple::new(py, positional.iter().skip(1).map(arg))?
    } else {
        PyTuple::empty(py)
    };
    Ok((callback, args, context.filter(|c| !c.is_none())))
}

/// `LoopBase.call_soon` as CPython calls it (`METH_FASTCALL |
/// METH_KEYWORDS`).
unsafe extern "C" fn call_soon_fastcall(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let out = catch_unwind(AssertUnwindSafe(|| {
        let nargs = usize::try_from(nargs).unwrap_or(0);
        // SAFETY: CPython passes a live `self`, a tuple of keyword names or
        // NULL, and in `args` `nargs` positional arguments then one value
        // per keyword name: live borrowed references, for the call. With
        // no argument at all `args` may be NULL (`PyObject_CallNoArgs`),
        // which no slice may point at: the empty slice then. The method
        // descriptor made by `install_call_soon` checked that `self` is a
        // `LoopBase` before calling.
        let (slf, kwnames, all) = unsafe {
            let kwnames = (!kwnames.is_null())
                .then(|| Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>());
            let nkw = kwnames.as_ref().map_or(0, |k| k.len());
            let all: &[*mut ffi::PyObject] = if args.is_null() || nargs + nkw == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(args, nargs + nkw)
            };
            let slf = Borrowed::from_ptr(py, slf).cast_unchecked::<LoopBase>();
            (slf, kwnames, all)
        };
        let (positional, values) = all.split_at(nargs.min(all.len()));
        let (callback, args, context) = parse(py, positional, kwnames, values)?;
        call_soon(&slf, callback, args, context)
    }));
    match out {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            PyRuntimeError::new_err("oneloop: a panic in call_soon (a bug)").restore(py);
            std::ptr::null_mut()
        }
    }
}

const CALL_SOON_NAME: &CStr = c"call_soon";
const CALL_SOON_DOC: &CStr = c"call_soon(callback, *args, context=None)\n--\n\n\
Arrange for callback(*args) to be called soon, in context (a copy of the current \
context if None); returns a Handle.";

/// Put `call_soon` on `LoopBase` (see the module docs); at module init.
pub(crate) fn install_call_soon(ty: &Bound<'_, PyType>) -> PyResult<()> {
    // CPython keeps a pointer to the definition for the life of the
    // descriptor, so it lives for the process (once per module init).
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: CALL_SOON_NAME.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: call_soon_fastcall,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: CALL_SOON_DOC.as_ptr().cast::<c_char>(),
    }));
    // SAFETY: `ty` is a live type object and `def` a valid method
    // definition that outlives it; a new reference or NULL with an
    // exception set comes back.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(ty.py(), ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))
    }?;
    ty.setattr(CALL_SOON_NAME.to_str().unwrap_or("call_soon"), descr)
}
