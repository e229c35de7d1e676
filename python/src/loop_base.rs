//! [`LoopBase`]: the Rust base class of `oneloop.OneloopEventLoop`, whose
//! `call_soon`, `create_future` and `get_debug` are methods of the type, as
//! uvloop's are.
//!
//! `loop.call_soon` runs once per callback queued, so how Python finds it
//! counts. A method of the type is found the way CPython 3.11 specialises
//! (`LOAD_METHOD_WITH_VALUES` or `_WITH_DICT`: version checks, no lookup),
//! and called without a bound-method object. The loop used to put a bound Rust method in each
//! instance's `__dict__` instead, which CPython cannot specialise: every
//! call then looked the name up in the type, then in the instance dict.
//!
//! These methods are C functions of CPython's calling conventions put on
//! the type by hand ([`install_methods`]) rather than `#[pymethods]`
//! methods: pyo3's generic wrapper (its trampoline, a type check of `self`
//! that the method descriptor already made, its argument parser) cost
//! about 160 instructions more per `call_soon` (callgrind, the `call_soon`
//! benchmark: 3 348 → 3 188 instructions per callback).
//!
//! `create_future` and `get_debug` run once per `await` of a stream read:
//! `StreamReader._wait_for_data` calls `loop.create_future()`, and the C
//! `Future` it makes calls `loop.get_debug()`. As asyncio's Python methods
//! they were two Python frames per request of the streams echo benchmark,
//! about 900 of its 27 400 instructions (callgrind); uvloop's are C.
//!
//! asyncio's debug flag is the instance attribute `_debug`, which asyncio's
//! code reads and sets directly; here it is a property of this type backed
//! by a flag that `get_debug()` reads with no lookup. In debug mode
//! `call_soon` and `create_future` are asyncio's own Python methods (its
//! handles record where they were made, for debug reports, and `call_soon`
//! checks the callback and the thread): the flag switches them. A
//! subclass's own methods come first in its method order and are left to
//! work.

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple, PyType};

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
    /// asyncio's `_debug`: in debug mode `call_soon` and `create_future`
    /// are asyncio's own.
    debug: AtomicBool,
}

/// asyncio's own `BaseEventLoop.call_soon`, for debug mode.
fn asyncio_call_soon(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static F: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    asyncio_method(py, &F, "call_soon")
}

/// asyncio's own `BaseEventLoop.create_future`, for debug mode.
fn asyncio_create_future(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static F: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    asyncio_method(py, &F, "create_future")
}

fn asyncio_method<'py>(
    py: Python<'py>,
    cell: &'py PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || {
        py.import("asyncio.base_events")?
            .getattr("BaseEventLoop")?
            .getattr(name)
            .map(Bound::unbind)
    })
    .map(|f| f.bind(py))
}

/// The namespace of `asyncio.futures`, where asyncio's `create_future`
/// finds `Future` at each call (so a patched `futures.Future` is used here
/// too); a module's namespace is the same dict for its whole life.
fn futures_namespace(py: Python<'_>) -> PyResult<&Bound<'_, PyDict>> {
    static NS: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
    NS.get_or_try_init(py, || Ok(py.import("asyncio.futures")?.dict().unbind()))
        .map(|d| d.bind(py))
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

    /// asyncio's debug flag (`loop._debug`, what `get_debug()` returns),
    /// kept as a `bool`, as uvloop keeps it.
    #[getter(_debug)]
    fn debug_flag(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    /// Set by asyncio's `set_debug` and `BaseEventLoop.__init__` (and by
    /// anyone who writes `loop._debug`): any object, taken as its truth.
    #[setter(_debug)]
    fn set_debug_flag(&self, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        self.debug.store(enabled.is_truthy()?, Ordering::Relaxed);
        Ok(())
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
    if !this.debug.load(Ordering::Relaxed)
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
        // descriptor made by `install_methods` checked that `self` is a
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
    into_result(py, out, "call_soon")
}

/// What a method function returns to CPython: the object (a new
/// reference), or NULL with the exception set (a panic, a bug, becomes a
/// `RuntimeError` rather than unwinding into CPython).
pub(crate) fn into_result(
    py: Python<'_>,
    out: std::thread::Result<PyResult<Py<PyAny>>>,
    name: &str,
) -> *mut ffi::PyObject {
    match out {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            PyRuntimeError::new_err(format!("oneloop: a panic in {name} (a bug)")).restore(py);
            std::ptr::null_mut()
        }
    }
}

/// `loop.create_future()`: `asyncio.futures.Future(loop=self)`, as asyncio's
/// `BaseEventLoop.create_future`, or in debug mode that method itself.
fn create_future(slf: Borrowed<'_, '_, LoopBase>) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    if slf.get().debug.load(Ordering::Relaxed) {
        return asyncio_create_future(py)?.call1((slf,)).map(Bound::unbind);
    }
    let Some(future) = futures_namespace(py)?.get_item(intern!(py, "Future"))? else {
        return Err(PyAttributeError::new_err(
            "module 'asyncio.futures' has no attribute 'Future'",
        ));
    };
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "loop"), slf)?;
    future.call((), Some(&kwargs)).map(Bound::unbind)
}

/// `LoopBase.create_future` as CPython calls it (`METH_NOARGS`).
unsafe extern "C" fn create_future_noargs(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `slf` is the live `self` of the call, which the method
    // descriptor made by `install_methods` checked is a `LoopBase`.
    let slf = unsafe { Borrowed::from_ptr(py, slf).cast_unchecked::<LoopBase>() };
    let out = catch_unwind(AssertUnwindSafe(|| create_future(slf)));
    into_result(py, out, "create_future")
}

/// `LoopBase.get_debug` as CPython calls it (`METH_NOARGS`): the flag, no
/// lookup and nothing that can fail.
unsafe extern "C" fn get_debug_noargs(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: as in `create_future_noargs`.
    let slf = unsafe { Borrowed::from_ptr(py, slf).cast_unchecked::<LoopBase>() };
    PyBool::new(py, slf.get().debug.load(Ordering::Relaxed))
        .to_owned()
        .into_ptr()
}

/// The methods [`install_methods`] puts on `LoopBase`.
fn method_defs() -> [ffi::PyMethodDef; 3] {
    [
        ffi::PyMethodDef {
            ml_name: c"call_soon".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: call_soon_fastcall,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: c"call_soon(callback, *args, context=None)\n--\n\n\
Arrange for callback(*args) to be called soon, in context (a copy of the current \
context if None); returns a Handle."
                .as_ptr()
                .cast::<c_char>(),
        },
        ffi::PyMethodDef {
            ml_name: c"create_future".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: create_future_noargs,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"create_future($self, /)\n--\n\n\
Create a Future object attached to the loop."
                .as_ptr()
                .cast::<c_char>(),
        },
        ffi::PyMethodDef {
            ml_name: c"get_debug".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: get_debug_noargs,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"get_debug($self, /)\n--\n\n\
Whether the loop is in debug mode."
                .as_ptr()
                .cast::<c_char>(),
        },
    ]
}

/// Put `call_soon`, `create_future` and `get_debug` on `LoopBase` (see the
/// module docs); at module init.
pub(crate) fn install_methods(ty: &Bound<'_, PyType>) -> PyResult<()> {
    // CPython keeps a pointer to each definition for the life of its
    // descriptor, so they live for the process (once per module init).
    let defs: &'static mut [ffi::PyMethodDef; 3] = Box::leak(Box::new(method_defs()));
    for def in defs.iter_mut() {
        // SAFETY: `ty` is a live type object and `def` a valid method
        // definition that outlives it; a new reference or NULL with an
        // exception set comes back.
        let descr = unsafe {
            Bound::from_owned_ptr_or_err(ty.py(), ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))
        }?;
        // SAFETY: `ml_name` is one of the C string literals above.
        let name = unsafe { CStr::from_ptr(def.ml_name) };
        ty.setattr(name.to_str().unwrap_or_default(), descr)?;
    }
    Ok(())
}
