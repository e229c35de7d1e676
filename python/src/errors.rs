//! oneloop errors as Python exceptions, and the way a Python
//! `BaseException` leaves a run.

use pyo3::exceptions::{
    PyKeyboardInterrupt, PyOSError, PyRuntimeError, PySystemExit, PyValueError,
};
use pyo3::prelude::*;

/// A oneloop error as the exception asyncio raises in the same situation.
pub(crate) fn to_py(e: oneloop::Error) -> PyErr {
    use oneloop::ErrorKind as K;
    match e.kind() {
        K::Io | K::InvalidArgument => match e.io_error().and_then(|io| io.raw_os_error()) {
            Some(errno) => PyOSError::new_err((errno, e.to_string())),
            None if e.kind() == K::InvalidArgument => PyValueError::new_err(e.to_string()),
            None => PyOSError::new_err(e.to_string()),
        },
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// The payload of the unwind that carries a Python exception out of a run.
///
/// asyncio's `Handle._run()` reports every `Exception` to the exception
/// handler itself; what it re-raises (`SystemExit`, `KeyboardInterrupt`)
/// must end `run_forever` right after that callback, the rest of the batch
/// kept for the next run. That is exactly oneloop's
/// [`PanicPolicy::Propagate`](oneloop::PanicPolicy::Propagate), so the
/// callback unwinds with this payload (by `resume_unwind`, which skips the
/// panic hook: nothing is printed) and `RustLoop::run_forever` turns it back
/// into the Python exception.
#[derive(Debug)]
pub(crate) struct Escape(pub(crate) PyErr);

/// Leave the current oneloop callback with `err` (see [`Escape`]).
pub(crate) fn escape(err: PyErr) -> ! {
    std::panic::resume_unwind(Box::new(Escape(err)))
}

/// What a `BaseException` out of a callback does, by the loop's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escapes {
    /// Owned loop: it leaves `run_forever` (see [`Escape`]).
    Propagate,
    /// Attached loop: there is no run of ours to leave (the host's loop,
    /// GLib's, is on the stack, and nothing may unwind into C), so it goes
    /// to asyncio's exception handler, with the exception.
    Report,
}

/// The exception asyncio's `connection_lost` gets: a failure the bridge
/// recorded itself (a Python error that closed the transport) before the
/// one oneloop reports, `None` for a clean close.
pub(crate) fn lost_exception(
    py: Python<'_>,
    failure: Option<PyErr>,
    error: Option<oneloop::Error>,
) -> Py<PyAny> {
    match (failure, error) {
        (Some(f), _) => f.into_value(py).into_any(),
        (None, Some(e)) => exception_of(py, &e).into_value(py).into_any(),
        (None, None) => py.None(),
    }
}

/// The Python exception for a oneloop error that ends a connection, as
/// asyncio's transports would have it from the socket call: an OS error is
/// `OSError(errno, strerror)`, which Python turns into its subclass
/// (`ConnectionResetError`, `BrokenPipeError`, …); anything else (a panic
/// in the transport) is a `RuntimeError`.
pub(crate) fn exception_of(py: Python<'_>, e: &oneloop::Error) -> PyErr {
    use std::io::ErrorKind as K;
    let _ = py;
    let Some(io) = e.io_error() else {
        return PyRuntimeError::new_err(e.to_string());
    };
    // oneloop words some errors itself (a write pipe whose reader left
    // with data buffered is `BrokenPipe` without an errno).
    let errno = io.raw_os_error().or(match io.kind() {
        K::BrokenPipe => Some(libc::EPIPE),
        K::ConnectionReset => Some(libc::ECONNRESET),
        K::ConnectionAborted => Some(libc::ECONNABORTED),
        K::ConnectionRefused => Some(libc::ECONNREFUSED),
        K::TimedOut => Some(libc::ETIMEDOUT),
        _ => None,
    });
    match errno {
        Some(errno) => PyOSError::new_err((errno, strerror(errno))),
        None => PyOSError::new_err(io.to_string()),
    }
}

/// `os.strerror(errno)`: the OS message without Rust's " (os error N)".
fn strerror(errno: i32) -> String {
    let msg = std::io::Error::from_raw_os_error(errno).to_string();
    match msg.rfind(" (os error ") {
        Some(at) => msg[..at].to_owned(),
        None => msg,
    }
}

/// An attached loop's `BaseException` (it cannot leave a run that GLib
/// drives): to the loop's `call_exception_handler`, with asyncio's context
/// keys and `owner` (a handle or a transport, whose `_loop` is the loop)
/// under `key`.
pub(crate) fn report_escape(py: Python<'_>, owner: &Bound<'_, PyAny>, key: &str, err: PyErr) {
    use pyo3::intern;
    use pyo3::types::PyDict;
    let reported = (|| -> PyResult<()> {
        let ctx = PyDict::new(py);
        let name = err.get_type(py).name()?;
        ctx.set_item(
            "message",
            format!(
                "{name} in a callback of an attached loop: the host loop runs it, \
                 so the exception cannot leave a run of ours"
            ),
        )?;
        ctx.set_item("exception", err.value(py))?;
        ctx.set_item(key, owner)?;
        owner
            .getattr(intern!(py, "_loop"))?
            .call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        Ok(())
    })();
    if let Err(e) = reported {
        e.write_unraisable(py, Some(owner));
    }
}

/// Whether `err` is one that asyncio lets out of a callback and its loop
/// (`SystemExit`, `KeyboardInterrupt`) rather than reporting it.
pub(crate) fn is_escape(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}
