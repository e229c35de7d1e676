//! Attached mode for a Rust program that embeds Python and passes its own
//! [`Loop`]: Python's asyncio code and the program's Rust code on one loop,
//! any host, one thread.
//!
//! The program links this crate (as a Rust library, not the wheel's
//! extension), so that Python's `oneloop._oneloop` is this crate's code,
//! sharing the program's `oneloop`: register the module before the
//! interpreter starts, then make an event loop for Python on the `Loop`:
//!
//! ```no_run
//! use pyo3::prelude::*;
//!
//! oneloop_python::embed::append_to_inittab(); // before the interpreter starts
//! Python::initialize();
//! let lp = oneloop::Loop::new()?; // or any adapter's loop, owned or attached
//! Python::attach(|py| -> PyResult<()> {
//!     // `oneloop/` (the package's Python files) must be importable.
//!     let aloop = oneloop_python::embed::event_loop(py, &lp)?;
//!     aloop.call_method1("create_task", (py.eval(c"asyncio.sleep(0)", None, None)?,))?;
//!     Ok(())
//! })?;
//! lp.run_forever()?; // the program runs its loop (not inside Python::attach:
//!                    // the loop takes the GIL for each batch of callbacks)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The Python loop behaves as glib's attached loop does (see
//! `docs/python.md`): it is running from creation until `close()` on the
//! thread that made it (`asyncio.get_running_loop()` returns it, in Rust
//! callbacks too), its `run_forever`/`run_until_complete` raise (the
//! program runs the loop), `stop()` does nothing, and a `KeyboardInterrupt`
//! or `SystemExit` out of a Python callback goes to its exception handler
//! (it cannot unwind into the program). `close()` detaches from the `Loop`
//! and leaves it open: the Python side's fd watches, transports and run
//! context are removed; the program closes its loop itself.

use oneloop::Loop;
use pyo3::intern;
use pyo3::prelude::*;

use crate::errors::Escapes;
use crate::rust_loop::RustLoop;

/// Register `oneloop._oneloop` (this crate) as a built-in module of the
/// interpreter the program is about to start, so that `import oneloop`
/// in that interpreter uses this crate and the program's `oneloop`.
///
/// # Panics
/// If the interpreter is already running (CPython reads the table of
/// built-in modules once, at start).
pub fn append_to_inittab() {
    // SAFETY: CPython's table of built-in modules may be extended before
    // the interpreter starts, which the check makes sure of; the name is a
    // 'static C string and the init function is the one pyo3 generated for
    // this crate's module.
    unsafe {
        assert!(
            pyo3::ffi::Py_IsInitialized() == 0,
            "append_to_inittab must be called before the Python interpreter starts"
        );
        pyo3::ffi::PyImport_AppendInittab(
            c"oneloop._oneloop".as_ptr(),
            Some(crate::_oneloop::__pyo3_init),
        );
    }
}

/// An asyncio event loop (`oneloop.OneloopEventLoop`) on `lp`, the
/// program's own loop, attached to it (see the module docs). Call it on
/// the loop's thread.
///
/// # Errors
/// If `oneloop` cannot be imported, if `lp` is closed, or if another event
/// loop is running on this thread.
pub fn event_loop<'py>(py: Python<'py>, lp: &Loop) -> PyResult<Bound<'py, PyAny>> {
    let host = lp.backend_name().to_owned();
    let rust = RustLoop::from_parts(py, lp.clone(), &host, Escapes::Report, true)?;
    py.import(intern!(py, "oneloop._loop"))?
        .getattr(intern!(py, "OneloopEventLoop"))?
        .call_method1(intern!(py, "_adopt"), (rust,))
}
