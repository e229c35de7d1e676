//! [`RustLoop`]: a oneloop [`Loop`] as the Python package sees it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{BorrowedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use oneloop::{Loop, PanicPolicy, RemoteLoop, RunContext, TimerHandle};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::clock::Clock;
use crate::datagram::RustDatagram;
use crate::errors::{Escape, Escapes, escape, report_escape, to_py};
use crate::gil::{self, HoldGil};
use crate::handle::{self, Handle};
use crate::hosts;
use crate::pending::{Parked, Pending, Soon};
use crate::registry::Registry;
use crate::signals::Signals;
use crate::stream::{Kind, RustStream};
use crate::thread_bound::ThreadBound;

/// The asyncio handles of the fd callbacks, by fd: `[reader, writer]`.
///
/// Kept here rather than in the oneloop closures so that Python's garbage
/// collector can see them ([`RustLoop::__traverse__`]): a reader's handle
/// usually leads back to the loop (the self-pipe reader is a bound method of
/// it), and a reference the collector cannot see would keep an unclosed
/// loop alive forever.
type FdSlots = HashMap<RawFd, FdSlot>;

/// One watched fd number: its handles, and which open file it was when
/// they were added.
#[derive(Default)]
struct FdSlot {
    handles: [Option<Py<PyAny>>; 2],
    /// `(st_dev, st_ino)` at the first add: epoll watches an open file, but
    /// GLib polls a number and tokio watches a duplicate, so a number closed
    /// and reused behind the loop's back is only noticed by comparing this.
    file: Option<FileId>,
}

impl FdSlot {
    fn is_empty(&self) -> bool {
        self.handles.iter().all(Option::is_none)
    }
}

/// Which open file an fd number refers to.
type FileId = (u64, u64);

/// The file `fd` refers to now, or `None` if it is not open.
fn file_id(fd: RawFd) -> Option<FileId> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the buffer we pass, which is
    // valid for writes of its size; on failure (EBADF) it writes nothing
    // and we do not read it.
    let rc = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it initialised the buffer.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ by target
    Some((st.st_dev as u64, st.st_ino as u64))
}

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
#[derive(Debug)]
struct Inbox {
    queue: Mutex<VecDeque<Py<PyAny>>>,
    /// `queue` is non-empty: lets `call_soon` skip the lock.
    pending: AtomicBool,
    /// The loop's mode, for the handles run from here.
    escapes: Escapes,
}

impl Inbox {
    fn new(escapes: Escapes) -> Inbox {
        Inbox {
            queue: Mutex::default(),
            pending: AtomicBool::new(false),
            escapes,
        }
    }

    /// Whether threadsafe handles are waiting (one atomic load).
    fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    fn take(&self) -> VecDeque<Py<PyAny>> {
        if !self.has_pending() {
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

/// Run the threadsafe handles waiting in `inbox`, in order, one at a time.
fn drain_inbox(inbox: &Arc<Inbox>, remote: &RemoteLoop) {
    let mut rest = inbox.take();
    let guard = Requeue {
        rest: &mut rest,
        inbox,
        remote,
    };
    while let Some(h) = guard.rest.pop_front() {
        run_handle(h, inbox.escapes);
    }
}

/// If a handle lets `KeyboardInterrupt` out of [`drain_inbox`], the handles
/// after it go back to the front of the inbox, with a drain posted for the
/// next run: asyncio keeps them too.
struct Requeue<'a> {
    rest: &'a mut VecDeque<Py<PyAny>>,
    inbox: &'a Arc<Inbox>,
    remote: &'a RemoteLoop,
}

impl Drop for Requeue<'_> {
    fn drop(&mut self) {
        if self.rest.is_empty() {
            return;
        }
        let mut q = self.inbox.queue.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(h) = self.rest.pop_back() {
            q.push_front(h);
        }
        self.inbox.pending.store(true, Ordering::Release);
        drop(q);
        let (inbox, remote) = (self.inbox.clone(), self.remote.clone());
        let _ = self
            .remote
            .call_soon_threadsafe(move || drain_inbox(&inbox, &remote));
    }
}

/// A oneloop loop on one host, driven by `oneloop.OneloopEventLoop`.
///
/// Every method but the getters is for the loop's own thread and raises
/// `RuntimeError` elsewhere; other threads use its `remote()`.
#[pyclass(frozen, module = "oneloop._oneloop")]
pub struct RustLoop {
    host: String,
    escapes: Escapes,
    backend: String,
    clock: Clock,
    inbox: Arc<Inbox>,
    /// `None` once closed: the loop is dropped by `close()`, on its thread.
    state: ThreadBound<RefCell<Option<State>>>,
}

/// What only the loop's thread may touch.
struct State {
    lp: Loop,
    fds: Rc<RefCell<FdSlots>>,
    /// The handles of queued callbacks and timers (see `pending`).
    pending: Rc<Pending>,
    /// The handles of `call_soon`, on a loop this module owns (see
    /// `pending::Soon`); `None` on a Rust program's own loop.
    soon: Option<Rc<Soon>>,
    /// A `weakref.ref` to the Python loop, to tell it about a cancelled fd
    /// handle (as asyncio's `_process_events` does) without a cycle.
    owner: Rc<RefCell<Option<Py<PyAny>>>>,
    /// The Python objects of live transports (see `registry`).
    transports: Rc<Registry>,
    /// The asyncio handles of `add_signal_handler` (see `signals`).
    signals: Signals,
    /// `Some` when the `Loop` belongs to the Rust program that embeds Python
    /// (see `embed`): closing then detaches (this run context removed, the
    /// fd watches and transports of Python code ended) instead of closing it.
    borrowed: Option<Rc<dyn RunContext>>,
}

impl State {
    /// Leave a borrowed loop as Python found it: no watch, no transport and
    /// no run context of ours (queued Python callbacks find nothing to run
    /// once the pending table is dropped).
    fn detach(&self, py: Python<'_>) {
        let Some(ctx) = &self.borrowed else { return };
        let fds: Vec<RawFd> = self
            .fds
            .try_borrow()
            .map(|f| f.keys().copied().collect())
            .unwrap_or_default();
        for fd in fds {
            if let Ok(bfd) = borrow_fd(fd) {
                self.lp.remove_reader(bfd);
                self.lp.remove_writer(bfd);
            }
        }
        for obj in self.transports.take_all() {
            let aborted = obj
                .bind(py)
                .getattr(intern!(py, "_rs"))
                .and_then(|rs| rs.call_method0(intern!(py, "abort")));
            if let Err(e) = aborted {
                e.write_unraisable(py, Some(obj.bind(py)));
            }
        }
        self.lp.remove_run_context(ctx);
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if self.borrowed.is_some() {
            Python::attach(|py| self.detach(py));
        }
    }
}

impl std::fmt::Debug for RustLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustLoop")
            .field("host", &self.host)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The oneloop timer behind one asyncio `TimerHandle`.
#[pyclass(module = "oneloop._oneloop")]
pub struct Timer(ThreadBound<TimerHandle>);

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").finish_non_exhaustive()
    }
}

#[pymethods]
impl Timer {
    /// Cancel the timer: its closure (and the Python handle in it) is dropped now.
    fn cancel(&self) -> PyResult<()> {
        self.0.get()?.cancel();
        Ok(())
    }

    /// Whether the timer was cancelled before it fired.
    fn cancelled(&self) -> PyResult<bool> {
        Ok(self.0.get()?.cancelled())
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

    /// Stop the loop from any thread. A closed loop has nothing to stop:
    /// nothing happens, as asyncio's `stop()` (a flag) never raises.
    fn stop(&self) -> PyResult<()> {
        match self.remote.stop() {
            Err(e) if e.kind() == oneloop::ErrorKind::Closed => Ok(()),
            other => other.map_err(to_py),
        }
    }
}

thread_local! {
    /// How many asyncio callbacks are running on this thread right now:
    /// `close()` of an attached loop is refused inside one (asyncio cannot
    /// close a running loop either; oneloop refuses too, LC-10, but only
    /// after the Python half would have closed).
    static IN_CALLBACK: Cell<usize> = const { Cell::new(0) };
}

/// Counts one running callback in [`IN_CALLBACK`], also across an unwind;
/// only on attached loops (the only ones whose `close()` asks), so that an
/// owned loop's callbacks skip the thread-local.
///
/// Entered around every call of Python code the loop makes: a handle's
/// `_run()`, and the methods of a transport's protocol (`data_received`,
/// `connection_lost` ...), which oneloop's transport calls with no handle
/// around them (`stream`, `datagram`). Not around a whole batch: on a Rust
/// program's own loop (`embed`) the batch also runs the program's Rust
/// callbacks, from which closing the Python loop is fine.
pub(crate) struct InCallback(bool);

impl InCallback {
    pub(crate) fn enter(escapes: Escapes) -> InCallback {
        let counted = escapes == Escapes::Report;
        if counted {
            IN_CALLBACK.with(|n| n.set(n.get() + 1));
        }
        InCallback(counted)
    }
}

impl Drop for InCallback {
    fn drop(&mut self) {
        if self.0 {
            IN_CALLBACK.with(|n| n.set(n.get() - 1));
        }
    }
}

/// What `Handle._run()` let through (a `BaseException`): leave the run, or
/// on an attached loop hand it to asyncio's exception handler.
pub(crate) fn on_escape(
    py: Python<'_>,
    handle: &Bound<'_, PyAny>,
    err: PyErr,
    escapes: Escapes,
) -> Option<PyErr> {
    match escapes {
        Escapes::Propagate => Some(err),
        Escapes::Report => {
            report_escape(py, handle, "handle", err);
            None
        }
    }
}

/// Run an asyncio `Handle` unless it was cancelled.
///
/// `Handle._run()` reports an `Exception` to the loop's exception handler
/// itself, with asyncio's context (`message`, `exception`, `handle`); what
/// it lets through leaves the run (see [`Escape`]) or, on an attached
/// loop, is reported too ([`Escapes`]).
pub(crate) fn run_parked(py: Python<'_>, parked: Parked, escapes: Escapes) {
    match parked {
        Parked::Ours(h) => run_ours(py, h, escapes),
        Parked::Asyncio(h) => run_handle(h, escapes),
    }
}

/// Run one of our `Handle`s (see [`run_handle`]).
fn run_ours(py: Python<'_>, handle: Py<Handle>, escapes: Escapes) {
    let failed = {
        let h = handle.bind(py);
        let _in = InCallback::enter(escapes);
        let err = handle::run(h);
        err.and_then(|e| on_escape(py, h.as_any(), e, escapes))
    };
    // With the GIL known held: no check of pyo3's thread-local.
    handle.drop_ref(py);
    if let Some(err) = failed {
        escape(err);
    }
}

fn run_handle(handle: Py<PyAny>, escapes: Escapes) {
    let failed = Python::attach(move |py| {
        let h = handle.bind(py);
        if is_cancelled(py, h) {
            return None;
        }
        let _in = InCallback::enter(escapes);
        let err = h.call_method0(intern!(py, "_run")).err();
        let out = err.and_then(|e| on_escape(py, h, e, escapes));
        drop(handle);
        out
    });
    if let Some(err) = failed {
        escape(err);
    }
}

/// Run an asyncio `TimerHandle`: as [`run_handle`], and first let go of the
/// handle's `Timer`, so that it is freed here, on the loop's thread.
fn run_timer(handle: Py<PyAny>, escapes: Escapes) {
    Python::attach(|py| {
        let _ = handle
            .bind(py)
            .setattr(intern!(py, "_oneloop_timer"), py.None());
    });
    run_handle(handle, escapes);
}

pub(crate) fn is_cancelled(py: Python<'_>, h: &Bound<'_, PyAny>) -> bool {
    h.getattr(intern!(py, "_cancelled"))
        .and_then(|c| c.is_truthy())
        .unwrap_or(false)
}

/// An fd is ready: run its current handle, or drop a cancelled one from the
/// Python loop's selector as asyncio's `_process_events` does.
///
/// An fd that was closed behind the loop's back (not open any more, or its
/// number now another file) is unwatched here, its handle not run, as epoll
/// forgets a closed file for asyncio's own loop. GLib polls the number (a
/// closed one is `POLLNVAL` on every iteration; a reused one is whatever the
/// new file is, often always writable) and tokio watches its duplicate of
/// the old file, so without this check the loop can call a stale handle in
/// a busy loop. The check is one `fstat` per ready event.
fn fd_ready(
    fds: &Weak<RefCell<FdSlots>>,
    owner: &Weak<RefCell<Option<Py<PyAny>>>>,
    fd: RawFd,
    dir: usize,
    escapes: Escapes,
) {
    let failed = Python::attach(|py| {
        let fds = fds.upgrade()?;
        let (handle, file) = {
            let fds = fds.borrow();
            let slot = fds.get(&fd)?;
            (slot.handles[dir].as_ref()?.clone_ref(py), slot.file)
        };
        drop(fds);
        let h = handle.bind(py);
        if is_cancelled(py, h) || file_id(fd) != file {
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
        let _in = InCallback::enter(escapes);
        let err = h.call_method0(intern!(py, "_run")).err();
        err.and_then(|e| on_escape(py, h, e, escapes))
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

fn closed() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

impl RustLoop {
    /// A Python loop's Rust half on `lp`: owned or attached by this module
    /// (`borrowed = false`), or a `Loop` that the Rust program embedding
    /// Python runs itself (see `embed`).
    pub(crate) fn from_parts(
        py: Python<'_>,
        lp: Loop,
        host: &str,
        escapes: Escapes,
        borrowed: bool,
    ) -> PyResult<RustLoop> {
        let soon = (!borrowed).then(|| Rc::new(Soon::new(escapes)));
        let hold: Rc<dyn RunContext> = Rc::new(HoldGil::new(soon.as_ref()));
        lp.add_run_context(hold.clone()).map_err(to_py)?;
        let secs: f64 = py
            .import(intern!(py, "time"))?
            .getattr(intern!(py, "monotonic"))?
            .call0()?
            .extract()?;
        let clock = Clock::new(lp.time(), secs);
        Ok(RustLoop {
            host: host.to_owned(),
            escapes,
            backend: lp.backend_name().to_owned(),
            clock,
            inbox: Arc::new(Inbox::new(escapes)),
            state: ThreadBound::new(RefCell::new(Some(State {
                lp,
                fds: Rc::default(),
                pending: Rc::default(),
                soon,
                owner: Rc::default(),
                transports: Rc::default(),
                signals: Signals::default(),
                borrowed: borrowed.then_some(hold),
            }))),
        })
    }

    /// Queue `handle` on the ready queue, after the threadsafe handles
    /// that were queued before it (see [`Inbox`]).
    fn queue(&self, s: &State, handle: Parked) -> PyResult<()> {
        if self.inbox.has_pending() {
            for earlier in self.inbox.take() {
                self.queue_one(s, Parked::Asyncio(earlier))?;
            }
        }
        self.queue_one(s, handle)
    }

    fn queue_one(&self, s: &State, handle: Parked) -> PyResult<()> {
        if let Some(soon) = &s.soon {
            // A closure that captures nothing: no allocation (see `Soon`).
            return match s.lp.call_soon_detached(gil::run_next_soon) {
                Ok(()) => {
                    soon.push(handle);
                    Ok(())
                }
                Err(e) => {
                    handle.dropped_unrun();
                    Err(to_py(e))
                }
            };
        }
        let escapes = self.escapes;
        let queued = s.pending.park(handle);
        s.lp.call_soon_detached(move || {
            if let Some(h) = queued.take() {
                Python::attach(|py| run_parked(py, h, escapes));
            }
        })
        .map_err(to_py)
    }

    /// asyncio's `call_soon(callback, *args, context=None)` in one call:
    /// makes the [`Handle`] and queues it (`LoopBase.call_soon`, outside
    /// debug mode).
    pub(crate) fn call_soon_handle(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        self.with(|s| {
            let lp = match s.owner.borrow().as_ref() {
                Some(weak) => weak.clone_ref(py),
                None => py.None(),
            };
            let handle =
                handle::untracked(Py::new(py, Handle::new(py, callback, args, context, lp)?)?);
            self.queue(s, Parked::Ours(handle.clone_ref(py)))?;
            Ok(handle)
        })
    }

    /// The loop's state, on its thread, while open.
    fn with<R>(&self, f: impl FnOnce(&State) -> PyResult<R>) -> PyResult<R> {
        let cell = self.state.get()?;
        let state = cell.try_borrow().map_err(|_| closed())?;
        match state.as_ref() {
            Some(state) => f(state),
            None => Err(closed()),
        }
    }
}

#[pymethods]
impl RustLoop {
    /// A new loop on `host` (see `oneloop.HOSTS`): owned, or with
    /// `attach=True` attached to the host loop this thread already runs
    /// (glib only: `GLib.MainContext.default()`).
    #[new]
    #[pyo3(signature = (host, attach = false))]
    fn new(py: Python<'_>, host: &str, attach: bool) -> PyResult<RustLoop> {
        let made = if attach {
            hosts::attach_loop(host)
        } else {
            hosts::new_loop(host)
        };
        let lp = match made {
            Some(lp) => lp.map_err(to_py)?,
            None if attach && hosts::available().contains(&host) => {
                return Err(PyValueError::new_err(format!(
                    "attach=True is for host=\"glib\" (the GLib main context a PyGObject \
                     app runs); a {host} loop is attached by the Rust program that runs it"
                )));
            }
            None => {
                return Err(PyValueError::new_err(format!(
                    "unknown oneloop host {host:?}; this build has {:?}",
                    hosts::available()
                )));
            }
        };
        // SystemExit and KeyboardInterrupt end the run after their callback,
        // the rest of the batch kept (asyncio's rule, oneloop's ER-04). An
        // attached loop has no run: they are reported instead (`Escapes`).
        lp.set_panic_policy(PanicPolicy::Propagate);
        let escapes = if lp.is_attached() {
            Escapes::Report
        } else {
            Escapes::Propagate
        };
        RustLoop::from_parts(py, lp, host, escapes, false)
    }

    /// Remember the Python loop (a `weakref.ref` to it).
    fn set_owner(&self, owner: Py<PyAny>) -> PyResult<()> {
        self.with(|s| {
            *s.owner.borrow_mut() = Some(owner);
            Ok(())
        })
    }

    /// The host this loop runs on.
    #[getter]
    fn host(&self) -> &str {
        &self.host
    }

    /// Whether the loop is attached to a host loop that runs it.
    #[getter]
    fn attached(&self) -> bool {
        self.escapes == Escapes::Report
    }

    /// Whether an asyncio callback is running on this thread (an attached
    /// loop cannot be closed from one).
    #[staticmethod]
    fn in_callback() -> bool {
        IN_CALLBACK.with(Cell::get) > 0
    }

    /// oneloop's name for the backend (`"native"`, `"tokio"`, …).
    #[getter]
    fn backend_name(&self) -> &str {
        &self.backend
    }

    /// The loop's clock in asyncio seconds (`loop.time()`).
    ///
    /// asyncio lets any thread read it (debug mode times `getaddrinfo` in an
    /// executor thread), and after `close()` too. There the loop cannot be
    /// asked, so the reading is `Instant::now()` on the same base: the
    /// backend's own clock is `Instant::now()` on every host but glib, whose
    /// GLib clock is the same `CLOCK_MONOTONIC` read in whole microseconds.
    fn time(&self) -> f64 {
        match self.with(|s| Ok(s.lp.time())) {
            Ok(t) => self.clock.secs(t),
            Err(_) => self.clock.secs(std::time::Instant::now()),
        }
    }

    /// How late the host may dispatch a timer by its own rounding, in seconds.
    fn clock_resolution(&self) -> PyResult<f64> {
        self.with(|s| Ok(s.lp.clock_resolution().as_secs_f64()))
    }

    /// Queue the asyncio `handle` (FIFO, next iteration), after the
    /// threadsafe handles that were queued before this call.
    fn call_soon(&self, handle: Py<PyAny>) -> PyResult<()> {
        self.with(|s| self.queue(s, Parked::Asyncio(handle)))
    }

    /// Run the asyncio `TimerHandle` at `when` (asyncio seconds), never earlier.
    fn call_at(&self, when: f64, handle: Py<PyAny>) -> PyResult<Timer> {
        let escapes = self.escapes;
        self.with(|s| {
            let queued = s.pending.park(Parked::Asyncio(handle));
            s.lp.call_at(self.clock.instant(when), move || {
                if let Some(Parked::Asyncio(h)) = queued.take() {
                    run_timer(h, escapes);
                }
            })
            .map(|t| Timer(ThreadBound::new(t)))
            .map_err(to_py)
        })
    }

    /// Run the asyncio `handle` whenever `fd` is readable (level-triggered),
    /// replacing a previous reader of `fd`.
    fn add_reader(&self, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.with(|s| s.add_fd(fd, READ, handle, self.escapes))
    }

    /// Run the asyncio `handle` whenever `fd` is writable.
    fn add_writer(&self, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.with(|s| s.add_fd(fd, WRITE, handle, self.escapes))
    }

    /// Stop watching `fd` for reading; whether a reader was registered.
    fn remove_reader(&self, fd: RawFd) -> PyResult<bool> {
        self.with(|s| s.remove_fd(fd, READ))
    }

    /// Stop watching `fd` for writing; whether a writer was registered.
    fn remove_writer(&self, fd: RawFd) -> PyResult<bool> {
        self.with(|s| s.remove_fd(fd, WRITE))
    }

    /// Run the asyncio `handle` each time signal `sig` arrives, through
    /// oneloop's signal handling (owned loops, main thread; see `signals`).
    fn add_signal_handler(&self, sig: i32, handle: Py<PyAny>) -> PyResult<()> {
        self.with(|s| {
            s.signals
                .add(&s.lp, sig, handle, Rc::downgrade(&s.owner), self.escapes)
        })
    }

    /// Remove the handler of `sig`; whether there was one (`False` on a
    /// closed loop: closing removed them all).
    fn remove_signal_handler(&self, sig: i32) -> PyResult<bool> {
        let cell = self.state.get()?;
        let state = cell.try_borrow().map_err(|_| closed())?;
        match state.as_ref() {
            Some(s) => s.signals.remove(&s.lp, sig),
            None => Ok(false),
        }
    }

    /// Start oneloop's stream transport for the Python transport `owner`
    /// on a duplicate of `fd` (the Python socket or pipe keeps its own fd
    /// and closes it in `connection_lost`, as asyncio does), with
    /// `protocol`; `kind` is `"socket"`, `"read-pipe"` or `"write-pipe"`.
    fn open_stream(
        &self,
        py: Python<'_>,
        owner: Py<PyAny>,
        fd: RawFd,
        protocol: &Bound<'_, PyAny>,
        kind: &str,
    ) -> PyResult<RustStream> {
        let kind = Kind::parse(kind)?;
        self.with(|s| {
            let dup = borrow_fd(fd)?.try_clone_to_owned().map_err(PyErr::from)?;
            RustStream::open(
                py,
                &s.lp,
                &s.transports,
                self.escapes,
                owner,
                dup,
                protocol,
                kind,
            )
        })
    }

    /// Start oneloop's UDP transport for the Python transport `owner` on a
    /// duplicate of `fd`, with `protocol`; `address` is the remote address
    /// of a connected endpoint (asyncio's `address`), or `None`.
    #[pyo3(signature = (owner, fd, protocol, address = None))]
    fn open_datagram(
        &self,
        owner: Py<PyAny>,
        fd: RawFd,
        protocol: &Bound<'_, PyAny>,
        address: Option<Py<PyAny>>,
    ) -> PyResult<RustDatagram> {
        self.with(|s| {
            let dup = borrow_fd(fd)?.try_clone_to_owned().map_err(PyErr::from)?;
            RustDatagram::open(
                &s.lp,
                &s.transports,
                self.escapes,
                owner,
                dup,
                protocol,
                address,
            )
        })
    }

    /// The thread-safe handle.
    fn remote(&self) -> PyResult<Remote> {
        self.with(|s| {
            Ok(Remote {
                remote: s.lp.remote(),
                inbox: self.inbox.clone(),
            })
        })
    }

    /// Run until `stop()`, with the GIL released while the host waits.
    ///
    /// Raises what a callback let escape (`SystemExit`, `KeyboardInterrupt`),
    /// after the loop was put back in a state where it can run again.
    fn run_forever(&self, py: Python<'_>) -> PyResult<()> {
        // A clone, so no borrow of the state is held while callbacks run.
        let lp = Unsync(self.with(|s| Ok(s.lp.clone()))?);
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

    /// Stop after the current batch of callbacks; on a closed loop,
    /// nothing (asyncio's `stop()` only sets a flag, so it never raises:
    /// shutdown code calls it late, after `close()`).
    fn stop(&self) -> PyResult<()> {
        let cell = self.state.get()?;
        if let Ok(state) = cell.try_borrow()
            && let Some(s) = state.as_ref()
        {
            s.lp.stop();
        }
        Ok(())
    }

    /// Whether the Rust loop is inside a run.
    fn is_running(&self) -> PyResult<bool> {
        match self.with(|s| Ok(s.lp.is_running())) {
            Err(_) if self.state.is_home() => Ok(false),
            other => other,
        }
    }

    /// Whether the Rust loop was closed.
    fn is_closed(&self) -> PyResult<bool> {
        let cell = self.state.get()?;
        Ok(cell.try_borrow().map(|s| s.is_none()).unwrap_or(false))
    }

    /// Close the loop and drop it, here on its thread: queued callbacks and
    /// timers are dropped unrun, fds unwatched, the host released.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let cell = self.state.get()?;
        let Some((state, borrowed)) = cell
            .try_borrow()
            .map_err(|_| closed())?
            .as_ref()
            .map(|s| (s.lp.clone(), s.borrowed.is_some()))
        else {
            return Ok(());
        };
        if borrowed {
            // The Rust program's loop: detach, do not close it.
            if let Ok(s) = cell.try_borrow()
                && let Some(s) = s.as_ref()
            {
                s.detach(py);
            }
        } else {
            state.close().map_err(to_py)?;
        }
        drop(state);
        let taken = cell
            .try_borrow_mut()
            .map_err(|_| PyRuntimeError::new_err("the loop is in use"))?
            .take();
        let threadsafe = self.inbox.take();
        // The Python handles in the fd slots and the inbox go here, with the
        // GIL held, after the borrow ended (their finalizers may call back).
        drop((taken, threadsafe));
        Ok(())
    }

    /// Debug counters: `(ready, timers, fds, tasks)`.
    fn stats(&self) -> PyResult<(usize, usize, usize, usize)> {
        self.with(|s| {
            let st = s.lp.stats();
            Ok((st.ready, st.timers, st.fds, st.tasks))
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Off the loop's thread (or mid-borrow) nothing is visited: the
        // collector then treats the handles as reachable, which is safe.
        let Ok(cell) = self.state.get() else {
            return Ok(());
        };
        let Ok(state) = cell.try_borrow() else {
            return Ok(());
        };
        if let Some(state) = state.as_ref()
            && let Ok(fds) = state.fds.try_borrow()
        {
            for h in fds.values().flat_map(|s| s.handles.iter().flatten()) {
                visit.call(h)?;
            }
        }
        if let Some(state) = state.as_ref() {
            state.pending.traverse(&visit)?;
            if let Some(soon) = &state.soon {
                soon.traverse(&visit)?;
            }
            state.transports.traverse(&visit)?;
            state.signals.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        // A shared borrow: what is dropped below may run finalizers that
        // call the loop again.
        let Ok(cell) = self.state.get() else {
            return;
        };
        let Ok(state) = cell.try_borrow() else {
            return;
        };
        let Some(state) = state.as_ref() else {
            return;
        };
        if !state.lp.is_running() {
            let fds: Vec<RawFd> = state.fds.borrow().keys().copied().collect();
            for fd in fds {
                if let Ok(bfd) = borrow_fd(fd) {
                    state.lp.remove_reader(bfd);
                    state.lp.remove_writer(bfd);
                }
            }
        }
        let slots = std::mem::take(&mut *state.fds.borrow_mut());
        drop(slots);
        state.pending.clear();
        if let Some(soon) = &state.soon {
            soon.clear();
        }
        let transports = state.transports.take_all();
        drop(transports);
        state.signals.clear();
    }
}

impl State {
    fn add_fd(&self, fd: RawFd, dir: usize, handle: Py<PyAny>, escapes: Escapes) -> PyResult<()> {
        let bfd = borrow_fd(fd)?;
        let file = file_id(fd);
        // The number is watched, but for another file: that one was closed
        // behind the loop's back and the number reused. Its watch goes first
        // (tokio would go on watching its duplicate of the old file).
        let stale = {
            let mut fds = self.fds.borrow_mut();
            match fds.get(&fd) {
                Some(slot) if slot.file != file => fds.remove(&fd),
                _ => None,
            }
        };
        if let Some(stale) = stale {
            self.lp.remove_reader(bfd);
            self.lp.remove_writer(bfd);
            drop(stale);
        }
        let old = {
            let mut fds = self.fds.borrow_mut();
            let slot = fds.entry(fd).or_default();
            slot.file = file;
            slot.handles[dir].replace(handle)
        };
        let (slots, owner) = (Rc::downgrade(&self.fds), Rc::downgrade(&self.owner));
        let cb = move || fd_ready(&slots, &owner, fd, dir, escapes);
        let added = if dir == READ {
            self.lp.add_reader(bfd, cb)
        } else {
            self.lp.add_writer(bfd, cb)
        };
        if let Err(e) = added {
            let restored = {
                let mut fds = self.fds.borrow_mut();
                let mut new = None;
                if let Some(slot) = fds.get_mut(&fd) {
                    new = std::mem::replace(&mut slot.handles[dir], old);
                    if slot.is_empty() {
                        fds.remove(&fd);
                    }
                }
                new
            };
            drop(restored);
            return Err(to_py(e));
        }
        // Dropped with no borrow of the slots held.
        drop(old);
        Ok(())
    }

    fn remove_fd(&self, fd: RawFd, dir: usize) -> PyResult<bool> {
        let bfd = borrow_fd(fd)?;
        let old = {
            let mut fds = self.fds.borrow_mut();
            let old = fds.get_mut(&fd).and_then(|slot| slot.handles[dir].take());
            if fds.get(&fd).is_some_and(FdSlot::is_empty) {
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
        Ok(removed)
    }
}
