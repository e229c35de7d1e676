//! A call with one argument through CPython's vectorcall protocol, for the
//! transports' calls of a protocol's bound methods (`data_received`, …).
//!
//! pyo3 calls through `PyObject_Call` in an abi3 build for 3.11: a tuple
//! is made and freed for the argument, CPython unpacks it again, and a
//! bound method copies its arguments to put `self` in front. uvloop calls
//! the function under the bound method with the protocol and the data
//! directly. Here the bound method is called with
//! `PY_VECTORCALL_ARGUMENTS_OFFSET`, which lets it put `self` in the slot
//! before the argument: no tuple, no copy (callgrind, the streams echo:
//! about 200 instructions per `data_received`).
//!
//! `PyObject_Vectorcall` is not in the limited API of 3.11 (it is from
//! 3.12), so pyo3-ffi leaves it out of this abi3 build; CPython exports it
//! as a function from 3.11 on (pyo3-ffi's own non-abi3 declaration says
//! so), the versions this wheel is for. It is declared here, as `context`
//! declares the context API.

use pyo3::ffi;
use pyo3::prelude::*;

unsafe extern "C" {
    fn PyObject_Vectorcall(
        callable: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// The callee may use `args[-1]` (CPython's `PY_VECTORCALL_ARGUMENTS_OFFSET`).
const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// `f(arg)`.
pub(crate) fn call1<'py>(
    f: &Bound<'py, PyAny>,
    arg: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = f.py();
    // The slot before the argument, for the callee's use.
    let mut args = [std::ptr::null_mut(), arg.as_ptr()];
    // SAFETY: the GIL is held (`py`); `f` and `arg` are live objects held
    // for the call; `args[1..]` is one argument, and with the offset flag
    // the callee may write `args[0]` during the call (it restores it), so
    // the array is ours, on the stack, for the call's duration. A new
    // reference or NULL with an exception set comes back.
    unsafe {
        let r = PyObject_Vectorcall(
            f.as_ptr(),
            args.as_mut_ptr().add(1).cast_const(),
            1 | ARGUMENTS_OFFSET,
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, r)
    }
}
