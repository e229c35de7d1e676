//! [`Handle`]: what `loop.call_soon()` returns, made and run in Rust.
//!
//! asyncio's `events.Handle` is a Python class: making one runs a Python
//! `__init__` (and `call_soon` around it is two more Python frames), which
//! is most of what a callback costs on asyncio's own loop and capped this
//! loop's `call_soon` at asyncio's speed. This one is a Rust object with
//! the same behaviour: `cancel()`, `cancelled()`, `get_context()`,
//! asyncio's `repr`, and `_run()`, which runs the callback in its context
//! and reports an exception to the loop's exception handler with asyncio's
//! context keys (`message`, `exception`, `handle`). `SystemExit` and
//! `KeyboardInterrupt` are let through, as asyncio lets them through.
//!
//! Only `call_soon` outside debug mode makes these. In debug mode the loop
//! makes asyncio's own handles, which record where they were created
//! (`_source_traceback`) for asyncio's debug reports.
//!
//! # Not a garbage-collected type, and why that is safe
//!
//! A `Handle` is not tracked by Python's cycle collector (pyo3 makes every
//! class a collected type; [`untracked`] takes each handle out of the
//! collector's lists as it is made): tracking costs a
//! traversal of every queued handle at every collection, and collections
//! come twice as often when each `call_soon` allocates two tracked objects
//! (measured with callgrind: about a tenth of a callback's instructions).
//! Instead:
//!
//! - while queued, a handle that only the loop holds (the caller dropped
//!   what `call_soon` returned, the usual case) is, for the collector, part
//!   of the loop: `RustLoop`'s traversal visits the handle's callback,
//!   arguments, context and loop directly ([`Handle::traverse_contents`]).
//!   A handle that someone else also holds is not looked into, so what it
//!   refers to counts as reachable from outside, which is safe;
//! - once run, cancelled, or dropped unrun by a closing loop, the handle
//!   lets go of its callback and arguments ([`Handle::release`]), so a
//!   handle kept in an object that its callback refers to (`self.h =
//!   loop.call_soon(self.f)`) leaves no cycle behind. asyncio keeps them
//!   after a run; only `repr()` and `_callback` show the difference.

use std::cell::UnsafeCell;

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::context;
use crate::errors::is_escape;

/// A callback queued by `call_soon` (see the module docs).
#[pyclass(frozen, module = "oneloop._oneloop", name = "Handle", weakref)]
pub struct Handle {
    /// What changes: the callback and its arguments (let go of after the
    /// run or on cancel), and the cancelled flag (see [`GilGuarded`]).
    call: GilGuarded,
    context: Py<PyAny>,
    /// A `weakref.ref` to the Python event loop, for its exception handler
    /// (the loop holds its queued handles; the weak reference is the one
    /// the loop already has, shared, so making a handle calls nothing).
    lp: Py<PyAny>,
}

struct Call {
    callback: Option<Py<PyAny>>,
    args: Option<Py<PyTuple>>,
    cancelled: bool,
}

/// A handle's [`Call`], guarded by the GIL rather than a lock.
///
/// A `Mutex` cost two atomic read-modify-writes per callback (lock and
/// unlock, each some 20 cycles) for exclusion the GIL already gives: every
/// access is [`Handle::with_call`], which takes a `Python` token, and an
/// abi3 module only loads into CPython builds that have a GIL.
struct GilGuarded(UnsafeCell<Call>);

// SAFETY: the `Call` is only reached through `Handle::with_call` (and the
// read of `traverse_contents`), with the GIL held: no two threads are in
// there at once. `Call` itself is `Send` (it holds `Py`s).
unsafe impl Sync for GilGuarded {}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// A handle for `callback(*args)` in `context` (a copy of the current
    /// context if `None`, as asyncio does), on the Python loop that the
    /// `weakref.ref` `lp` refers to (or `None`).
    pub(crate) fn new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
        lp: Py<PyAny>,
    ) -> PyResult<Handle> {
        let context = match context {
            Some(c) if !c.is_none(py) => c,
            _ => context::copy_current(py)?.unbind(),
        };
        Ok(Handle {
            call: GilGuarded(UnsafeCell::new(Call {
                callback: Some(callback),
                args: Some(args),
                cancelled: false,
            })),
            context,
            lp,
        })
    }

    /// The Python loop, or `None` once it is gone.
    fn loop_<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lp = self.lp.bind(py);
        if lp.is_none() {
            Ok(lp.clone())
        } else {
            lp.call0()
        }
    }

    /// `f` on the handle's [`Call`]. Each `f` is a few lines of this file
    /// that read, move or flip fields and clone references (increfs): no
    /// Python code runs and nothing is dropped or allocated inside, so no
    /// other access (a finalizer, the collector) can start within it.
    fn with_call<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut Call) -> R) -> R {
        // SAFETY: the GIL is held (`_py`), so no other thread is here, and
        // `f` runs no Python code (see above), so no access nests in it:
        // this `&mut` is the only reference to the `Call` while it lives.
        f(unsafe { &mut *self.call.0.get() })
    }

    /// For `RustLoop`'s traversal of a handle that only the loop holds:
    /// its references, visited as the loop's own (see the module docs).
    pub(crate) fn traverse_contents(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.context)?;
        visit.call(&self.lp)?;
        // SAFETY: the collector runs with the GIL held, and never inside a
        // `with_call` (which allocates nothing, so cannot start it): no
        // `&mut` to the `Call` exists while this shared one lives.
        let call = unsafe { &*self.call.0.get() };
        if let Some(f) = &call.callback {
            visit.call(f)?;
        }
        if let Some(a) = &call.args {
            visit.call(a)?;
        }
        Ok(())
    }

    /// Let go of the callback and its arguments: when a closing loop drops
    /// the handle unrun. The caller drops what is returned.
    pub(crate) fn release(&self, py: Python<'_>) -> (Option<Py<PyAny>>, Option<Py<PyTuple>>) {
        self.with_call(py, |call| (call.callback.take(), call.args.take()))
    }
}

/// `h`, no longer tracked by the cycle collector (see the module docs).
pub(crate) fn untracked(h: Py<Handle>) -> Py<Handle> {
    // SAFETY: `h` is a live, fully initialised object of a collected type
    // (pyo3 classes always are); untracking only takes it out of the
    // collector's generation lists, and pyo3's dealloc untracks again,
    // which CPython allows for an untracked object.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(h.as_ptr().cast()) };
    h
}

/// Run the handle `h` unless it was cancelled; what it lets through
/// (`SystemExit`, `KeyboardInterrupt`) is returned. The handle lets go of
/// its callback and arguments as it runs them (see the module docs).
pub(crate) fn run(h: &Bound<'_, Handle>) -> Option<PyErr> {
    let py = h.py();
    let this = h.get();
    let taken = this.with_call(py, |call| {
        if call.cancelled {
            return None;
        }
        Some((call.callback.take()?, call.args.take()?))
    });
    let (callback, args) = match taken {
        Some((f, a)) => (f.into_bound(py), a.into_bound(py)),
        None => return None,
    };
    let context = this.context.bind(py);
    let outcome = context::run(context, &callback, &args);
    let err = outcome.err()?;
    if is_escape(py, &err) {
        return Some(err);
    }
    report(h, &callback, &args, err);
    None
}

/// asyncio's report of a callback's exception: `Exception in callback
/// <callback>(<args>) at <file>:<line>`, with `exception` and `handle`.
fn report(
    h: &Bound<'_, Handle>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    err: PyErr,
) {
    let py = h.py();
    let reported = (|| -> PyResult<()> {
        let cb = format_callback(py, callback, args)?;
        let ctx = PyDict::new(py);
        ctx.set_item("message", format!("Exception in callback {cb}"))?;
        ctx.set_item("exception", err.value(py))?;
        ctx.set_item("handle", h)?;
        let lp = h.get().loop_(py)?;
        if lp.is_none() {
            return Err(err.clone_ref(py));
        }
        lp.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        Ok(())
    })();
    if let Err(e) = reported {
        e.write_unraisable(py, Some(h.as_any()));
    }
}

/// asyncio's `format_helpers._format_callback_source(callback, args)`.
fn format_callback(
    py: Python<'_>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<String> {
    static F: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    F.import(py, "asyncio.format_helpers", "_format_callback_source")?
        .call1((callback, args))?
        .extract()
}

#[pymethods]
impl Handle {
    /// Cancel the callback: it will not run. Idempotent.
    fn cancel(&self, py: Python<'_>) {
        let released = self.with_call(py, |call| {
            call.cancelled = true;
            // As asyncio: let go of what the callback holds at once.
            (call.callback.take(), call.args.take())
        });
        drop(released);
    }

    fn cancelled(&self, py: Python<'_>) -> bool {
        self.with_call(py, |call| call.cancelled)
    }

    /// The `contextvars.Context` the callback runs in.
    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    /// Run the callback now (what the loop does); exceptions are reported
    /// to the loop's exception handler, as asyncio's `Handle._run()` does.
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        match run(slf) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    #[getter]
    fn _cancelled(&self, py: Python<'_>) -> bool {
        self.with_call(py, |call| call.cancelled)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.with_call(py, |call| call.callback.as_ref().map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.with_call(py, |call| call.args.as_ref().map(|a| a.clone_ref(py)))
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.loop_(py).map(Bound::unbind)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (cancelled, callee) = self.with_call(py, |call| {
            let callee = match (&call.callback, &call.args) {
                (Some(f), Some(a)) => Some((f.clone_ref(py), a.clone_ref(py))),
                _ => None,
            };
            (call.cancelled, callee)
        });
        let mut info = vec!["Handle".to_owned()];
        if cancelled {
            info.push("cancelled".to_owned());
        }
        if let Some((f, a)) = callee {
            info.push(format_callback(py, f.bind(py), a.bind(py))?);
        }
        Ok(format!("<{}>", info.join(" ")))
    }
}
