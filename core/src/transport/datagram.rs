//! The UDP transport and [`DatagramProtocol`] (PEP 3156 §Datagram Transports).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;

use super::gate::{Gate, Invoked};
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::{Loop, WeakLoop};
use crate::future::LoopFuture;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

thread_local! {
    /// One receive buffer per thread (receives never nest), so an idle
    /// endpoint holds no buffer; taken out while `datagram_received` runs.
    static RECV_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a datagram transport calls (UD-01): `connection_made` once, then any
/// mix of `datagram_received` and `error_received`, then `connection_lost`
/// once. Never called re-entrantly (see [`Protocol`](crate::Protocol)).
///
/// Examples: an echo endpoint at
/// [`Loop::create_datagram_endpoint`](crate::Loop::create_datagram_endpoint),
/// a server and a client at [`DatagramOptions`](crate::DatagramOptions).
pub trait DatagramProtocol: 'static {
    /// The endpoint is ready. Keep a clone of `transport` to send.
    fn connection_made(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }
    /// A datagram arrived whole from `addr` (UD-02).
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        let _ = (data, addr);
    }
    /// A send or receive failed (an ICMP "port unreachable", say); the
    /// endpoint stays open (UD-03).
    fn error_received(&mut self, error: Error) {
        let _ = error;
    }
    /// The endpoint is closed; the last call.
    fn connection_lost(&mut self, error: Option<Error>) {
        let _ = error;
    }
    /// Queued datagrams went above the high-water mark.
    fn pause_writing(&mut self) {}
    /// Queued datagrams drained to the low-water mark.
    fn resume_writing(&mut self) {}
}

enum Note {
    Made,
    Error(Error),
    Pause,
    Resume,
    Lost(Option<Error>),
}

struct State {
    closing: bool,
    lost_scheduled: bool,
    lost: bool,
    writer_on: bool,
    queue: VecDeque<(Vec<u8>, SocketAddr)>,
    queued_bytes: usize,
    paused: bool,
    high: usize,
    low: usize,
}

pub(crate) struct DatagramInner {
    /// Weakly: the loop holds this transport through its fd callbacks.
    lp: WeakLoop,
    sock: RefCell<Option<UdpSocket>>,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    state: RefCell<State>,
    /// The protocol, called only through here.
    gate: Gate<dyn DatagramProtocol, Note>,
}

/// A UDP endpoint: [`sendto`](DatagramTransport::sendto), `close`, `abort`
/// (PEP 3156 §Datagram Transports). Cheap to clone, `!Send`.
///
/// # Examples
///
/// A connected endpoint sends to its peer only:
///
/// ```
/// use std::net::{SocketAddr, UdpSocket};
/// use oneloop::{DatagramOptions, DatagramProtocol, ErrorKind, Loop};
///
/// struct Quiet;
/// impl DatagramProtocol for Quiet {}
///
/// let lp = Loop::new()?;
/// let peer = UdpSocket::bind("127.0.0.1:0")?;
/// let options = DatagramOptions::new().remote_addr(peer.local_addr()?);
/// let t = lp.run_until_complete(lp.create_datagram_endpoint(|| Quiet, options))??;
///
/// t.sendto(b"ping", None)?; // sent at once: nothing queued
/// let mut buf = [0; 16];
/// let (n, from) = peer.recv_from(&mut buf)?;
/// assert_eq!((&buf[..n], Some(from)), (&b"ping"[..], t.sockname()));
///
/// let elsewhere: SocketAddr = "127.0.0.1:9".parse()?;
/// assert_eq!(t.sendto(b"x", Some(elsewhere)).unwrap_err().kind(), ErrorKind::InvalidArgument);
/// t.close();
/// assert_eq!(t.sendto(b"x", None).unwrap_err().kind(), ErrorKind::InvalidState);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DatagramTransport(Rc<DatagramInner>);

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("local", &self.0.local)
            .field("remote", &self.0.remote)
            .finish()
    }
}

/// A loop callback's hold on its endpoint (the reader, the writer, a queued
/// `connection_made` or `connection_lost`). The loop drops its callbacks
/// when it closes (or is dropped); the endpoint and a protocol that keeps
/// a clone of it hold each other until `connection_lost`, so that drop is
/// the moment to let both go, or the socket would stay open for good (a
/// stream transport's `Watch`). A drop on a live loop is the endpoint's
/// own removal, or a callback that ran.
struct Hold(Rc<DatagramInner>);

impl Drop for Hold {
    fn drop(&mut self) {
        if self.0.lp.upgrade().is_none_or(|lp| lp.is_closed()) {
            self.0.release();
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl DatagramInner {
    pub(crate) fn new(
        lp: &Loop,
        sock: UdpSocket,
        protocol: Box<dyn DatagramProtocol>,
    ) -> Rc<DatagramInner> {
        Rc::new(DatagramInner {
            lp: lp.downgrade(),
            remote: sock.peer_addr().ok(),
            local: sock.local_addr().ok(),
            sock: RefCell::new(Some(sock)),
            state: RefCell::new(State {
                closing: false,
                lost_scheduled: false,
                lost: false,
                writer_on: false,
                queue: VecDeque::new(),
                queued_bytes: 0,
                paused: false,
                high: 64 * 1024,
                low: 16 * 1024,
            }),
            gate: Gate::new(protocol),
        })
    }

    /// Queue `connection_made`, then start receiving; `waiter` resolves after.
    pub(crate) fn start(self: &Rc<Self>, waiter: LoopFuture<DatagramTransport>) -> Result<()> {
        let hold = Hold(self.clone());
        self.lp.get()?.call_soon(move || {
            let me = &hold.0;
            me.notify(Note::Made);
            let open = !me.state.borrow().closing;
            if open {
                let r = match &*me.sock.borrow() {
                    Some(s) => {
                        let reader = Hold(me.clone());
                        me.lp
                            .get()
                            .and_then(|lp| lp.add_reader(s, move || reader.0.on_readable()))
                    }
                    None => Ok(()),
                };
                if let Err(e) = r {
                    me.force_close(Some(e));
                }
            }
            let _ = waiter.set_result(DatagramTransport(me.clone()));
        })?;
        Ok(())
    }

    fn notify(self: &Rc<Self>, note: Note) {
        self.gate.notify(note, |note| self.deliver(note));
    }

    fn deliver(self: &Rc<Self>, note: Note) {
        if self.state.borrow().lost {
            return;
        }
        match note {
            Note::Made => {
                let t = DatagramTransport(self.clone());
                self.invoke("connection_made", |p| p.connection_made(&t));
            }
            Note::Error(e) => self.invoke("error_received", |p| p.error_received(e)),
            Note::Pause => self.invoke("pause_writing", |p| p.pause_writing()),
            Note::Resume => self.invoke("resume_writing", |p| p.resume_writing()),
            Note::Lost(e) => {
                self.state.borrow_mut().lost = true;
                self.invoke("connection_lost", |p| p.connection_lost(e));
                self.teardown();
            }
        }
    }

    /// Call the protocol; a panic aborts the endpoint.
    fn invoke(self: &Rc<Self>, what: &'static str, f: impl FnOnce(&mut dyn DatagramProtocol)) {
        if let Invoked::Panicked(payload) = self.gate.invoke(f) {
            let lp = self.lp.upgrade();
            let err = self.gate.panicked(
                lp.as_ref(),
                "datagram protocol",
                what,
                "the endpoint was aborted",
                payload,
            );
            if what != "connection_lost" {
                self.force_close(Some(err));
            }
        }
    }

    fn on_readable(self: &Rc<Self>) {
        if self.gate.busy() {
            return;
        }
        let mut buf = RECV_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if buf.len() < MAX_DATAGRAM {
            buf.resize(MAX_DATAGRAM, 0);
        }
        let res = match &*self.sock.borrow() {
            Some(s) => s.recv_from(&mut buf),
            None => Err(io::ErrorKind::WouldBlock.into()),
        };
        match res {
            Ok((n, from)) => {
                self.gate.call(
                    || {
                        self.invoke("datagram_received", |p| {
                            p.datagram_received(&buf[..n], from)
                        })
                    },
                    |note| self.deliver(note),
                );
            }
            Err(e) if would_block(&e) => {}
            Err(e) => self.notify(Note::Error(e.into())),
        }
        RECV_BUF.with(|b| *b.borrow_mut() = buf);
    }

    fn on_writable(self: &Rc<Self>) {
        let mut errors = Vec::new();
        let (resume, done, finish) = {
            let mut st = self.state.borrow_mut();
            let sock = self.sock.borrow();
            let Some(s) = sock.as_ref() else { return };
            while let Some((data, to)) = st.queue.front() {
                let r = if self.remote.is_some() {
                    s.send(data)
                } else {
                    s.send_to(data, to)
                };
                match r {
                    Err(e) if would_block(&e) => break,
                    other => {
                        if let Err(e) = other {
                            errors.push(Error::from(e));
                        }
                        let (data, _) = st.queue.pop_front().expect("front exists");
                        st.queued_bytes -= data.len();
                    }
                }
            }
            let resume = st.paused && st.queued_bytes <= st.low;
            if resume {
                st.paused = false;
            }
            let done = st.queue.is_empty();
            let finish = done && st.closing && !st.lost_scheduled;
            if finish {
                st.lost_scheduled = true;
            }
            (resume, done, finish)
        };
        for e in errors {
            self.notify(Note::Error(e));
        }
        if resume {
            self.notify(Note::Resume);
        }
        if done {
            self.set_writing(false);
        }
        if finish {
            self.schedule_lost(None);
        }
    }

    fn set_writing(self: &Rc<Self>, on: bool) {
        let was = std::mem::replace(&mut self.state.borrow_mut().writer_on, on);
        if was == on {
            return;
        }
        let sock = self.sock.borrow();
        let Some(s) = sock.as_ref() else { return };
        if on {
            let writer = Hold(self.clone());
            let added = self
                .lp
                .get()
                .and_then(|lp| lp.add_writer(s, move || writer.0.on_writable()));
            if let Err(e) = added {
                drop(sock);
                self.force_close(Some(e));
            }
        } else if let Some(lp) = self.lp.upgrade() {
            lp.remove_writer(s);
        }
    }

    fn force_close(self: &Rc<Self>, err: Option<Error>) {
        {
            let mut st = self.state.borrow_mut();
            if st.lost_scheduled {
                return;
            }
            st.lost_scheduled = true;
            st.closing = true;
            st.queue.clear();
            st.queued_bytes = 0;
        }
        self.unwatch();
        self.schedule_lost(err);
    }

    fn unwatch(self: &Rc<Self>) {
        self.set_writing(false);
        if let (Some(s), Some(lp)) = (&*self.sock.borrow(), self.lp.upgrade()) {
            lp.remove_reader(s);
        }
    }

    fn schedule_lost(self: &Rc<Self>, err: Option<Error>) {
        let hold = Hold(self.clone());
        if self
            .lp
            .get()
            .and_then(|lp| lp.call_soon(move || hold.0.notify(Note::Lost(err))))
            .is_err()
        {
            self.state.borrow_mut().lost = true;
            self.teardown();
        }
    }

    /// The loop closed under the endpoint (see [`Hold`]): no callback will
    /// run again, so `connection_lost` never can; close the socket and drop
    /// the protocol now. Nothing if endpoint code is on the stack (its state
    /// is borrowed: it is the one removing a callback).
    fn release(self: &Rc<Self>) {
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        if std::mem::replace(&mut st.lost, true) {
            return;
        }
        st.closing = true;
        st.lost_scheduled = true;
        st.queue.clear();
        st.queued_bytes = 0;
        drop(st);
        self.teardown();
    }

    fn teardown(self: &Rc<Self>) {
        self.unwatch();
        let sock = self.sock.borrow_mut().take();
        drop(sock);
        let protocol = self.gate.take();
        drop(protocol);
    }
}

impl DatagramTransport {
    /// The loop this endpoint runs on, while it exists (PEP 3156's
    /// `get_loop`); held weakly, as a [`Transport`](crate::Transport)'s.
    #[doc(alias = "get_loop")]
    pub fn event_loop(&self) -> Option<Loop> {
        self.0.lp.upgrade()
    }

    /// Send one datagram to `addr`, or to the endpoint's remote address when
    /// `addr` is `None` (UD-02). Never blocks: what the socket refuses now
    /// is queued. A send failure reported by the OS (no route, port
    /// unreachable) goes to `error_received` and the endpoint stays open.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] with no address on an unconnected
    /// endpoint, or an address other than the remote one on a connected
    /// endpoint; [`ErrorKind::InvalidState`] once closing.
    pub fn sendto(&self, data: &[u8], addr: Option<SocketAddr>) -> Result<()> {
        let inner = &self.0;
        let to = match (addr, inner.remote) {
            (None, Some(r)) => r,
            (Some(a), Some(r)) if a == r => r,
            (Some(a), Some(r)) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("the endpoint is connected to {r}, not {a}"),
                ));
            }
            (Some(a), None) => a,
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "no address given and no remote address set",
                ));
            }
        };
        let (register, pause, error) = {
            let mut st = inner.state.borrow_mut();
            if st.closing {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    "sendto() on a closing endpoint",
                ));
            }
            let mut error = None;
            if st.queue.is_empty() {
                let sock = inner.sock.borrow();
                let Some(s) = sock.as_ref() else {
                    return Ok(());
                };
                let r = if inner.remote.is_some() {
                    s.send(data)
                } else {
                    s.send_to(data, to)
                };
                match r {
                    Ok(_) => return Ok(()),
                    Err(e) if would_block(&e) => {}
                    Err(e) => error = Some(Error::from(e)),
                }
            }
            if error.is_none() {
                st.queue.push_back((data.to_vec(), to));
                st.queued_bytes += data.len();
            }
            let pause = !st.paused && st.queued_bytes > st.high;
            if pause {
                st.paused = true;
            }
            (error.is_none() && !st.writer_on, pause, error)
        };
        if let Some(e) = error {
            inner.notify(Note::Error(e));
            return Ok(());
        }
        if register {
            inner.set_writing(true);
        }
        if pause {
            inner.notify(Note::Pause);
        }
        Ok(())
    }

    /// Close after the queued datagrams are sent; `connection_lost(None)`
    /// follows from a later callback (UD-04). Idempotent.
    pub fn close(&self) {
        let inner = &self.0;
        let flushed = {
            let mut st = inner.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            let flushed = st.queue.is_empty();
            if flushed {
                st.lost_scheduled = true;
            }
            flushed
        };
        if let (Some(s), Some(lp)) = (&*inner.sock.borrow(), inner.lp.upgrade()) {
            lp.remove_reader(s);
        }
        if flushed {
            inner.schedule_lost(None);
        }
    }

    /// Close now, discarding queued datagrams (UD-04).
    pub fn abort(&self) {
        self.0.force_close(None);
    }

    /// Whether the endpoint is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.0.state.borrow().closing
    }

    /// Bytes queued and not yet sent.
    #[doc(alias = "get_write_buffer_size")]
    pub fn write_buffer_size(&self) -> usize {
        self.0.state.borrow().queued_bytes
    }

    /// The water marks of the send queue, as `(low, high)` (16 and 64 KiB
    /// unless set).
    #[doc(alias = "get_write_buffer_limits")]
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        let st = self.0.state.borrow();
        (st.low, st.high)
    }

    /// Set the water marks of the send queue, with the rules of
    /// [`Transport::set_write_buffer_limits`](crate::Transport::set_write_buffer_limits)
    /// (asyncio's): `None` for `high` means 64 KiB or four times `low`,
    /// `None` for `low` a quarter of `high`. A queue already above the new
    /// mark pauses the protocol now.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `low > high`; nothing changes.
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let high = high.unwrap_or_else(|| low.map_or(64 * 1024, |l| l.saturating_mul(4)));
        let low = low.unwrap_or(high / 4);
        if low > high {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("low water mark ({low}) above high water mark ({high})"),
            ));
        }
        let inner = &self.0;
        let pause = {
            let mut st = inner.state.borrow_mut();
            st.high = high;
            st.low = low;
            let pause = !st.closing && !st.paused && st.queued_bytes > st.high;
            if pause {
                st.paused = true;
            }
            pause
        };
        if pause {
            inner.notify(Note::Pause);
        }
        Ok(())
    }

    /// The local address.
    pub fn sockname(&self) -> Option<SocketAddr> {
        self.0.local
    }

    /// The remote address, for a connected endpoint.
    pub fn peername(&self) -> Option<SocketAddr> {
        self.0.remote
    }
}
