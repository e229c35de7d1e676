//! [`RustStream`]: oneloop's stream transport (`oneloop::Transport`: TCP and
//! Unix sockets, read and write pipes) under an asyncio transport.
//!
//! The Python transport object (`oneloop._transports`) is an ordinary
//! subclass of asyncio's transport classes; its data path is this object.
//! What crosses the boundary on the hot path is the least possible: a
//! readable event is oneloop's `recv` into its read buffer and one call of
//! the protocol's `data_received` (a `bytes` copy, as asyncio and uvloop
//! make) or, for a `BufferedProtocol`, a copy into `get_buffer()`'s buffer;
//! a `write()` is one call into oneloop's `Transport::write`, which sends at
//! once and buffers only what the socket refuses.
//!
//! Everything that happens once per connection or rarely (`connection_made`
//! and the waiter, `eof_received`, `connection_lost` and the socket's
//! closing, flow-control calls, a protocol's exception) is asyncio's own
//! logic, in Python methods of the transport object that the bridge calls
//! (`_connection_made`, `_eof_received`, `_connection_lost`,
//! `_pause_writing`, `_resume_writing`, `_fatal_error`).

use std::cell::{Cell, RefCell};
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use oneloop::{Loop, Protocol, RemoteLoop, Transport};
use pyo3::call::PyCallArgs;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyString, PyType};

use crate::bytes_like::{fill, with_bytes};
use crate::errors::{Escapes, escape, is_escape, lost_exception, report_escape, to_py};
use crate::registry::{Owner, Registry};
use crate::rust_loop::InCallback;
use crate::thread_bound::ThreadBound;
use crate::vectorcall;

/// What the transport carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A connected stream socket (TCP, Unix).
    Socket,
    /// The read end of a pipe (or a PTY, a socket used one way).
    ReadPipe,
    /// The write end of a pipe.
    WritePipe,
}

impl Kind {
    pub(crate) fn parse(kind: &str) -> PyResult<Kind> {
        match kind {
            "socket" => Ok(Kind::Socket),
            "read-pipe" => Ok(Kind::ReadPipe),
            "write-pipe" => Ok(Kind::WritePipe),
            other => Err(PyValueError::new_err(format!(
                "unknown transport kind {other:?}"
            ))),
        }
    }

    /// asyncio's warning for writes after the connection was lost.
    fn lost_write_warning(self) -> &'static str {
        match self {
            Kind::Socket => "socket.send() raised exception.",
            _ => "pipe closed by peer or os.write(pipe, data) raised exception.",
        }
    }
}

/// The protocol's methods on the data path, looked up once per
/// `set_protocol` (as uvloop does), not once per event.
enum Calls {
    /// Before `set_protocol`, after `connection_lost`, and on a write pipe.
    None,
    /// A protocol without `data_received` (yet): looked up at each event,
    /// so that a missing one fails there, as in asyncio.
    Lazy(Py<PyAny>),
    /// A `Protocol`: its bound `data_received`.
    Plain(Py<PyAny>),
    /// A `BufferedProtocol`: its bound `get_buffer` and `buffer_updated`.
    Buffered(Py<PyAny>, Py<PyAny>),
}

/// A call made before `connection_made`, when oneloop's `Transport` does
/// not exist yet (it is created with the connection, see
/// [`RustStream::open`]); replayed in order as the connection is made.
#[derive(Debug)]
enum Early {
    Write(Vec<u8>),
    WriteEof,
    Close,
    Abort,
    PauseReading,
    ResumeReading,
    Limits(usize, usize),
}

/// asyncio's count of writes after the connection was lost, past which each
/// one logs a warning (`constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`).
const LOST_WRITES_BEFORE_WARNING: u32 = 5;

/// The state shared by the Python-facing [`RustStream`] and the
/// [`Bridge`] that oneloop's transport calls.
pub(crate) struct Conn {
    /// The Python transport object.
    owner: Owner,
    escapes: Escapes,
    /// oneloop's transport, from `connection_made` on.
    transport: RefCell<Option<Transport>>,
    early: RefCell<Vec<Early>>,
    calls: RefCell<Calls>,
    /// `pause_reading()` is in force (asyncio's `_paused`).
    paused: Cell<bool>,
    /// `close()` or `abort()` before `connection_made`.
    closing_early: Cell<bool>,
    /// `write_eof()` was called (a socket's writes then raise).
    eof: Cell<bool>,
    /// Writes refused since the transport started closing.
    lost_writes: Cell<u32>,
    /// A native `sendfile` is in progress: `write()` raises (asyncio's
    /// `_empty_waiter is not None`).
    sendfile: Cell<bool>,
    /// Set once the transport is known to be closing (see
    /// [`RustStream::is_closing`]).
    closing_seen: Arc<AtomicBool>,
    /// The exception `connection_lost` gets instead of oneloop's error: a
    /// protocol method's failure that aborted the transport (asyncio's
    /// `_force_close(exc)`).
    failure: RefCell<Option<PyErr>>,
    /// Python calls into this transport on the stack (see [`Conn::direct`]).
    direct: Direct,
}

/// A `SystemExit`/`KeyboardInterrupt` raised by a protocol method that
/// oneloop called *during* a Python call into the transport (a `write()`
/// from a task crossing the high-water mark calls `pause_writing` before
/// it returns): it must come out of that call, as in asyncio, not unwind
/// through oneloop to the loop's run.
#[derive(Default)]
pub(crate) struct Direct {
    depth: Cell<u32>,
    raised: RefCell<Option<PyErr>>,
}

impl Direct {
    /// Run `f` as a Python call into the transport; what a protocol method
    /// let escape meanwhile is its error.
    pub(crate) fn call<R>(&self, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
        struct Depth<'a>(&'a Cell<u32>);
        impl Drop for Depth<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        self.depth.set(self.depth.get() + 1);
        let depth = Depth(&self.depth);
        let out = f();
        drop(depth);
        match self.raised.take() {
            Some(err) => Err(err),
            None => out,
        }
    }

    /// Keep `err` for the Python call on the stack, if there is one.
    pub(crate) fn keep(&self, err: PyErr) -> Result<(), PyErr> {
        if self.depth.get() == 0 {
            return Err(err);
        }
        self.raised.borrow_mut().get_or_insert(err);
        Ok(())
    }
}

impl Conn {
    fn transport(&self) -> Option<Transport> {
        self.transport.borrow().clone()
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>, kind: Kind) -> PyResult<()> {
        let py = protocol.py();
        let lookup = |name| protocol.getattr(name).map(Bound::unbind);
        let calls = match kind {
            Kind::WritePipe => Calls::None,
            // asyncio's read pipe always calls data_received.
            Kind::Socket if protocol.is_instance(buffered_protocol(py)?)? => {
                match (
                    lookup(intern!(py, "get_buffer")),
                    lookup(intern!(py, "buffer_updated")),
                ) {
                    (Ok(g), Ok(u)) => Calls::Buffered(g, u),
                    _ => Calls::Lazy(protocol.clone().unbind()),
                }
            }
            _ => match lookup(intern!(py, "data_received")) {
                Ok(f) => Calls::Plain(f),
                Err(_) => Calls::Lazy(protocol.clone().unbind()),
            },
        };
        let old = std::mem::replace(&mut *self.calls.borrow_mut(), calls);
        drop(old);
        Ok(())
    }

    fn is_closing(&self) -> bool {
        let closing = match &*self.transport.borrow() {
            Some(t) => t.is_closing(),
            None => self.closing_early.get(),
        };
        if closing {
            self.closing_seen.store(true, Ordering::Relaxed);
        }
        closing
    }

    /// Do `op` on oneloop's transport, or keep it for `connection_made`.
    fn apply(&self, op: Early) {
        if matches!(op, Early::Close | Early::Abort) {
            self.closing_seen.store(true, Ordering::Relaxed);
        }
        let Some(t) = self.transport() else {
            match op {
                Early::Close | Early::Abort => self.closing_early.set(true),
                Early::Write(_) | Early::WriteEof if self.closing_early.get() => return,
                _ => {}
            }
            self.early.borrow_mut().push(op);
            return;
        };
        match op {
            Early::Write(data) => {
                let _ = t.write(&data);
            }
            Early::WriteEof => t.write_eof(),
            Early::Close => t.close(),
            Early::Abort => t.abort(),
            Early::PauseReading => t.pause_reading(),
            Early::ResumeReading => t.resume_reading(),
            Early::Limits(high, low) => {
                let _ = t.set_write_buffer_limits(Some(high), Some(low));
            }
        }
    }

    /// A call of the Python transport object's method `name`; what it lets
    /// through (only `SystemExit`/`KeyboardInterrupt`: the methods report
    /// everything else themselves, as asyncio's transports do) leaves the
    /// run, or is reported on an attached loop.
    fn call_owner<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        args: impl PyCallArgs<'py>,
    ) -> Option<Bound<'py, PyAny>> {
        match self.owner.call(py, name, args) {
            Ok(v) => v,
            Err(err) => {
                self.escaped(py, err);
                None
            }
        }
    }

    /// `err` came out of a protocol method: `SystemExit` and
    /// `KeyboardInterrupt` leave the run (the transport is aborted on the
    /// way out, see `docs/python.md`); anything else goes to the Python
    /// object's `_protocol_failed(exc, message)`: asyncio's fatal error on
    /// a socket (reported, transport aborted), only reported on a read pipe.
    fn protocol_failed(&self, py: Python<'_>, err: PyErr, message: &str) {
        if is_escape(py, &err) {
            self.escaped(py, err);
            return;
        }
        let exc = err.into_value(py);
        self.call_owner(py, intern!(py, "_protocol_failed"), (exc, message));
    }

    fn escaped(&self, py: Python<'_>, err: PyErr) {
        let Err(err) = self.direct.keep(err) else {
            return;
        };
        match self.escapes {
            Escapes::Propagate => {
                // oneloop aborts a transport whose protocol unwinds; its
                // connection_lost gets the exception that did it.
                self.failure
                    .borrow_mut()
                    .get_or_insert_with(|| err.clone_ref(py));
                escape(err)
            }
            Escapes::Report => match self.owner.get(py) {
                Some(owner) => report_escape(py, &owner, "transport", err),
                None => err.write_unraisable(py, None),
            },
        }
    }

    /// After `connection_lost`: drop the protocol's methods and the
    /// registry's hold on the Python object (asyncio's `_protocol = None`).
    fn finish(&self) {
        self.closing_seen.store(true, Ordering::Relaxed);
        let calls = std::mem::replace(&mut *self.calls.borrow_mut(), Calls::None);
        drop(calls);
        self.owner.release();
    }
}

/// `asyncio.BufferedProtocol`, looked up once.
fn buffered_protocol(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CLASS.import(py, "asyncio.protocols", "BufferedProtocol")
}

/// What oneloop's transport calls: the bridge to the Python protocol and
/// transport object.
struct Bridge(Rc<Conn>);

impl Protocol for Bridge {
    fn connection_made(&mut self, transport: &Transport) {
        let conn = &self.0;
        *conn.transport.borrow_mut() = Some(transport.clone());
        let early = std::mem::take(&mut *conn.early.borrow_mut());
        for op in early {
            conn.apply(op);
        }
        Python::attach(|py| {
            let _in = InCallback::enter(conn.escapes);
            conn.call_owner(py, intern!(py, "_connection_made"), ());
        });
    }

    fn data_received(&mut self, data: &[u8]) {
        let conn = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(conn.escapes);
            // Cloned out, and the borrow ended before any Python code runs:
            // the lookup of a lazy protocol's method (a `__getattr__`), the
            // protocol and the exception handler may call set_protocol().
            let lazy = match &*conn.calls.borrow() {
                Calls::Plain(f) => Ok((Some(f.clone_ref(py)), None)),
                Calls::Lazy(p) => Err(p.clone_ref(py)),
                Calls::Buffered(g, u) => Ok((None, Some((g.clone_ref(py), u.clone_ref(py))))),
                Calls::None => return,
            };
            let (plain, buffered) = match lazy {
                Ok(calls) => calls,
                Err(p) => match p.bind(py).getattr(intern!(py, "data_received")) {
                    Ok(f) => (Some(f.unbind()), None),
                    Err(e) => {
                        conn.protocol_failed(
                            py,
                            e,
                            "Fatal error: protocol.data_received() call failed.",
                        );
                        return;
                    }
                },
            };
            let (outcome, what) = match (plain, buffered) {
                (Some(f), _) => (
                    vectorcall::call1(f.bind(py), PyBytes::new(py, data).as_any()).map(drop),
                    "Fatal error: protocol.data_received() call failed.",
                ),
                (None, Some((get_buffer, buffer_updated))) => {
                    feed_buffered(get_buffer.bind(py), buffer_updated.bind(py), data)
                }
                (None, None) => return,
            };
            if let Err(err) = outcome {
                conn.protocol_failed(py, err, what);
            }
        });
    }

    fn eof_received(&mut self) -> bool {
        let conn = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(conn.escapes);
            conn.call_owner(py, intern!(py, "_eof_received"), ())
                .is_none_or(|keep| keep.is_truthy().unwrap_or(true))
        })
    }

    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        let conn = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(conn.escapes);
            let failure = conn.failure.borrow_mut().take();
            let exc = lost_exception(py, failure, error);
            conn.call_owner(py, intern!(py, "_connection_lost"), (exc,));
            conn.finish();
        });
    }

    fn pause_writing(&mut self) {
        let conn = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(conn.escapes);
            conn.call_owner(py, intern!(py, "_pause_writing"), ());
        });
    }

    fn resume_writing(&mut self) {
        let conn = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(conn.escapes);
            conn.call_owner(py, intern!(py, "_resume_writing"), ());
        });
    }
}

impl Drop for Bridge {
    /// The loop closed under a live connection (oneloop released the
    /// transport without `connection_lost`): let go of the Python object,
    /// which stays open as asyncio's would (its socket is closed when it
    /// is collected, with asyncio's `ResourceWarning`).
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Feed `data` to a `BufferedProtocol`, as asyncio's
/// `_feed_data_to_buffered_proto`: `get_buffer(n)`, copy, `buffer_updated`,
/// until all of it is taken.
fn feed_buffered(
    get_buffer: &Bound<'_, PyAny>,
    buffer_updated: &Bound<'_, PyAny>,
    mut data: &[u8],
) -> (PyResult<()>, &'static str) {
    while !data.is_empty() {
        let buf = match get_buffer.call1((data.len(),)) {
            Ok(b) => b,
            Err(e) => return (Err(e), "Fatal error: protocol.get_buffer() call failed."),
        };
        let n = match fill(&buf, data) {
            Ok(n) => n,
            Err(e) => return (Err(e), "Fatal error: protocol.get_buffer() call failed."),
        };
        drop(buf);
        if let Err(e) = buffer_updated.call1((n,)) {
            return (
                Err(e),
                "Fatal error: protocol.buffer_updated() call failed.",
            );
        }
        data = &data[n..];
    }
    (Ok(()), "")
}

/// The data path of one asyncio stream transport (see the module docs).
#[pyclass(frozen, module = "oneloop._oneloop", name = "Stream")]
pub struct RustStream {
    /// In an `Arc` so that a `close()` from another thread can send it to
    /// the loop's thread (see [`RustStream::post`]).
    conn: Arc<ThreadBound<Rc<Conn>>>,
    remote: RemoteLoop,
    /// Whether the transport was seen closing on the loop's thread: the
    /// answer of `is_closing()` elsewhere.
    closing_seen: Arc<AtomicBool>,
    /// The number oneloop watches (a duplicate of the Python object's fd).
    fd: RawFd,
    kind: Kind,
}

impl std::fmt::Debug for RustStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustStream")
            .field("fd", &self.fd)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl RustStream {
    /// Start a oneloop transport on `fd` (owned: a duplicate of the Python
    /// object's) for the Python transport `owner`: `connection_made` is
    /// queued for the next iteration, as asyncio's constructors queue it.
    ///
    /// oneloop makes its `Transport` inside the future that
    /// `connect_accepted_socket` and `connect_*_pipe` return; that future
    /// creates and starts it on its first poll and then only waits for
    /// `connection_made`. It is polled once here and dropped: asyncio's
    /// timing, with no task and no extra iteration. (A synchronous
    /// constructor in oneloop would make this unnecessary; see
    /// `docs/python.md`.)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        py: Python<'_>,
        lp: &Loop,
        registry: &Rc<Registry>,
        escapes: Escapes,
        owner: Py<PyAny>,
        fd: OwnedFd,
        protocol: &Bound<'_, PyAny>,
        kind: Kind,
    ) -> PyResult<RustStream> {
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        let conn = Rc::new(Conn {
            owner: Owner::new(registry, owner),
            escapes,
            transport: RefCell::new(None),
            early: RefCell::new(Vec::new()),
            calls: RefCell::new(Calls::None),
            paused: Cell::new(false),
            closing_early: Cell::new(false),
            closing_seen: Arc::new(AtomicBool::new(false)),
            eof: Cell::new(false),
            lost_writes: Cell::new(0),
            sendfile: Cell::new(false),
            failure: RefCell::new(None),
            direct: Direct::default(),
        });
        if let Err(e) = conn.set_protocol(protocol, kind) {
            conn.owner.release();
            return Err(e);
        }
        let bridge = Bridge(conn.clone());
        let started = match kind {
            Kind::Socket => poll_once(lp.connect_accepted_socket(move || bridge, fd)),
            Kind::ReadPipe => poll_once(lp.connect_read_pipe(move || bridge, fd)),
            Kind::WritePipe => poll_once(lp.connect_write_pipe(move || bridge, fd)),
        };
        if let Some(Err(e)) = started {
            conn.owner.release();
            return Err(to_py(e));
        }
        let _ = py;
        let closing_seen = conn.closing_seen.clone();
        Ok(RustStream {
            conn: Arc::new(ThreadBound::new(conn)),
            remote: lp.remote(),
            closing_seen,
            fd: raw,
            kind,
        })
    }

    fn conn(&self) -> PyResult<&Rc<Conn>> {
        self.conn.get()
    }

    /// Do `op` on the loop's thread: now if this is it, else posted there.
    ///
    /// asyncio lets `close()` be called from any thread, and does: the
    /// `__del__` of a `StreamWriter` collected on another thread closes its
    /// transport. oneloop's transport lives on the loop's thread, so the
    /// call goes there, through the loop's inbox (on a closed loop there is
    /// nothing left to close).
    fn post(&self, op: Early) -> PyResult<()> {
        if let Ok(conn) = self.conn.get() {
            conn.apply(op);
            return Ok(());
        }
        let conn = self.conn.clone();
        let _ = self.remote.call_soon_threadsafe(move || {
            if let Ok(conn) = conn.get() {
                conn.apply(op);
            }
        });
        Ok(())
    }

    /// One write, after asyncio's checks.
    fn write_bytes(&self, py: Python<'_>, conn: &Conn, bytes: &[u8]) -> PyResult<()> {
        if conn.eof.get() && self.kind == Kind::Socket {
            return Err(PyRuntimeError::new_err(
                "Cannot call write() after write_eof()",
            ));
        }
        if conn.sendfile.get() {
            return Err(PyRuntimeError::new_err(
                "unable to write; sendfile is in progress",
            ));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let refused = match conn.transport() {
            Some(t) => match conn.direct.call(|| t.write(bytes).map_err(to_py)) {
                Ok(()) => false,
                Err(e) if t.is_closing() && !is_escape(py, &e) => true,
                Err(e) => return Err(e),
            },
            None if conn.closing_early.get() => true,
            None => {
                conn.early.borrow_mut().push(Early::Write(bytes.to_vec()));
                false
            }
        };
        if refused {
            // asyncio: a write on a lost connection is dropped, and logged
            // from the fifth on.
            let n = conn.lost_writes.get();
            conn.lost_writes.set(n.saturating_add(1));
            if n >= LOST_WRITES_BEFORE_WARNING {
                py.import(intern!(py, "asyncio.log"))?
                    .getattr(intern!(py, "logger"))?
                    .call_method1(intern!(py, "warning"), (self.kind.lost_write_warning(),))?;
            }
        }
        Ok(())
    }
}

/// Poll `fut` once with a waker that does nothing: `None` if it is pending.
pub(crate) fn poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

#[pymethods]
impl RustStream {
    /// asyncio's `write(data)`: `bytes`, `bytearray` or `memoryview`.
    pub(crate) fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let conn = self.conn()?;
        with_bytes(data, |bytes| self.write_bytes(data.py(), conn, bytes))?
    }

    /// asyncio's `writelines(list_of_data)`: one write of the joined chunks.
    pub(crate) fn writelines(&self, chunks: &Bound<'_, PyAny>) -> PyResult<()> {
        let conn = self.conn()?;
        let mut joined = Vec::new();
        for chunk in chunks.try_iter()? {
            let chunk = chunk?;
            with_bytes(&chunk, |b| joined.extend_from_slice(b))?;
        }
        self.write_bytes(chunks.py(), conn, &joined)
    }

    /// Refuse writes while a native `sendfile` runs (`True`), or accept
    /// them again.
    fn refuse_writes(&self, on: bool) -> PyResult<()> {
        self.conn()?.sendfile.set(on);
        Ok(())
    }

    /// Close the write side after the buffered data (a write pipe closes).
    fn write_eof(&self) -> PyResult<()> {
        let conn = self.conn()?;
        if conn.is_closing() || conn.eof.get() {
            return Ok(());
        }
        conn.eof.set(true);
        conn.apply(Early::WriteEof);
        Ok(())
    }

    /// Close after the buffered data; `connection_lost(None)` follows.
    /// From another thread, the close is sent to the loop's thread.
    fn close(&self) -> PyResult<()> {
        self.post(Early::Close)
    }

    /// Close now, dropping the buffer; `connection_lost(None)` follows.
    /// From another thread, as `close()`.
    fn abort(&self) -> PyResult<()> {
        self.post(Early::Abort)
    }

    /// asyncio's `_force_close(exc)`: abort, and `connection_lost(exc)`.
    fn fail(&self, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        let conn = self.conn()?;
        conn.failure
            .borrow_mut()
            .get_or_insert_with(|| PyErr::from_value(exc.clone()));
        conn.apply(Early::Abort);
        Ok(())
    }

    /// Whether the transport is closing. From another thread (a
    /// `StreamWriter.__del__` run by the collector there), what the loop's
    /// thread last knew: it never goes back from closing to open.
    pub(crate) fn is_closing(&self) -> bool {
        match self.conn.get() {
            Ok(conn) => conn.is_closing(),
            Err(_) => self.closing_seen.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn is_reading(&self) -> PyResult<bool> {
        let conn = self.conn()?;
        Ok(!conn.is_closing() && !conn.paused.get())
    }

    pub(crate) fn pause_reading(&self) -> PyResult<()> {
        let conn = self.conn()?;
        if conn.is_closing() || conn.paused.get() {
            return Ok(());
        }
        conn.paused.set(true);
        conn.apply(Early::PauseReading);
        Ok(())
    }

    pub(crate) fn resume_reading(&self) -> PyResult<()> {
        let conn = self.conn()?;
        if conn.is_closing() || !conn.paused.get() {
            return Ok(());
        }
        conn.paused.set(false);
        conn.apply(Early::ResumeReading);
        Ok(())
    }

    pub(crate) fn get_write_buffer_size(&self) -> PyResult<usize> {
        let conn = self.conn()?;
        Ok(match &*conn.transport.borrow() {
            Some(t) => t.write_buffer_size(),
            None => conn
                .early
                .borrow()
                .iter()
                .map(|op| match op {
                    Early::Write(d) => d.len(),
                    _ => 0,
                })
                .sum(),
        })
    }

    /// `(low, high)`.
    fn get_write_buffer_limits(&self) -> PyResult<(usize, usize)> {
        let conn = self.conn()?;
        if let Some(t) = &*conn.transport.borrow() {
            return Ok(t.write_buffer_limits());
        }
        let set = conn.early.borrow().iter().rev().find_map(|op| match op {
            Early::Limits(high, low) => Some((*low, *high)),
            _ => None,
        });
        Ok(set.unwrap_or((16 * 1024, 64 * 1024)))
    }

    /// asyncio's `set_write_buffer_limits(high=None, low=None)`.
    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(&self, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let conn = self.conn()?;
        let (high, low) = write_buffer_limits(high, low)?;
        conn.direct.call(|| {
            conn.apply(Early::Limits(high, low));
            Ok(())
        })?;
        Ok(())
    }

    /// Whether the protocol was told `pause_writing` and not yet
    /// `resume_writing` (asyncio's `_protocol_paused`).
    fn is_writing_paused(&self) -> PyResult<bool> {
        let conn = self.conn()?;
        Ok(conn
            .transport
            .borrow()
            .as_ref()
            .is_some_and(Transport::is_writing_paused))
    }

    /// Take the data path of `protocol` (asyncio's `set_protocol`).
    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.conn()?.set_protocol(protocol, self.kind)
    }

    /// The fd oneloop watches (a duplicate of the transport's socket or pipe).
    #[getter]
    fn fd(&self) -> RawFd {
        self.fd
    }

    /// `(closing, reading, writing, buffered bytes)`, for `repr()`.
    fn state(&self) -> PyResult<(bool, bool, bool, usize)> {
        let conn = self.conn()?;
        let closing = conn.is_closing();
        let reading = !closing && !conn.paused.get() && self.kind != Kind::WritePipe;
        let size = self.get_write_buffer_size()?;
        Ok((closing, reading, size > 0, size))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Ok(conn) = self.conn.get() else {
            return Ok(());
        };
        let Ok(calls) = conn.calls.try_borrow() else {
            return Ok(());
        };
        match &*calls {
            Calls::None => {}
            Calls::Plain(f) | Calls::Lazy(f) => visit.call(f)?,
            Calls::Buffered(g, u) => {
                visit.call(g)?;
                visit.call(u)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Ok(conn) = self.conn.get()
            && let Ok(mut calls) = conn.calls.try_borrow_mut()
        {
            let old = std::mem::replace(&mut *calls, Calls::None);
            drop(calls);
            drop(old);
        }
    }
}

/// The marks of asyncio's `set_write_buffer_limits(high=None, low=None)`,
/// for the stream and the datagram transports: its defaults (64 KiB, or 4×
/// `low`; `low` a quarter of `high`) and its `ValueError`. `(high, low)`.
pub(crate) fn write_buffer_limits(high: Option<i64>, low: Option<i64>) -> PyResult<(usize, usize)> {
    let high = high.unwrap_or(match low {
        None => 64 * 1024,
        Some(low) => low.saturating_mul(4),
    });
    let low = low.unwrap_or(high / 4);
    if !(high >= low && low >= 0) {
        return Err(PyValueError::new_err(format!(
            "high ({high}) must be >= low ({low}) must be >= 0"
        )));
    }
    // Both non-negative, checked above.
    Ok((high as usize, low as usize))
}
