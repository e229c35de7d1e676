//! [`HoldGil`]: each batch of callbacks runs with the GIL held once, and
//! the host waits with it released.
//!
//! A loop's `run_forever` releases the GIL for the whole run, so that other
//! Python threads run while the host waits in epoll, GLib, tokio or
//! calloop. Without this context every callback, fd callback and transport
//! event would take the GIL again and give it back (`PyGILState_Ensure`
//! and `_Release`: a mutex, a condition variable and a thread-state swap
//! each time). oneloop enters its run contexts around every batch it
//! dispatches, and only around a batch: the host's blocking wait is outside.
//! So this one is the hook around the wait: the GIL is taken once per loop
//! iteration, and the `Python::attach` of each callback inside finds it held
//! (a thread-local counter, no lock).
//!
//! Python threads still run during a long batch: the interpreter hands the
//! GIL over every `sys.getswitchinterval()` while Python code runs, as it
//! does on asyncio's own loop (which holds the GIL except in `select`).

use oneloop::RunContext;
use pyo3::Python;

/// The run context that holds the GIL around a batch (see the module docs).
#[derive(Debug)]
pub(crate) struct HoldGil;

impl RunContext for HoldGil {
    fn enter(&self, run: &mut dyn FnMut()) {
        Python::attach(|_py| run());
    }

    fn name(&self) -> &str {
        "oneloop-python: GIL held per batch"
    }
}
