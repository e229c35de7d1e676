//! oneloop errors as Python exceptions, and the way a Python
//! `BaseException` leaves a run.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
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
