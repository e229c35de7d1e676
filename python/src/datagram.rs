//! [`RustDatagram`]: oneloop's UDP transport (`oneloop::DatagramTransport`)
//! under an asyncio datagram transport.
//!
//! As for streams (see `stream`): the Python object is a subclass of
//! asyncio's classes, the data path is here (`sendto`, and
//! `datagram_received` called with the bytes and the sender's address), and
//! the once-per-endpoint logic is the Python object's (`_connection_made`,
//! `_connection_lost`, `_error_received`, flow control, a protocol's
//! exception).
//!
//! oneloop's datagram transport is for IPv4 and IPv6; the Python loop keeps
//! asyncio's own transport for other families (Unix datagram sockets).

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oneloop::{DatagramProtocol, DatagramTransport, ErrorKind, Loop, RemoteLoop};
use pyo3::call::PyCallArgs;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::bytes_like::with_bytes;
use crate::errors::{
    Escapes, escape, exception_of, is_escape, lost_exception, report_escape, to_py,
};
use crate::registry::{Owner, Registry};
use crate::rust_loop::InCallback;
use crate::stream::{Direct, poll_once};
use crate::thread_bound::ThreadBound;

/// What the Python half and the bridge share.
struct Endpoint {
    owner: Owner,
    escapes: Escapes,
    transport: RefCell<Option<DatagramTransport>>,
    /// The protocol's bound `datagram_received`.
    received: RefCell<Option<Py<PyAny>>>,
    /// `close()`/`abort()` before `connection_made`: done then.
    early: Cell<Option<bool>>,
    failure: RefCell<Option<PyErr>>,
    /// `set_write_buffer_limits` before `connection_made`, as `(low, high)`:
    /// set on oneloop's transport then.
    limits: Cell<Option<(usize, usize)>>,
    lost_sends: Cell<u32>,
    closing_seen: Arc<AtomicBool>,
    /// Python calls on the stack (see [`Direct`]).
    direct: Direct,
}

impl Endpoint {
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

    fn escaped(&self, py: Python<'_>, err: PyErr) {
        let Err(err) = self.direct.keep(err) else {
            return;
        };
        match self.escapes {
            Escapes::Propagate => {
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

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) {
        let py = protocol.py();
        let f = protocol
            .getattr(intern!(py, "datagram_received"))
            .ok()
            .map(Bound::unbind);
        let old = self.received.replace(f);
        drop(old);
    }

    fn is_closing(&self) -> bool {
        let closing = match &*self.transport.borrow() {
            Some(t) => t.is_closing(),
            None => self.early.get().is_some(),
        };
        if closing {
            self.closing_seen.store(true, Ordering::Relaxed);
        }
        closing
    }

    /// `close()` (`abort = false`) or `abort()`, or either before
    /// `connection_made`.
    fn stop(&self, abort: bool) {
        self.closing_seen.store(true, Ordering::Relaxed);
        match &*self.transport.borrow() {
            Some(t) if abort => t.abort(),
            Some(t) => t.close(),
            None if abort || self.early.get().is_none() => self.early.set(Some(abort)),
            None => {}
        }
    }

    fn finish(&self) {
        self.closing_seen.store(true, Ordering::Relaxed);
        let old = self.received.take();
        drop(old);
        self.owner.release();
    }
}

/// A socket address as Python's socket module gives it: `(host, port)`, or
/// `(host, port, flowinfo, scope_id)` for IPv6.
fn py_addr<'py>(py: Python<'py>, addr: SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
    match addr {
        SocketAddr::V4(a) => (a.ip().to_string(), a.port()).into_pyobject(py),
        SocketAddr::V6(a) => {
            (a.ip().to_string(), a.port(), a.flowinfo(), a.scope_id()).into_pyobject(py)
        }
    }
}

struct Bridge(Rc<Endpoint>);

impl DatagramProtocol for Bridge {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        let ep = &self.0;
        *ep.transport.borrow_mut() = Some(transport.clone());
        if let Some((low, high)) = ep.limits.take() {
            // Checked when they were given; nothing is queued yet.
            let _ = transport.set_write_buffer_limits(Some(high), Some(low));
        }
        match ep.early.get() {
            Some(true) => transport.abort(),
            Some(false) => transport.close(),
            None => {}
        }
        Python::attach(|py| {
            let _in = InCallback::enter(ep.escapes);
            ep.call_owner(py, intern!(py, "_connection_made"), ());
        });
    }

    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        let ep = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(ep.escapes);
            let Some(f) = ep.received.borrow().as_ref().map(|f| f.clone_ref(py)) else {
                return;
            };
            let outcome =
                py_addr(py, addr).and_then(|addr| f.bind(py).call1((PyBytes::new(py, data), addr)));
            if let Err(err) = outcome {
                if is_escape(py, &err) {
                    ep.escaped(py, err);
                } else {
                    let exc = err.into_value(py);
                    ep.call_owner(
                        py,
                        intern!(py, "_protocol_failed"),
                        (exc, "datagram_received"),
                    );
                }
            }
        });
    }

    fn error_received(&mut self, error: oneloop::Error) {
        let ep = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(ep.escapes);
            let exc = exception_of(py, &error).into_value(py);
            ep.call_owner(py, intern!(py, "_error_received"), (exc,));
        });
    }

    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        let ep = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(ep.escapes);
            let failure = ep.failure.borrow_mut().take();
            let exc = lost_exception(py, failure, error);
            ep.call_owner(py, intern!(py, "_connection_lost"), (exc,));
            ep.finish();
        });
    }

    fn pause_writing(&mut self) {
        let ep = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(ep.escapes);
            ep.call_owner(py, intern!(py, "_pause_writing"), ());
        });
    }

    fn resume_writing(&mut self) {
        let ep = &self.0;
        Python::attach(|py| {
            let _in = InCallback::enter(ep.escapes);
            ep.call_owner(py, intern!(py, "_resume_writing"), ());
        });
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// The data path of one asyncio datagram transport (see the module docs).
#[pyclass(frozen, module = "oneloop._oneloop", name = "Datagram")]
pub struct RustDatagram {
    /// In an `Arc` so that `close()` from another thread reaches the loop
    /// (as [`RustStream`](crate::stream::RustStream) does).
    ep: Arc<ThreadBound<Rc<Endpoint>>>,
    remote: RemoteLoop,
    closing_seen: Arc<AtomicBool>,
    fd: RawFd,
    /// The remote address of a connected endpoint, as Python gave it.
    address: Option<Py<PyAny>>,
}

impl std::fmt::Debug for RustDatagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustDatagram")
            .field("fd", &self.fd)
            .finish_non_exhaustive()
    }
}

impl RustDatagram {
    fn post(&self, abort: bool) {
        if let Ok(ep) = self.ep.get() {
            return ep.stop(abort);
        }
        let ep = self.ep.clone();
        let _ = self.remote.call_soon_threadsafe(move || {
            if let Ok(ep) = ep.get() {
                ep.stop(abort);
            }
        });
    }

    /// Start oneloop's datagram transport on `fd` (owned, a duplicate of
    /// the Python socket's) for the Python transport `owner`, as
    /// [`RustStream::open`](crate::stream::RustStream::open) does.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        lp: &Loop,
        registry: &Rc<Registry>,
        escapes: Escapes,
        owner: Py<PyAny>,
        fd: OwnedFd,
        protocol: &Bound<'_, PyAny>,
        address: Option<Py<PyAny>>,
    ) -> PyResult<RustDatagram> {
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        let ep = Rc::new(Endpoint {
            owner: Owner::new(registry, owner),
            escapes,
            transport: RefCell::new(None),
            received: RefCell::new(None),
            early: Cell::new(None),
            failure: RefCell::new(None),
            limits: Cell::new(None),
            lost_sends: Cell::new(0),
            closing_seen: Arc::new(AtomicBool::new(false)),
            direct: Direct::default(),
        });
        ep.set_protocol(protocol);
        let bridge = Bridge(ep.clone());
        let sock = UdpSocket::from(fd);
        let started = poll_once(lp.create_datagram_endpoint_from_socket(move || bridge, sock));
        if let Some(Err(e)) = started {
            ep.owner.release();
            return Err(to_py(e));
        }
        let closing_seen = ep.closing_seen.clone();
        Ok(RustDatagram {
            ep: Arc::new(ThreadBound::new(ep)),
            remote: lp.remote(),
            closing_seen,
            fd: raw,
            address,
        })
    }
}

/// `addr` as a `SocketAddr`: an IP literal tuple, or a name resolved by
/// Python's `getaddrinfo` (blocking, as `socket.sendto` resolves it).
fn socket_addr(addr: &Bound<'_, PyAny>, family: i32) -> PyResult<SocketAddr> {
    let py = addr.py();
    let tuple = addr.cast::<PyTuple>().map_err(|_| {
        PyValueError::new_err(format!(
            "an address must be a (host, port) tuple, not {addr}"
        ))
    })?;
    if tuple.len() < 2 {
        return Err(PyValueError::new_err(format!(
            "an address must be a (host, port) tuple, not {addr}"
        )));
    }
    let host: String = tuple.get_item(0)?.extract()?;
    let port: u16 = tuple.get_item(1)?.extract()?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(match ip {
            IpAddr::V6(ip) => {
                let flow: u32 = match tuple.get_item(2) {
                    Ok(v) => v.extract()?,
                    Err(_) => 0,
                };
                let scope: u32 = match tuple.get_item(3) {
                    Ok(v) => v.extract()?,
                    Err(_) => 0,
                };
                SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope))
            }
            ip => SocketAddr::new(ip, port),
        });
    }
    let socket = py.import(intern!(py, "socket"))?;
    let dgram = socket.getattr(intern!(py, "SOCK_DGRAM"))?;
    let infos = socket.call_method1(
        intern!(py, "getaddrinfo"),
        (host.as_str(), port, family, dgram),
    )?;
    let first = infos.get_item(0)?;
    let resolved = first.get_item(4)?;
    if resolved.cast::<PyTuple>().is_ok_and(|t| {
        t.get_item(0)
            .and_then(|h| h.extract::<String>())
            .is_ok_and(|h| h.parse::<IpAddr>().is_ok())
    }) {
        socket_addr(&resolved, family)
    } else {
        Err(PyValueError::new_err(format!("cannot resolve {addr}")))
    }
}

#[pymethods]
impl RustDatagram {
    /// asyncio's `sendto(data, addr=None)`; `family` is the socket's, for
    /// resolving a host name.
    #[pyo3(signature = (data, addr = None, family = 0))]
    fn sendto(
        &self,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
        family: i32,
    ) -> PyResult<()> {
        let py = data.py();
        let ep = self.ep.get()?;
        with_bytes(data, |bytes| -> PyResult<()> {
            if bytes.is_empty() {
                return Ok(());
            }
            let mut to = None;
            if let Some(remote) = &self.address {
                if let Some(a) = addr.filter(|a| !a.is_none())
                    && !a.eq(remote.bind(py))?
                {
                    return Err(PyValueError::new_err(format!(
                        "Invalid address: must be None or {}",
                        remote.bind(py)
                    )));
                }
            } else if let Some(a) = addr.filter(|a| !a.is_none()) {
                to = Some(socket_addr(a, family)?);
            }
            let transport = ep.transport.borrow().clone();
            let refused = match transport {
                Some(t) => ep.direct.call(|| match t.sendto(bytes, to) {
                    Err(e) if e.kind() == ErrorKind::InvalidState => Ok(true),
                    other => other.map(|()| false).map_err(to_py),
                })?,
                None if ep.early.get().is_some() => true,
                None => {
                    return Err(PyRuntimeError::new_err(
                        "sendto() before the endpoint's connection_made",
                    ));
                }
            };
            if refused && self.address.is_some() {
                let n = ep.lost_sends.get();
                ep.lost_sends.set(n.saturating_add(1));
                if n >= 5 {
                    py.import(intern!(py, "asyncio.log"))?
                        .getattr(intern!(py, "logger"))?
                        .call_method1(
                            intern!(py, "warning"),
                            ("socket.send() raised exception.",),
                        )?;
                }
            }
            Ok(())
        })?
    }

    /// Close after the queued datagrams; from another thread, sent to the
    /// loop's thread.
    fn close(&self) -> PyResult<()> {
        self.post(false);
        Ok(())
    }

    /// Close now; from another thread, as `close()`.
    fn abort(&self) -> PyResult<()> {
        self.post(true);
        Ok(())
    }

    /// asyncio's `_force_close(exc)`.
    fn fail(&self, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        let ep = self.ep.get()?;
        ep.failure
            .borrow_mut()
            .get_or_insert_with(|| PyErr::from_value(exc.clone()));
        self.abort()
    }

    /// Whether the endpoint is closing; from another thread, what the
    /// loop's thread last knew.
    fn is_closing(&self) -> bool {
        match self.ep.get() {
            Ok(ep) => ep.is_closing(),
            Err(_) => self.closing_seen.load(Ordering::Relaxed),
        }
    }

    fn get_write_buffer_size(&self) -> PyResult<usize> {
        let ep = self.ep.get()?;
        Ok(ep
            .transport
            .borrow()
            .as_ref()
            .map_or(0, DatagramTransport::write_buffer_size))
    }

    /// `(low, high)`: oneloop's water marks of the send queue.
    fn get_write_buffer_limits(&self) -> PyResult<(usize, usize)> {
        let ep = self.ep.get()?;
        if let Some(t) = &*ep.transport.borrow() {
            return Ok(t.write_buffer_limits());
        }
        Ok(ep.limits.get().unwrap_or((16 * 1024, 64 * 1024)))
    }

    /// asyncio's `set_write_buffer_limits(high=None, low=None)`, with its
    /// defaults and its `ValueError`; a queue already above the new high
    /// mark pauses the protocol at once, as asyncio's `_maybe_pause_protocol`.
    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(&self, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let ep = self.ep.get()?;
        let (high, low) = crate::stream::write_buffer_limits(high, low)?;
        let transport = ep.transport.borrow().clone();
        match transport {
            Some(t) => ep.direct.call(|| {
                t.set_write_buffer_limits(Some(high), Some(low))
                    .map_err(to_py)
            }),
            None => {
                ep.limits.set(Some((low, high)));
                Ok(())
            }
        }
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ep.get()?.set_protocol(protocol);
        Ok(())
    }

    #[getter]
    fn fd(&self) -> RawFd {
        self.fd
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(a) = &self.address {
            visit.call(a)?;
        }
        if let Ok(ep) = self.ep.get()
            && let Ok(f) = ep.received.try_borrow()
            && let Some(f) = f.as_ref()
        {
            visit.call(f)?;
        }
        Ok(())
    }
}
