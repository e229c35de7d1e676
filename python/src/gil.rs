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
//!
//! On a loop this module owns, the context also shows the batch's
//! `call_soon` closures where their handles are ([`Soon`], [`run_next_soon`]).

use std::cell::Cell;
use std::rc::{Rc, Weak};

use oneloop::RunContext;
use pyo3::Python;

use crate::pending::Soon;
use crate::rust_loop::run_parked;

thread_local! {
    /// The [`Soon`] of the batch running on this thread, or null: set by
    /// [`HoldGil::enter`] for its batch (with the GIL held), put back as it
    /// was after (batches of two loops may nest: a callback of one may
    /// iterate another's host loop).
    static CURRENT: Cell<*const Soon> = const { Cell::new(std::ptr::null()) };
}

/// The run context that holds the GIL around a batch (see the module docs).
#[derive(Debug)]
pub(crate) struct HoldGil {
    /// The loop's `call_soon` handles, on a loop this module owns.
    soon: Option<Weak<Soon>>,
}

impl HoldGil {
    pub(crate) fn new(soon: Option<&Rc<Soon>>) -> HoldGil {
        HoldGil {
            soon: soon.map(Rc::downgrade),
        }
    }
}

/// Puts [`CURRENT`] back as it was, also when a callback unwinds.
struct Restore(*const Soon);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

impl RunContext for HoldGil {
    fn enter(&self, run: &mut dyn FnMut()) {
        Python::attach(|_py| {
            // Held for the batch: the pointer in CURRENT stays valid. Null
            // for a loop without a queue (a Rust program's) or whose queue
            // is gone: closures then take nothing, never an outer batch's
            // loop's handles.
            let soon = self.soon.as_ref().and_then(Weak::upgrade);
            let ptr = soon.as_ref().map_or(std::ptr::null(), Rc::as_ptr);
            let _restore = Restore(CURRENT.replace(ptr));
            run();
        });
    }

    fn name(&self) -> &str {
        "oneloop-python: GIL held per batch"
    }
}

/// What a `call_soon` closure does on a loop this module owns: run the
/// front handle of its loop's [`Soon`] (see there).
pub(crate) fn run_next_soon() {
    let ptr = CURRENT.get();
    if ptr.is_null() {
        return;
    }
    // SAFETY: CURRENT is non-null only inside `HoldGil::enter` of the
    // batch that runs this closure, which holds an `Rc` to that `Soon`
    // until it returns (and `Restore` puts the outer value back before).
    let soon = unsafe { &*ptr };
    let Some(parked) = soon.pop() else { return };
    // SAFETY: the same `enter` holds the GIL (`Python::attach`) around the
    // whole batch, this closure included.
    let py = unsafe { Python::assume_attached() };
    run_parked(py, parked, soon.escapes());
}
