//! [`ThreadBound`]: a `!Send` value inside a Python object that any thread
//! may hold, drop or garbage-collect.

use std::mem::ManuallyDrop;
use std::thread::{self, ThreadId};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

thread_local! {
    /// This thread's id, read once: `thread::current()` clones an `Arc`
    /// (two atomic operations) on every call, and `get` is on the path of
    /// every transport write.
    static THREAD: ThreadId = thread::current().id();
}

#[inline]
fn current_thread() -> ThreadId {
    THREAD.with(|id| *id)
}

/// A value usable only on the thread that made it.
///
/// pyo3's `#[pyclass(unsendable)]` does the access check too, but it turns a
/// call from another thread into a `PanicException` and reports a drop on
/// another thread as an unraisable error. Both happen to correct programs:
/// Python's garbage collector runs on whichever thread allocates, so a
/// closed loop caught in a reference cycle is routinely freed elsewhere.
/// Here a call from another thread is a `RuntimeError` (asyncio's own
/// message in debug mode), and a drop on another thread leaks the value
/// silently: a oneloop `Loop` is `Rc`-based and must not be touched there.
/// `RustLoop.close()` drops the loop on its own thread, so only a loop that
/// was never closed can leak.
pub(crate) struct ThreadBound<T> {
    thread: ThreadId,
    value: ManuallyDrop<T>,
}

// SAFETY: the value is reached only through `get`, which checks that the
// caller is on the owning thread, and dropped only on that thread (`Drop`
// leaks it elsewhere). So the `!Send`/`!Sync` value itself never crosses
// threads; only this checked box does.
unsafe impl<T> Send for ThreadBound<T> {}
// SAFETY: as above: a shared reference from another thread can only fail
// the check in `get`.
unsafe impl<T> Sync for ThreadBound<T> {}

impl<T> ThreadBound<T> {
    pub(crate) fn new(value: T) -> ThreadBound<T> {
        ThreadBound {
            thread: current_thread(),
            value: ManuallyDrop::new(value),
        }
    }

    /// Whether the caller is on the owning thread.
    #[inline]
    pub(crate) fn is_home(&self) -> bool {
        current_thread() == self.thread
    }

    /// The value, on the owning thread; `RuntimeError` elsewhere.
    pub(crate) fn get(&self) -> PyResult<&T> {
        if self.is_home() {
            Ok(&self.value)
        } else {
            Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one \
                 (a oneloop loop belongs to the thread that created it)",
            ))
        }
    }
}

impl<T> Drop for ThreadBound<T> {
    fn drop(&mut self) {
        if self.is_home() {
            // SAFETY: dropped exactly once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
        // Elsewhere: leaked on purpose (see the type's docs).
    }
}
