//! [`RustLoop`]: a oneloop [`Loop`] as the Python package sees it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{BorrowedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use oneloop::{Loop, PanicPolicy, RemoteLoop, TimerHandle};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;

use crate::clock::Clock;
use crate::errors::{Escape, escape, to_py};
use crate::hosts;

/// The asyncio handles of the fd callbacks, by fd: `[reader, writer]`.
///
/// Kept here rather than in the oneloop closures so that Python's garbage
/// collector can see them ([`RustLoop::__traverse__`]): a reader's handle
/// usually leads back to the loop (the self-pipe reader is a bound method of
/// it), and a reference the collector cannot see would keep an unclosed
/// loop alive forever.
type FdSlots = HashMap<RawFd, [Option<Py<PyAny>>; 2]>;

const READ: usize = 0;
const WRITE: usize = 1;

/// Handles queued by `call_soon_threadsafe` from other threads, in order.
///
/// oneloop's own `RemoteLoop::call_soon_threadsafe` joins the ready queue
/// only at the loop's next iteration, so a call made on another thread
/// *before* a `call_soon` on the loop's thread (ordered by a lock, say) would
/// run *after* it. asyncio appends both to one deque, in happens-before
/// order, and CPython's `test_call_soon_threadsafe` checks it. So
/// threadsafe handles wait here, and the loop thread moves them into the
/// ready queue before each `call_soon` of its own, or when the drain posted
/// through oneloop's inbox (which also wakes the loop) runs first.
#[derive(Debug, Default)]
struct Inbox {
    queue: Mutex<VecDeque<Py<PyAny>>>,
    /// `queue` is non-empty: lets `call_soon` skip the lock.
    pending: AtomicBool,
}

impl Inbox {
    fn take(&self) -> VecDeque<Py<PyAny>> {
        if !self.pending.load(Ordering::Acquire) {
            return VecDeque::new();
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *q)
    }

    /// Queue `handle`; true if the queue was empty (a drain must be posted).
    fn push(&self, handle: Py<PyAny>) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(handle);
        !self.pending.swap(true, Ordering::AcqRel)
    }
}

/// Run the threadsafe handles waiting in `inbox`, in order, one at a time
/// (a `KeyboardInterrupt` in one leaves the rest queued, with a drain
/// posted for the next run).
fn drain_inbox(inbox: &Arc<Inbox>, remote: &RemoteLoop) {
    let taken = inbox.take();
    let mut rest = taken.into_iter();
    struct Requeue<'a, I: Iterator<Item = Py<PyAny>>>(&'a mut I, &'a Arc<Inbox>, &'a RemoteLoop);
    impl<I: Iterator<Item = Py<PyAny>>> Drop for Requeue<'_, I> {
        fn drop(&mut self) {
            let left: Vec<Py<PyAny>> = self.0.collect();
            if left.is_empty() {
                return;
            }
            let mut q = self.1.queue.lock().unwrap_or_else(|e| e.into_inner());
            for h in left.into_iter().rev() {
                q.push_front(h);
            }
            self.1.pending.store(true, Ordering::Release);
            drop(q);
            let (inbox, remote) = (self.1.clone(), self.2.clone());
            let again = remote.clone();
            let _ = remote.call_soon_threadsafe(move || drain_inbox(&inbox, &again));
        }
    }
    let guard = Requeue(&mut rest, inbox, remote);
    while let Some(h) = guard.0.next() {
        run_handle(h);
    }
}

/// A oneloop loop on one host, driven by `oneloop.OneloopEventLoop`.
///
/// Every method is for the loop's own thread (the class is `unsendable`:
/// pyo3 refuses a call from another thread); other threads use
/// [`remote`](RustLoop::remote).
#[pyclass(unsendable, module = "oneloop._oneloop")]
pub struct RustLoop {
    lp: Loop,
    host: String,
    clock: Clock,
    fds: Rc<RefCell<FdSlots>>,
    inbox: Arc<Inbox>,
    /// A `weakref.ref` to the Python loop, to tell it about a cancelled fd
    /// handle (as asyncio's `_process_events` does) without a cycle.
    owner: Rc<RefCell<Option<Py<PyAny>>>>,
}

impl std::fmt::Debug for RustLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustLoop")
            .field("host", &self.host)
            .field("loop", &self.lp)
            .finish_non_exhaustive()
    }
}

/// The oneloop timer behind one asyncio `TimerHandle`.
#[pyclass(unsendable, module = "oneloop._oneloop")]
#[derive(Debug)]
pub struct Timer(TimerHandle);

#[pymethods]
impl Timer {
    /// Cancel the timer: its closure (and the Python handle in it) is dropped now.
    fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether the timer was cancelled before it fired.
    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

/// The thread-safe half of a [`RustLoop`]: usable from any thread.
#[pyclass(frozen, module = "oneloop._oneloop")]
#[derive(Debug)]
pub struct Remote {
    remote: RemoteLoop,
    inbox: Arc<Inbox>,
}

#[pymethods]
impl Remote {
    /// Queue the asyncio `handle` on the loop's thread and wake the loop:
    /// the same FIFO as `call_soon`, in happens-before order (see [`Inbox`]).
    fn call_soon_threadsafe(&self, handle: Py<PyAny>) -> PyResult<()> {
        if self.remote.is_closed() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        if self.inbox.push(handle) {
            let (inbox, remote) = (self.inbox.clone(), self.remote.clone());
            self.remote
                .call_soon_threadsafe(move || drain_inbox(&inbox, &remote))
                .map_err(to_py)?;
        }
        Ok(())
    }

    /// Stop the loop from any thread.
    fn stop(&self) -> PyResult<()> {
        self.remote.stop().map_err(to_py)
    }
}

/// Run an asyncio `Handle` unless it was cancelled.
///
/// `Handle._run()` reports an `Exception` to the loop's exception handler
/// itself, with asyncio's context (`message`, `exception`, `handle`); what
/// it lets through leaves the run (see [`Escape`]).
fn run_handle(handle: Py<PyAny>) {
    let failed = Python::attach(move |py| {
        let h = handle.bind(py);
        if is_cancelled(py, h) {
            return None;
        }
        let err = h.call_method0(intern!(py, "_run")).err();
        drop(handle);
        err
    });
    if let Some(err) = failed {
        escape(err);
    }
}

fn is_cancelled(py: Python<'_>, h: &Bound<'_, PyAny>) -> bool {
    h.getattr(intern!(py, "_cancelled"))
        .and_then(|c| c.is_truthy())
        .unwrap_or(false)
}

/// An fd is ready: run its current handle, or drop a cancelled one from the
/// Python loop's selector as asyncio's `_process_events` does.
fn fd_ready(
    fds: &Weak<RefCell<FdSlots>>,
    owner: &Weak<RefCell<Option<Py<PyAny>>>>,
    fd: RawFd,
    dir: usize,
) {
    let failed = Python::attach(|py| {
        let fds = fds.upgrade()?;
        let handle = fds.borrow().get(&fd)?[dir].as_ref()?.clone_ref(py);
        drop(fds);
        let h = handle.bind(py);
        if is_cancelled(py, h) {
            let owner = owner.upgrade()?;
            let lp = owner.borrow().as_ref()?.bind(py).call0().ok()?;
            if lp.is_none() {
                return None;
            }
            let method = if dir == READ {
                intern!(py, "_remove_reader")
            } else {
                intern!(py, "_remove_writer")
            };
            return lp.call_method1(method, (fd,)).err();
        }
        h.call_method0(intern!(py, "_run")).err()
    });
    if let Some(err) = failed {
        escape(err);
    }
}

/// Lets the `!Send` loop cross into [`Python::detach`]'s closure.
struct Unsync<T>(T);

// SAFETY: `detach` runs its closure synchronously on the calling thread
// (it only releases the GIL around it), so the value never reaches
// another thread.
unsafe impl<T> Send for Unsync<T> {}

impl<T> Unsync<T> {
    fn get(&self) -> &T {
        &self.0
    }
}

fn borrow_fd(fd: RawFd) -> PyResult<BorrowedFd<'static>> {
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    // SAFETY: `fd` is not -1 (BorrowedFd's niche). oneloop uses the number
    // only for the duration of the call (fstat, then the host's watch
    // call); an fd that is not open fails there with an error, never UB.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

#[pymethods]
impl RustLoop {
    /// A new owned loop on `host` (see `oneloop.HOSTS`).
    #[new]
    fn new(py: Python<'_>, host: &str) -> PyResult<RustLoop> {
        let lp = match hosts::new_loop(host) {
            Some(lp) => lp.map_err(to_py)?,
            None => {
                return Err(PyValueError::new_err(format!(
                    "unknown oneloop host {host:?}; this build has {:?}",
                    hosts::available()
                )));
            }
        };
        // SystemExit and KeyboardInterrupt end the run after their callback,
        // the rest of the batch kept (asyncio's rule, oneloop's ER-04).
        lp.set_panic_policy(PanicPolicy::Propagate);
        let secs: f64 = py
            .import(intern!(py, "time"))?
            .getattr(intern!(py, "monotonic"))?
            .call0()?
            .extract()?;
        let clock = Clock::new(lp.time(), secs);
        Ok(RustLoop {
            lp,
            host: host.to_owned(),
            clock,
            fds: Rc::default(),
            inbox: Arc::default(),
            owner: Rc::default(),
        })
    }

    /// Remember the Python loop (a `weakref.ref` to it).
    fn set_owner(&self, owner: Py<PyAny>) {
        *self.owner.borrow_mut() = Some(owner);
    }

    /// The host this loop runs on.
    #[getter]
    fn host(&self) -> &str {
        &self.host
    }

    /// oneloop's name for the backend (`"native"`, `"tokio"`, …).
    #[getter]
    fn backend_name(&self) -> &str {
        self.lp.backend_name()
    }

    /// The loop's clock in asyncio seconds (`loop.time()`).
    fn time(&self) -> f64 {
        self.clock.secs(self.lp.time())
    }

    /// How late the host may dispatch a timer by its own rounding, in seconds.
    fn clock_resolution(&self) -> f64 {
        self.lp.clock_resolution().as_secs_f64()
    }

    /// Queue the asyncio `handle` (FIFO, next iteration).
    fn call_soon(&self, handle: Py<PyAny>) -> PyResult<()> {
        for earlier in self.inbox.take() {
            self.lp
                .call_soon_detached(move || run_handle(earlier))
                .map_err(to_py)?;
        }
        self.lp
            .call_soon_detached(move || run_handle(handle))
            .map_err(to_py)
    }

    /// Run the asyncio `handle` at `when` (asyncio seconds), never earlier.
    fn call_at(&self, when: f64, handle: Py<PyAny>) -> PyResult<Timer> {
        self.lp
            .call_at(self.clock.instant(when), move || run_handle(handle))
            .map(Timer)
            .map_err(to_py)
    }

    /// Run the asyncio `handle` whenever `fd` is readable (level-triggered),
    /// replacing a previous reader of `fd`.
    fn add_reader(&self, py: Python<'_>, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.add_fd(py, fd, READ, handle)
    }

    /// Run the asyncio `handle` whenever `fd` is writable.
    fn add_writer(&self, py: Python<'_>, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.add_fd(py, fd, WRITE, handle)
    }

    /// Stop watching `fd` for reading; whether a reader was registered.
    fn remove_reader(&self, py: Python<'_>, fd: RawFd) -> PyResult<bool> {
        self.remove_fd(py, fd, READ)
    }

    /// Stop watching `fd` for writing; whether a writer was registered.
    fn remove_writer(&self, py: Python<'_>, fd: RawFd) -> PyResult<bool> {
        self.remove_fd(py, fd, WRITE)
    }

    /// The thread-safe handle.
    fn remote(&self) -> Remote {
        Remote {
            remote: self.lp.remote(),
            inbox: self.inbox.clone(),
        }
    }

    /// Run until `stop()`, with the GIL released while the host waits.
    ///
    /// Raises what a callback let escape (`SystemExit`, `KeyboardInterrupt`),
    /// after the loop was put back in a state where it can run again.
    fn run_forever(&self, py: Python<'_>) -> PyResult<()> {
        let lp = Unsync(self.lp.clone());
        let outcome = py.detach(move || {
            let lp = lp;
            catch_unwind(AssertUnwindSafe(|| lp.get().run_forever()))
        });
        match outcome {
            Ok(result) => result.map_err(to_py),
            Err(payload) => match payload.downcast::<Escape>() {
                Ok(escaped) => Err(escaped.0),
                // A Rust panic (a bug here or in oneloop): let pyo3 turn it
                // into a PanicException at the call boundary.
                Err(other) => resume_unwind(other),
            },
        }
    }

    /// Stop after the current batch of callbacks.
    fn stop(&self) {
        self.lp.stop();
    }

    /// Whether the Rust loop is inside a run.
    fn is_running(&self) -> bool {
        self.lp.is_running()
    }

    /// Whether the Rust loop was closed.
    fn is_closed(&self) -> bool {
        self.lp.is_closed()
    }

    /// Close the loop: queued callbacks and timers are dropped unrun, fds
    /// unwatched, the host released.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.lp.close().map_err(to_py)?;
        // Dropped here, with the GIL held: the Python handles go at once.
        let slots = std::mem::take(&mut *self.fds.borrow_mut());
        let threadsafe = self.inbox.take();
        drop((slots, threadsafe));
        let _ = py;
        Ok(())
    }

    /// Debug counters: `(ready, timers, fds, tasks)`.
    fn stats(&self) -> (usize, usize, usize, usize) {
        let s = self.lp.stats();
        (s.ready, s.timers, s.fds, s.tasks)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_borrow: a collection may start while a method holds the borrow.
        if let Ok(fds) = self.fds.try_borrow() {
            for h in fds.values().flatten().flatten() {
                visit.call(h)?;
            }
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        if !self.lp.is_running() {
            let fds: Vec<RawFd> = self.fds.borrow().keys().copied().collect();
            for fd in fds {
                if let Ok(bfd) = borrow_fd(fd) {
                    self.lp.remove_reader(bfd);
                    self.lp.remove_writer(bfd);
                }
            }
        }
        if let Ok(mut fds) = self.fds.try_borrow_mut() {
            fds.clear();
        }
    }
}

impl RustLoop {
    fn add_fd(&self, py: Python<'_>, fd: RawFd, dir: usize, handle: Py<PyAny>) -> PyResult<()> {
        let bfd = borrow_fd(fd)?;
        if self.lp.is_closed() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        let old = {
            let mut fds = self.fds.borrow_mut();
            fds.entry(fd).or_default()[dir].replace(handle)
        };
        let (slots, owner) = (Rc::downgrade(&self.fds), Rc::downgrade(&self.owner));
        let cb = move || fd_ready(&slots, &owner, fd, dir);
        let added = if dir == READ {
            self.lp.add_reader(bfd, cb)
        } else {
            self.lp.add_writer(bfd, cb)
        };
        if let Err(e) = added {
            let mut fds = self.fds.borrow_mut();
            if let Some(slot) = fds.get_mut(&fd) {
                slot[dir] = old;
                if slot.iter().all(Option::is_none) {
                    fds.remove(&fd);
                }
            }
            return Err(to_py(e));
        }
        // Dropped with the GIL held and no borrow of the slots.
        drop(old);
        let _ = py;
        Ok(())
    }

    fn remove_fd(&self, py: Python<'_>, fd: RawFd, dir: usize) -> PyResult<bool> {
        let bfd = borrow_fd(fd)?;
        let old = {
            let mut fds = self.fds.borrow_mut();
            let old = fds.get_mut(&fd).and_then(|slot| slot[dir].take());
            if fds.get(&fd).is_some_and(|s| s.iter().all(Option::is_none)) {
                fds.remove(&fd);
            }
            old
        };
        let removed = if dir == READ {
            self.lp.remove_reader(bfd)
        } else {
            self.lp.remove_writer(bfd)
        };
        drop(old);
        let _ = py;
        Ok(removed)
    }
}
