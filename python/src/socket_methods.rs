//! The data-path methods of `oneloop._transports.SocketTransport` (`write`,
//! `is_closing`, …) as C methods of that Python class.
//!
//! The transport is a Python subclass of asyncio's transport classes, and
//! its data path is a [`RustStream`] in its `_rs` slot. The methods called
//! on every read or write used to be the `RustStream`'s bound methods put
//! in each transport's `__dict__`: one C call, but CPython 3.11 cannot
//! specialise a method call on an attribute of the instance, so every
//! `transport.write(data)` of `StreamWriter.write` and `is_closing()` of
//! `drain()` took the generic lookup (the type's method order, then the
//! instance dict) and pyo3's generic wrapper. As methods of the type they
//! are found as uvloop's are (`LOAD_METHOD_WITH_VALUES`, version checks)
//! and called directly; each reads `_rs` through its slot's descriptor,
//! not a name lookup.
//!
//! A subclass that sets `_rs` to something else than a `RustStream` (or a
//! transport not yet started, whose `_rs` is `None`) gets the method of
//! that object called, as the Python methods did.

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

use crate::stream::RustStream;

/// `SocketTransport.__dict__["_rs"]` (a member descriptor: the slot) and
/// its type's `__get__`.
struct Slot {
    descr: Py<PyAny>,
    get: ffi::descrgetfunc,
}

static SLOT: PyOnceLock<Slot> = PyOnceLock::new();

/// The transport's `_rs`.
fn stream<'py>(slf: Borrowed<'_, 'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let Some(slot) = SLOT.get(py) else {
        return Err(PyRuntimeError::new_err(
            "oneloop: SocketTransport's methods are not installed",
        ));
    };
    // SAFETY: `get` is the `tp_descr_get` of the descriptor's own type,
    // called with the live descriptor and the live `self` of the running
    // method call (a `SocketTransport`: the method descriptor checked it,
    // and the member descriptor checks it again); a new reference or NULL
    // with an exception set comes back (an unset slot: `AttributeError`).
    unsafe {
        let got = (slot.get)(slot.descr.as_ptr(), slf.as_ptr(), std::ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, got)
    }
}

/// Run `f` on the transport's `RustStream`, or call the method `name` of
/// whatever else `_rs` is with `arg` (if any).
fn with_stream(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    name: &'static str,
    f: impl FnOnce(Python<'_>, &RustStream, Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let out = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `slf` is the live `self` of the call, and `arg` its live
        // argument (METH_O) or NULL (METH_NOARGS), borrowed for the call.
        let (slf, arg) = unsafe {
            (
                Borrowed::from_ptr(py, slf),
                Borrowed::from_ptr_or_opt(py, arg).map(|a| a.to_owned()),
            )
        };
        let rs = stream(slf)?;
        match rs.cast::<RustStream>() {
            Ok(rs) => f(py, rs.get(), arg.as_ref()),
            Err(_) => match arg {
                Some(a) => rs.call_method1(name, (a,)).map(Bound::unbind),
                None => rs.call_method0(name).map(Bound::unbind),
            },
        }
    }));
    crate::loop_base::into_result(py, out, name)
}

/// The argument of a METH_O method (CPython always passes one).
fn argument<'a, 'py>(arg: Option<&'a Bound<'py, PyAny>>) -> PyResult<&'a Bound<'py, PyAny>> {
    arg.ok_or_else(|| PyTypeError::new_err("an argument is missing"))
}

unsafe extern "C" fn write(slf: *mut ffi::PyObject, arg: *mut ffi::PyObject) -> *mut ffi::PyObject {
    with_stream(slf, arg, "write", |py, rs, data| {
        rs.write(argument(data)?)?;
        Ok(py.None())
    })
}

unsafe extern "C" fn writelines(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    with_stream(slf, arg, "writelines", |py, rs, chunks| {
        rs.writelines(argument(chunks)?)?;
        Ok(py.None())
    })
}

/// Python's `True`/`False`.
fn py_bool(py: Python<'_>, b: bool) -> Py<PyAny> {
    pyo3::types::PyBool::new(py, b)
        .to_owned()
        .into_any()
        .unbind()
}

unsafe extern "C" fn is_closing(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    with_stream(slf, std::ptr::null_mut(), "is_closing", |py, rs, _| {
        Ok(py_bool(py, rs.is_closing()))
    })
}

unsafe extern "C" fn is_reading(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    with_stream(slf, std::ptr::null_mut(), "is_reading", |py, rs, _| {
        Ok(py_bool(py, rs.is_reading()?))
    })
}

unsafe extern "C" fn pause_reading(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    with_stream(slf, std::ptr::null_mut(), "pause_reading", |py, rs, _| {
        rs.pause_reading()?;
        Ok(py.None())
    })
}

unsafe extern "C" fn resume_reading(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    with_stream(slf, std::ptr::null_mut(), "resume_reading", |py, rs, _| {
        rs.resume_reading()?;
        Ok(py.None())
    })
}

unsafe extern "C" fn get_write_buffer_size(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    with_stream(
        slf,
        std::ptr::null_mut(),
        "get_write_buffer_size",
        |py, rs, _| {
            Ok(rs
                .get_write_buffer_size()?
                .into_pyobject(py)?
                .into_any()
                .unbind())
        },
    )
}

/// One method definition: `(name, function, METH_O or METH_NOARGS, doc)`.
fn def(
    name: &'static CStr,
    meth: ffi::PyCFunction,
    flags: std::ffi::c_int,
    doc: &'static CStr,
) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: meth },
        ml_flags: flags,
        ml_doc: doc.as_ptr().cast::<c_char>(),
    }
}

/// Put the data-path methods on `ty`, `oneloop._transports.SocketTransport`,
/// whose `_rs` is a slot (`__slots__`); once, as the class is made.
#[pyfunction]
pub(crate) fn install_socket_methods(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let py = ty.py();
    let descr = ty
        .getattr("__dict__")?
        .get_item("_rs")
        .map_err(|_| PyTypeError::new_err("the class has no _rs slot (__slots__)"))?;
    if descr.get_type().name()?.to_cow()? != "member_descriptor" {
        return Err(PyTypeError::new_err(
            "the class's _rs is not a slot (__slots__)",
        ));
    }
    let tp = descr.get_type();
    // SAFETY: `tp` is a live type object; PyType_GetSlot reads any type's
    // slot since 3.10 (this wheel is for 3.11 and later), and
    // `Py_tp_descr_get` is a `descrgetfunc` or NULL.
    let get = unsafe { ffi::PyType_GetSlot(tp.as_type_ptr(), ffi::Py_tp_descr_get) };
    if get.is_null() {
        return Err(PyTypeError::new_err("the _rs slot has no __get__"));
    }
    // SAFETY: the slot `Py_tp_descr_get` holds a `descrgetfunc` (checked
    // non-NULL above).
    let get: ffi::descrgetfunc = unsafe { std::mem::transmute(get) };
    let mut fresh = false;
    let slot = SLOT.get_or_init(py, || {
        fresh = true;
        Slot {
            descr: descr.clone().unbind(),
            get,
        }
    });
    if !fresh && !slot.descr.bind(py).is(&descr) {
        return Err(PyRuntimeError::new_err(
            "oneloop: SocketTransport's methods are installed on another class already",
        ));
    }
    // CPython keeps a pointer to each definition for the life of its
    // descriptor, so they live for the process (once per class).
    let defs: &'static mut [ffi::PyMethodDef] = Box::leak(Box::new([
        def(
            c"write",
            write,
            ffi::METH_O,
            c"Write data (bytes, bytearray or memoryview).",
        ),
        def(
            c"writelines",
            writelines,
            ffi::METH_O,
            c"Write a list of data as one write.",
        ),
        def(
            c"is_closing",
            is_closing,
            ffi::METH_NOARGS,
            c"Whether the transport is closing or closed.",
        ),
        def(
            c"is_reading",
            is_reading,
            ffi::METH_NOARGS,
            c"Whether the transport is receiving.",
        ),
        def(
            c"pause_reading",
            pause_reading,
            ffi::METH_NOARGS,
            c"Pause the receiving end.",
        ),
        def(
            c"resume_reading",
            resume_reading,
            ffi::METH_NOARGS,
            c"Resume the receiving end.",
        ),
        def(
            c"get_write_buffer_size",
            get_write_buffer_size,
            ffi::METH_NOARGS,
            c"The current size of the output buffer.",
        ),
    ]));
    for def in defs.iter_mut() {
        // SAFETY: `ty` is a live type object and `def` a valid method
        // definition that outlives it; a new reference or NULL with an
        // exception set comes back.
        let method = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))
        }?;
        // SAFETY: `ml_name` is one of the C string literals above.
        let name = unsafe { CStr::from_ptr(def.ml_name) };
        ty.setattr(PyString::new(py, name.to_str().unwrap_or_default()), method)?;
    }
    Ok(())
}
