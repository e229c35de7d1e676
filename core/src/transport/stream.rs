//! The stream transport over a connected socket (TCP or Unix).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;
use std::task::Waker;

use super::endpoint::{Endpoint, Kind};
use super::gate::{Gate, Invoked};
use super::write_buffer::WriteBuffer;
use super::{ExtraInfo, SocketAddress};
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::{Loop, WeakLoop};
use crate::future::LoopFuture;
use crate::protocol::Protocol;
#[cfg(feature = "net")]
use crate::scheduler::fds::FdCallback;

/// Bytes asked of the kernel per readable event: 256 KiB, as uvloop, so a
/// large message arrives in one iteration rather than several. The buffer is
/// one per thread and reused, so idle connections hold none.
const READ_SIZE: usize = 256 * 1024;

thread_local! {
    /// One read buffer per thread, shared by every transport: reads are
    /// never nested (a reader callback never runs inside another), so an idle
    /// connection costs no buffer. Taken out while `data_received` runs; a
    /// read that finds it taken allocates its own.
    static READ_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// What one read did.
enum Read {
    /// Nothing to read now (or nobody to give it to).
    Nothing,
    /// Bytes went to the protocol.
    Delivered,
    /// The peer's EOF.
    Eof,
    /// The read failed: the connection is lost.
    Failed(io::Error),
}

/// A protocol call waiting for the gate (see the module docs of `transport`).
enum Note {
    Made,
    PauseWriting,
    ResumeWriting,
    Eof,
    Lost(Option<Error>),
}

/// The mutable state of a stream transport, borrowed only between syscalls.
#[derive(Debug)]
struct State {
    /// `connection_made` was (or is being) delivered: reading may start.
    made: bool,
    /// `close`, `abort` or a fatal error: `is_closing()`, writes refused.
    closing: bool,
    /// `connection_lost` is queued; it must be queued once only.
    lost_scheduled: bool,
    /// `connection_lost` was delivered: nothing more reaches the protocol.
    lost: bool,
    /// `pause_reading` is in force.
    reading_paused: bool,
    /// The peer sent EOF: the reader stays off for good.
    read_eof: bool,
    /// The reader callback is registered with the loop.
    reader_on: bool,
    /// The writer callback is registered with the loop.
    writer_on: bool,
    /// `write_eof` was called.
    eof_requested: bool,
    /// The write side was shut down.
    eof_sent: bool,
    /// The protocol was told `pause_writing` and not yet `resume_writing`.
    protocol_paused: bool,
    /// An abort dropped buffered bytes unsent.
    discarded: bool,
    buf: WriteBuffer,
}

/// The shared body of a [`Transport`].
pub(crate) struct StreamInner {
    /// Weakly: the loop holds this transport through its fd callbacks.
    lp: WeakLoop,
    /// `None` once `connection_lost` has run: the fd is closed then.
    sock: RefCell<Option<Endpoint>>,
    kind: Kind,
    fd: RawFd,
    peer: Option<SocketAddress>,
    local: Option<SocketAddress>,
    state: RefCell<State>,
    /// The protocol, called only through here.
    gate: Gate<dyn Protocol, Note>,
    /// Run after `connection_lost` (a server counts its connections).
    on_lost: RefCell<Option<Box<dyn FnOnce()>>>,
    /// Tasks waiting for the buffer to empty (a stream's `poll_close`).
    sent_wakers: RefCell<Vec<Waker>>,
}

/// The sending half of a stream connection, and the handle a
/// [`Protocol`] uses to control it (PEP 3156 §Stream Transports).
///
/// Cheap to clone, `!Send` like the [`Loop`] it belongs to (D11). Every
/// method may be called from anywhere on the loop's thread — inside a
/// protocol method, a callback or a task — without a borrow panic.
///
/// `write` never blocks: what the socket does not take at once is buffered
/// and sent when it becomes writable. Above the high-water mark the protocol
/// gets [`pause_writing`](Protocol::pause_writing); a producer that stops
/// there keeps memory bounded by the mark plus one chunk (FC-01).
///
/// # Examples
///
/// asyncio's echo client: send a message, half-close, collect the reply
/// until the server hangs up, and hand it out through a future that
/// `connection_lost` completes.
///
/// ```
/// use oneloop::{Error, Loop, LoopFuture, Protocol, Transport};
///
/// struct Client {
///     reply: Vec<u8>,
///     done: LoopFuture<Vec<u8>>,
/// }
///
/// impl Protocol for Client {
///     fn connection_made(&mut self, t: &Transport) {
///         t.write(b"hello").unwrap();
///         t.write_eof(); // no more from us; the reply can still come
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         self.reply.extend_from_slice(data);
///     }
///     fn connection_lost(&mut self, _error: Option<Error>) {
///         let _ = self.done.set_result(std::mem::take(&mut self.reply));
///     }
/// }
///
/// // An echo server on a plain thread.
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// std::thread::spawn(move || -> std::io::Result<u64> {
///     let (mut s, _) = listener.accept()?;
///     std::io::copy(&mut s.try_clone()?, &mut s) // until our EOF, then hangs up
/// });
///
/// let lp = Loop::new()?;
/// let done = lp.create_future();
/// let d = done.clone();
/// lp.run_until_complete(lp.create_connection(move || Client { reply: Vec::new(), done: d }, addr))??;
/// assert_eq!(lp.run_until_complete(done)??, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Transport(pub(crate) Rc<StreamInner>);

impl Clone for Transport {
    fn clone(&self) -> Self {
        Transport(self.0.clone())
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.0.state.try_borrow();
        let mut d = f.debug_struct("Transport");
        d.field("fd", &self.0.fd).field("peer", &self.0.peer);
        if let Ok(st) = st {
            d.field("closing", &st.closing)
                .field("lost", &st.lost)
                .field("buffered", &st.buf.len());
        }
        d.finish()
    }
}

impl PartialEq for Transport {
    fn eq(&self, other: &Transport) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Transport {}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl StreamInner {
    /// A transport over `sock` (connected, non-blocking), not started yet.
    #[cfg(feature = "net")]
    pub(crate) fn new(
        lp: &Loop,
        sock: socket2::Socket,
        protocol: Box<dyn Protocol>,
        on_lost: Option<Box<dyn FnOnce()>>,
    ) -> Rc<StreamInner> {
        let peer = sock
            .peer_addr()
            .ok()
            .map(|a| SocketAddress::from_sockaddr(&a));
        let local = sock
            .local_addr()
            .ok()
            .map(|a| SocketAddress::from_sockaddr(&a));
        Self::with_endpoint(
            lp,
            Endpoint::Socket(sock),
            Kind::Socket,
            protocol,
            on_lost,
            peer,
            local,
        )
    }

    /// A transport over one end of a pipe (non-blocking), not started yet.
    #[cfg(feature = "process")]
    pub(crate) fn new_pipe(
        lp: &Loop,
        fd: std::os::fd::OwnedFd,
        readable: bool,
        protocol: Box<dyn Protocol>,
        on_lost: Option<Box<dyn FnOnce()>>,
    ) -> Rc<StreamInner> {
        let kind = if readable {
            Kind::ReadPipe
        } else {
            Kind::WritePipe
        };
        Self::with_endpoint(lp, Endpoint::Pipe(fd), kind, protocol, on_lost, None, None)
    }

    fn with_endpoint(
        lp: &Loop,
        sock: Endpoint,
        kind: Kind,
        protocol: Box<dyn Protocol>,
        on_lost: Option<Box<dyn FnOnce()>>,
        peer: Option<SocketAddress>,
        local: Option<SocketAddress>,
    ) -> Rc<StreamInner> {
        Rc::new(StreamInner {
            lp: lp.downgrade(),
            fd: sock.as_fd().as_raw_fd(),
            sock: RefCell::new(Some(sock)),
            kind,
            peer,
            local,
            state: RefCell::new(State {
                made: false,
                closing: false,
                lost_scheduled: false,
                lost: false,
                reading_paused: false,
                read_eof: false,
                reader_on: false,
                writer_on: false,
                eof_requested: false,
                eof_sent: false,
                protocol_paused: false,
                discarded: false,
                buf: WriteBuffer::new(),
            }),
            gate: Gate::new(protocol),
            on_lost: RefCell::new(on_lost),
            sent_wakers: RefCell::new(Vec::new()),
        })
    }

    /// Queue `connection_made` and then reading; `waiter` resolves right
    /// after `connection_made` returned (D2, TP-03).
    ///
    /// On a closed loop the transport is released at once and the error
    /// returned.
    pub(crate) fn start(self: &Rc<Self>, waiter: Option<LoopFuture<Transport>>) -> Result<()> {
        let me = self.clone();
        let queued = self.lp.get().and_then(|lp| {
            lp.call_soon(move || {
                me.state.borrow_mut().made = true;
                me.notify(Note::Made);
                let start_reading = {
                    let st = me.state.borrow();
                    let wanted = match me.kind {
                        Kind::WritePipe => me.readable_means_reader_closed(),
                        _ => !st.reading_paused,
                    };
                    !st.closing && !st.lost && wanted
                };
                if start_reading {
                    me.set_reading(true);
                }
                if let Some(w) = waiter {
                    let _ = w.set_result(Transport(me.clone()));
                }
            })
        });
        if let Err(e) = queued {
            self.teardown();
            return Err(e);
        }
        Ok(())
    }

    // ---- the gate: every protocol call goes through here ----

    fn notify(self: &Rc<Self>, note: Note) {
        self.gate.notify(note, |note| self.deliver(note));
    }

    fn deliver(self: &Rc<Self>, note: Note) {
        if self.state.borrow().lost {
            return;
        }
        match note {
            Note::Made => {
                let t = Transport(self.clone());
                self.invoke("connection_made", |p| p.connection_made(&t));
            }
            Note::PauseWriting => self.invoke("pause_writing", |p| p.pause_writing()),
            Note::ResumeWriting => self.invoke("resume_writing", |p| p.resume_writing()),
            Note::Eof => {
                let mut keep_open = false;
                let ok = self.invoke_ok("eof_received", |p| keep_open = p.eof_received());
                // A read pipe has no write side to keep open.
                if ok && (!keep_open || self.kind == Kind::ReadPipe) {
                    Transport(self.clone()).close();
                }
            }
            Note::Lost(err) => {
                self.state.borrow_mut().lost = true;
                self.invoke("connection_lost", |p| p.connection_lost(err));
                self.teardown();
            }
        }
    }

    fn invoke(self: &Rc<Self>, what: &'static str, f: impl FnOnce(&mut dyn Protocol)) {
        self.invoke_ok(what, f);
    }

    /// Call the protocol; false if it panicked (or is gone). A panic aborts
    /// the transport.
    fn invoke_ok(self: &Rc<Self>, what: &'static str, f: impl FnOnce(&mut dyn Protocol)) -> bool {
        match self.gate.invoke(f) {
            Invoked::Ran(()) => true,
            Invoked::Gone => false,
            Invoked::Panicked(payload) => {
                self.panicked(what, payload);
                false
            }
        }
    }

    /// Protocol method `what` panicked: report it (or keep it for
    /// `Propagate`) and abort, unless it was the last call anyway.
    fn panicked(self: &Rc<Self>, what: &'static str, payload: Box<dyn std::any::Any + Send>) {
        let outcome = format!("the transport (fd {}) was aborted", self.fd);
        let lp = self.lp.upgrade();
        let err = self
            .gate
            .panicked(lp.as_ref(), "protocol", what, &outcome, payload);
        if what != "connection_lost" {
            self.force_close(Some(err));
        }
    }

    // ---- loop registrations ----

    fn set_reading(self: &Rc<Self>, on: bool) {
        self.set_watching(true, on);
    }

    fn set_writing(self: &Rc<Self>, on: bool) {
        self.set_watching(false, on);
    }

    /// Register or remove the reader (`readable`) or the writer.
    fn set_watching(self: &Rc<Self>, readable: bool, on: bool) {
        let was = {
            let mut st = self.state.borrow_mut();
            let flag = if readable {
                &mut st.reader_on
            } else {
                &mut st.writer_on
            };
            std::mem::replace(flag, on)
        };
        if was == on {
            return;
        }
        let sock = self.sock.borrow();
        let Some(s) = sock.as_ref() else { return };
        let me = Watch(self.clone(), readable);
        // A dropped loop has no registrations left to remove, and takes none.
        let added = match (self.lp.get(), readable, on) {
            (Ok(lp), true, true) => lp.add_reader(s, move || me.0.on_readable()),
            (Ok(lp), false, true) => lp.add_writer(s, move || me.0.on_writable()),
            (Ok(lp), true, false) => {
                lp.remove_reader(s);
                Ok(())
            }
            (Ok(lp), false, false) => {
                lp.remove_writer(s);
                Ok(())
            }
            (Err(e), _, true) => Err(e),
            (Err(_), _, false) => Ok(()),
        };
        if let Err(e) = added {
            drop(sock);
            let mut st = self.state.borrow_mut();
            *(if readable {
                &mut st.reader_on
            } else {
                &mut st.writer_on
            }) = false;
            drop(st);
            self.force_close(Some(e));
        }
    }

    // ---- I/O ----

    /// A write pipe is watched for reading too when readability means the
    /// read end closed (PI-03): on a FIFO or a socket. On a PTY or another
    /// character device it only means the other side wrote something
    /// (PI-04), so the write pipe learns of a closed reader from its next
    /// write instead, as asyncio's write-pipe transport decides.
    fn readable_means_reader_closed(&self) -> bool {
        let sock = self.sock.borrow();
        let Some(s) = sock.as_ref() else { return false };
        rustix::fs::fstat(s.as_fd()).is_ok_and(|st| {
            matches!(
                rustix::fs::FileType::from_raw_mode(st.st_mode),
                rustix::fs::FileType::Fifo | rustix::fs::FileType::Socket
            )
        })
    }

    fn on_readable(self: &Rc<Self>) {
        if self.kind == Kind::WritePipe {
            // The read end closed: nobody will take what is buffered.
            let lost_data = !self.state.borrow().buf.is_empty();
            let err = lost_data.then(|| {
                Error::from(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the pipe's reader closed with data still buffered",
                ))
            });
            self.force_close(err);
            return;
        }
        // Through the gate, which is free here (fd callbacks never run
        // inside a protocol method); were it not, the bytes would wait in
        // the kernel for the next iteration (level-triggered).
        let mut outcome = Read::Nothing;
        self.gate
            .call(|| outcome = self.read_once(), |note| self.deliver(note));
        match outcome {
            Read::Eof => self.read_eof(),
            Read::Failed(e) => self.force_close(Some(e.into())),
            Read::Nothing | Read::Delivered => {}
        }
    }

    /// One `recv`, with the gate held, in one protocol call: into the
    /// protocol's own buffer if it offers one (`get_buffer`, no copy), else
    /// into the thread's read buffer for `data_received`. The `recv` runs
    /// inside the call (no user code between it and the method it feeds),
    /// so a protocol pays one trip through the gate per read, either way.
    fn read_once(self: &Rc<Self>) -> Read {
        let stage = Cell::new("get_buffer");
        let mut copied = None;
        let outcome = self.gate.invoke(|p| {
            if let Some(v) = p.get_buffer(READ_SIZE) {
                if v.capacity() == v.len() {
                    v.reserve(READ_SIZE);
                }
                return match self.recv(|s| s.recv_append(v)) {
                    Ok(0) => Read::Eof,
                    Ok(n) => {
                        stage.set("buffer_updated");
                        p.buffer_updated(n);
                        Read::Delivered
                    }
                    Err(e) if would_block(&e) => Read::Nothing,
                    Err(e) => Read::Failed(e),
                };
            }
            let mut buf = READ_BUF.take();
            if buf.len() < READ_SIZE {
                buf.resize(READ_SIZE, 0);
            }
            let read = match self.recv(|s| s.recv(&mut buf[..])) {
                Ok(0) => Read::Eof,
                Ok(n) => {
                    stage.set("data_received");
                    p.data_received(&buf[..n]);
                    Read::Delivered
                }
                Err(e) if would_block(&e) => Read::Nothing,
                Err(e) => Read::Failed(e),
            };
            copied = Some(buf);
            read
        });
        if let Some(buf) = copied {
            READ_BUF.set(buf);
        }
        match outcome {
            Invoked::Ran(read) => read,
            Invoked::Gone => Read::Nothing,
            Invoked::Panicked(payload) => {
                self.panicked(stage.get(), payload);
                Read::Nothing
            }
        }
    }

    /// `f` on the socket, if it is still open (the borrow ends before any
    /// protocol code runs).
    fn recv(&self, f: impl FnOnce(&Endpoint) -> io::Result<usize>) -> io::Result<usize> {
        match &*self.sock.borrow() {
            Some(s) => f(s),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn read_eof(self: &Rc<Self>) {
        self.state.borrow_mut().read_eof = true;
        self.set_reading(false);
        self.notify(Note::Eof);
    }

    fn on_writable(self: &Rc<Self>) {
        let res = {
            let mut st = self.state.borrow_mut();
            let sock = self.sock.borrow();
            let Some(s) = sock.as_ref() else { return };
            if st.buf.is_empty() {
                Ok(())
            } else {
                match s.send(st.buf.pending()) {
                    Ok(n) => {
                        st.buf.consume(n);
                        Ok(())
                    }
                    Err(e) if would_block(&e) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = res {
            self.force_close(Some(e.into()));
            return;
        }
        self.after_send();
    }

    /// Bookkeeping after bytes left the buffer: resume the protocol, stop
    /// the writer, send a pending EOF, finish a pending close.
    fn after_send(self: &Rc<Self>) {
        let (resume, empty, shutdown, finish) = {
            let mut st = self.state.borrow_mut();
            let resume = st.protocol_paused && st.buf.at_or_below_low();
            if resume {
                st.protocol_paused = false;
            }
            let empty = st.buf.is_empty();
            let shutdown = empty && st.eof_requested && !st.eof_sent && !st.closing;
            if shutdown {
                st.eof_sent = true;
            }
            let finish = empty && st.closing && !st.lost_scheduled;
            if finish {
                st.lost_scheduled = true;
            }
            (resume, empty, shutdown, finish)
        };
        if empty {
            self.set_writing(false);
        }
        if shutdown && let Some(s) = &*self.sock.borrow() {
            s.shutdown_write();
        }
        if empty {
            self.wake_sent();
        }
        if resume {
            self.notify(Note::ResumeWriting);
        }
        if finish {
            self.schedule_lost(None);
        }
    }

    // ---- closing ----

    /// Abort: drop the buffer, stop watching, queue `connection_lost(err)`.
    fn force_close(self: &Rc<Self>, err: Option<Error>) {
        {
            let mut st = self.state.borrow_mut();
            if st.lost_scheduled {
                return;
            }
            st.lost_scheduled = true;
            st.closing = true;
            st.discarded |= !st.buf.is_empty();
            st.buf.clear();
        }
        self.set_reading(false);
        self.set_writing(false);
        self.schedule_lost(err);
    }

    /// The loop closed (or was dropped) under the transport: no callback
    /// will ever run again, so release the socket and the protocol now
    /// (without `connection_lost`, which nothing could run).
    fn release(self: &Rc<Self>) {
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        if std::mem::replace(&mut st.lost, true) {
            return;
        }
        // As a lost connection: closing, so that `write` refuses rather
        // than drop the bytes (or buffer them for good) with `Ok`.
        st.closing = true;
        drop(st);
        self.teardown();
    }

    fn schedule_lost(self: &Rc<Self>, err: Option<Error>) {
        let me = self.clone();
        if self
            .lp
            .get()
            .and_then(|lp| lp.call_soon(move || me.notify(Note::Lost(err))))
            .is_err()
        {
            // The loop is closed: no callback will ever run again.
            self.state.borrow_mut().lost = true;
            self.teardown();
        }
    }

    /// After `connection_lost`: unwatch, close the fd, drop the protocol
    /// (which may hold the last other clone of this transport).
    fn teardown(self: &Rc<Self>) {
        self.set_reading(false);
        self.set_writing(false);
        let sock = self.sock.borrow_mut().take();
        drop(sock);
        let protocol = self.gate.take();
        drop(protocol);
        let hook = self.on_lost.borrow_mut().take();
        if let Some(hook) = hook {
            hook();
        }
        self.wake_sent();
    }

    fn wake_sent(&self) {
        let wakers = std::mem::take(&mut *self.sent_wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }
}

/// An fd callback's hold on its transport. The loop drops its callbacks
/// when it closes; the transport and its protocol hold each other until
/// `connection_lost`, so that drop is the moment to release them, or the
/// socket would stay open for good.
///
/// The transport's own removals (`set_watching(false)`) clear its flag
/// first, so only a callback the loop dropped on its own releases it.
struct Watch(Rc<StreamInner>, bool);

impl Drop for Watch {
    fn drop(&mut self) {
        let Watch(me, readable) = self;
        // A borrowed state means transport code is on the stack: it is the
        // one removing this callback.
        let still_on = me.state.try_borrow().is_ok_and(|st| {
            if *readable {
                st.reader_on
            } else {
                st.writer_on
            }
        });
        if still_on && me.lp.upgrade().is_none_or(|lp| lp.is_closed()) {
            me.release();
        }
    }
}

impl Transport {
    /// The loop this transport runs on, while it exists (PEP 3156's
    /// `get_loop`). A transport holds its loop weakly: the loop holds the
    /// transport, through its fd callbacks.
    #[doc(alias = "get_loop")]
    pub fn event_loop(&self) -> Option<Loop> {
        self.0.lp.upgrade()
    }

    /// Send `data`: at once as far as the socket takes it, the rest buffered
    /// and sent in order as the socket drains (TP-04). Never blocks.
    ///
    /// Crossing the high-water mark calls the protocol's
    /// [`pause_writing`](Protocol::pause_writing): before `write` returns when
    /// called from outside the protocol (FC-03), right after the running
    /// protocol method returns when called from inside it.
    ///
    /// A send error (reset, broken pipe) is not returned here: the transport
    /// closes and the protocol gets `connection_lost(Some(error))`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] after [`write_eof`](Transport::write_eof)
    /// (TP-07) or once the transport is closing (after `close`, `abort` or a
    /// lost connection); the data is discarded. [`ErrorKind::Unsupported`]
    /// on the read end of a pipe.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io::Read, os::unix::net::UnixStream};
    /// use oneloop::{ErrorKind, Loop, Protocol};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {}
    ///
    /// let lp = Loop::new()?;
    /// let (ours, mut peer) = UnixStream::pair()?;
    /// let t = lp.run_until_complete(lp.connect_accepted_socket(|| Quiet, ours))??;
    ///
    /// t.write(b"hello")?;
    /// assert_eq!(t.write_buffer_size(), 0); // the socket took it all at once
    /// let mut got = [0; 5];
    /// peer.read_exact(&mut got)?;
    /// assert_eq!(&got, b"hello");
    ///
    /// t.close();
    /// assert_eq!(t.write(b"late").unwrap_err().kind(), ErrorKind::InvalidState);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.write_parts(&[data])
    }

    /// Write each chunk in order, with one vectored send (`sendmsg`) for
    /// all of them when nothing is buffered: one syscall, no copy of what
    /// the socket takes at once. What it does not take is buffered as by
    /// [`write`](Transport::write).
    ///
    /// # Errors
    /// As [`write`](Transport::write), and then nothing is written.
    ///
    /// # Examples
    ///
    /// A request head from its parts, without first copying them into one
    /// buffer:
    ///
    /// ```
    /// use std::{io::Read, os::unix::net::UnixStream};
    /// use oneloop::{Loop, Protocol};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {}
    ///
    /// let lp = Loop::new()?;
    /// let (ours, mut peer) = UnixStream::pair()?;
    /// let t = lp.run_until_complete(lp.connect_accepted_socket(|| Quiet, ours))??;
    ///
    /// let path = "/index.html";
    /// t.writelines([b"GET ".as_slice(), path.as_bytes(), b" HTTP/1.1\r\n\r\n"])?;
    /// let mut got = [0; 28];
    /// peer.read_exact(&mut got)?;
    /// assert_eq!(&got, b"GET /index.html HTTP/1.1\r\n\r\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "writev")]
    pub fn writelines<I>(&self, chunks: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let chunks: Vec<I::Item> = chunks.into_iter().collect();
        let parts: Vec<&[u8]> = chunks.iter().map(AsRef::as_ref).collect();
        self.write_parts(&parts)
    }

    /// [`write`](Transport::write) of `parts`, in order, as one write.
    #[inline]
    pub(crate) fn write_parts(&self, parts: &[&[u8]]) -> Result<()> {
        let inner = &self.0;
        if inner.kind == Kind::ReadPipe {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "write() on the read end of a pipe",
            ));
        }
        let (register, pause) = {
            let mut st = inner.state.borrow_mut();
            if st.eof_requested && !st.closing {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    "write() after write_eof()",
                ));
            }
            if st.closing {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    "write() on a closing transport",
                ));
            }
            let total: usize = parts.iter().map(|p| p.len()).sum();
            if total == 0 {
                return Ok(());
            }
            let was_empty = st.buf.is_empty();
            let mut sent = 0;
            if was_empty {
                let sock = inner.sock.borrow();
                let Some(s) = sock.as_ref() else {
                    return Ok(());
                };
                let res = match parts {
                    [one] => s.send(one),
                    _ => s.send_vectored(parts),
                };
                match res {
                    Ok(n) => sent = n,
                    Err(e) if would_block(&e) => {}
                    Err(e) => {
                        drop((sock, st));
                        inner.force_close(Some(e.into()));
                        return Ok(());
                    }
                }
                if sent == total {
                    return Ok(());
                }
            }
            // Buffer what the socket did not take, skipping the `sent` bytes.
            for part in parts {
                let skip = sent.min(part.len());
                sent -= skip;
                if skip < part.len() {
                    st.buf.push(&part[skip..]);
                }
            }
            let pause = !st.protocol_paused && st.buf.above_high();
            if pause {
                st.protocol_paused = true;
            }
            (was_empty, pause)
        };
        if register {
            inner.set_writing(true);
        }
        if pause {
            inner.notify(Note::PauseWriting);
        }
        Ok(())
    }

    /// Close the write side once the buffered data is sent (TCP half-close,
    /// TP-07). Idempotent; ignored on a closing transport. Reading goes on.
    /// On a write pipe it closes the pipe after the buffered data; on a read
    /// pipe it does nothing.
    ///
    /// # Examples
    ///
    /// The peer reads to the end of the request, then answers on the
    /// same connection:
    ///
    /// ```
    /// use std::{io::{Read, Write}, os::unix::net::UnixStream};
    /// use oneloop::{Error, Loop, LoopFuture, Protocol};
    ///
    /// struct Collect(Vec<u8>, LoopFuture<Vec<u8>>);
    /// impl Protocol for Collect {
    ///     fn data_received(&mut self, data: &[u8]) { self.0.extend_from_slice(data); }
    ///     fn connection_lost(&mut self, _: Option<Error>) { let _ = self.1.set_result(std::mem::take(&mut self.0)); }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let (ours, mut peer) = UnixStream::pair()?;
    /// let reply = lp.create_future();
    /// let r = reply.clone();
    /// let t = lp.run_until_complete(lp.connect_accepted_socket(move || Collect(Vec::new(), r), ours))??;
    ///
    /// t.write(b"ping")?;
    /// t.write_eof();
    /// assert!(t.is_reading()); // only our side is shut
    /// let mut request = Vec::new();
    /// peer.read_to_end(&mut request)?; // ends: the peer saw our EOF
    /// assert_eq!(request, b"ping");
    /// peer.write_all(b"pong")?;
    /// drop(peer);
    /// assert_eq!(lp.run_until_complete(reply)??, b"pong");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_eof(&self) {
        let inner = &self.0;
        match inner.kind {
            Kind::Socket => {}
            Kind::ReadPipe => return,
            // A pipe's EOF is its closing, after the buffered data.
            Kind::WritePipe => return self.close(),
        }
        let now = {
            let mut st = inner.state.borrow_mut();
            if st.closing || st.eof_requested {
                return;
            }
            st.eof_requested = true;
            let now = st.buf.is_empty();
            if now {
                st.eof_sent = true;
            }
            now
        };
        if now && let Some(s) = &*inner.sock.borrow() {
            s.shutdown_write();
        }
    }

    /// Whether [`write_eof`](Transport::write_eof) is supported: for stream
    /// sockets and write pipes, not for read pipes.
    pub fn can_write_eof(&self) -> bool {
        self.0.kind != Kind::ReadPipe
    }

    /// Ready(true) once everything written so far has left the buffer;
    /// Ready(false) once the connection has ended with bytes unsent (an
    /// abort, an error, the loop closing), after `connection_lost`, so
    /// whoever waits can read how it ended.
    #[cfg(feature = "net")] // its one caller: StreamWriter::poll_close
    pub(crate) fn poll_sent(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<bool> {
        use std::task::Poll;
        let inner = &self.0;
        let st = inner.state.borrow();
        let unsent = st.discarded || !st.buf.is_empty();
        if !unsent {
            return Poll::Ready(true);
        }
        if st.lost {
            return Poll::Ready(false);
        }
        drop(st);
        let mut wakers = inner.sent_wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Close gracefully: stop reading at once, send what is buffered, then
    /// call `connection_lost(None)` from a later callback (TP-05).
    /// [`is_closing`](Transport::is_closing) is true from now on. Idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io::Read, os::unix::net::UnixStream};
    /// use oneloop::{Error, Loop, LoopFuture, Protocol};
    ///
    /// struct Lost(LoopFuture<()>);
    /// impl Protocol for Lost {
    ///     fn connection_lost(&mut self, _: Option<Error>) { let _ = self.0.set_result(()); }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let (ours, mut peer) = UnixStream::pair()?;
    /// let lost = lp.create_future();
    /// let l = lost.clone();
    /// let t = lp.run_until_complete(lp.connect_accepted_socket(move || Lost(l), ours))??;
    ///
    /// t.write(b"bye")?;
    /// t.close();
    /// assert!(t.is_closing());
    /// assert!(!lost.done()); // connection_lost comes from a later callback
    /// lp.run_until_complete(lost)??;
    /// let mut rest = Vec::new();
    /// peer.read_to_end(&mut rest)?; // what was written, then EOF
    /// assert_eq!(rest, b"bye");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        let inner = &self.0;
        let flushed = {
            let mut st = inner.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            let flushed = st.buf.is_empty();
            if flushed {
                st.lost_scheduled = true;
            }
            flushed
        };
        inner.set_reading(false);
        if flushed {
            inner.schedule_lost(None);
        }
    }

    /// Close at once: discard the buffer, stop reading and writing, then
    /// call `connection_lost(None)` from a later callback — never from inside
    /// `abort` (TP-06). Idempotent, and harmless after `close`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use oneloop::{Error, Loop, LoopFuture, Protocol};
    ///
    /// struct Lost(LoopFuture<()>);
    /// impl Protocol for Lost {
    ///     fn connection_lost(&mut self, _: Option<Error>) { let _ = self.0.set_result(()); }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let (ours, _peer) = UnixStream::pair()?; // a peer that never reads
    /// let lost = lp.create_future();
    /// let l = lost.clone();
    /// let t = lp.run_until_complete(lp.connect_accepted_socket(move || Lost(l), ours))??;
    ///
    /// t.write(&vec![0; 4 << 20])?; // far more than the socket takes
    /// assert!(t.write_buffer_size() > 0);
    /// t.abort();
    /// assert_eq!(t.write_buffer_size(), 0); // discarded, not sent
    /// lp.run_until_complete(lost)??;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abort(&self) {
        self.0.force_close(None);
    }

    /// Whether the transport is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.0.state.borrow().closing
    }

    /// Stop reading: no `data_received` until
    /// [`resume_reading`](Transport::resume_reading), and the fd is no
    /// longer watched, so the kernel buffers fill and slow the peer (FC-04).
    /// Idempotent; ignored on a closing transport. Called inside
    /// `connection_made`, it holds back even the first read (FC-05).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::RefCell, io::Write, os::unix::net::UnixStream, rc::Rc};
    /// use oneloop::{Loop, LoopFuture, Protocol};
    ///
    /// struct Got(Rc<RefCell<Vec<u8>>>, LoopFuture<()>);
    /// impl Protocol for Got {
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         self.0.borrow_mut().extend_from_slice(data);
    ///         let _ = self.1.set_result(()); // the first data is in
    ///     }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let (ours, mut peer) = UnixStream::pair()?;
    /// let (got, arrived) = (Rc::new(RefCell::new(Vec::new())), lp.create_future());
    /// let (g, a) = (got.clone(), arrived.clone());
    /// let t = lp.run_until_complete(lp.connect_accepted_socket(move || Got(g, a), ours))??;
    ///
    /// t.pause_reading();
    /// assert!(!t.is_reading());
    /// peer.write_all(b"held back")?;
    /// lp.stop();
    /// lp.run_forever()?; // an iteration: the socket is not even watched
    /// assert!(got.borrow().is_empty());
    ///
    /// t.resume_reading();
    /// lp.run_until_complete(arrived)??;
    /// assert_eq!(*got.borrow(), b"held back");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pause_reading(&self) {
        let inner = &self.0;
        {
            let mut st = inner.state.borrow_mut();
            if st.closing || st.reading_paused || inner.kind == Kind::WritePipe {
                return;
            }
            st.reading_paused = true;
        }
        inner.set_reading(false);
    }

    /// Undo [`pause_reading`](Transport::pause_reading). Idempotent; ignored
    /// on a closing transport.
    pub fn resume_reading(&self) {
        let inner = &self.0;
        let start = {
            let mut st = inner.state.borrow_mut();
            if st.closing || !st.reading_paused || inner.kind == Kind::WritePipe {
                return;
            }
            st.reading_paused = false;
            st.made && !st.read_eof && !st.lost
        };
        if start {
            inner.set_reading(true);
        }
    }

    /// Whether the transport is receiving (not paused, not closing, not at EOF).
    pub fn is_reading(&self) -> bool {
        let st = self.0.state.borrow();
        self.0.kind != Kind::WritePipe && !st.closing && !st.reading_paused && !st.read_eof
    }

    /// Set the water marks of write flow control (FC-02). `None` for `high`
    /// means 64 KiB, or four times `low` if given; `None` for `low` means a
    /// quarter of `high`. `high = 0` pauses the protocol whenever anything is
    /// buffered. A buffer already above the new mark pauses the protocol now.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `low > high`; nothing changes.
    ///
    /// # Examples
    ///
    /// A producer told to pause when more than 64 KiB wait in the buffer,
    /// and to resume once they drained to 16 KiB:
    ///
    /// ```
    /// use std::{cell::Cell, io::Read, os::unix::net::UnixStream, rc::Rc};
    /// use oneloop::{ErrorKind, Loop, LoopFuture, Protocol};
    ///
    /// struct Producer { paused: Rc<Cell<bool>>, resumed: LoopFuture<()> }
    /// impl Protocol for Producer {
    ///     fn pause_writing(&mut self) { self.paused.set(true); }
    ///     fn resume_writing(&mut self) { self.paused.set(false); let _ = self.resumed.set_result(()); }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let (ours, mut peer) = UnixStream::pair()?;
    /// let (paused, resumed) = (Rc::new(Cell::new(false)), lp.create_future());
    /// let (p, r) = (paused.clone(), resumed.clone());
    /// let t = lp.run_until_complete(lp.connect_accepted_socket(move || Producer { paused: p, resumed: r }, ours))??;
    ///
    /// let bad = t.set_write_buffer_limits(Some(1024), Some(4096));
    /// assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidArgument); // low above high
    /// t.set_write_buffer_limits(Some(64 * 1024), Some(16 * 1024))?;
    /// assert_eq!(t.write_buffer_limits(), (16 * 1024, 64 * 1024));
    ///
    /// t.write(&vec![0; 1 << 20])?; // 1 MiB to a peer not reading yet
    /// assert!(paused.get() && t.is_writing_paused()); // told before `write` returned
    /// std::thread::spawn(move || peer.read_exact(&mut vec![0; 1 << 20]));
    /// lp.run_until_complete(resumed)??; // the peer drained it
    /// assert!(!paused.get());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let inner = &self.0;
        let pause = {
            let mut st = inner.state.borrow_mut();
            st.buf.set_limits(high, low)?;
            let pause = !st.closing && !st.protocol_paused && st.buf.above_high();
            if pause {
                st.protocol_paused = true;
            }
            pause
        };
        if pause {
            inner.notify(Note::PauseWriting);
        }
        Ok(())
    }

    /// Whether the buffer went above the high-water mark and has not yet
    /// drained to the low one: the state `pause_writing` announces. A
    /// protocol writing in a loop inside one of its own methods (where the
    /// `pause_writing` call is delivered only after it returns) checks this.
    pub fn is_writing_paused(&self) -> bool {
        self.0.state.borrow().protocol_paused
    }

    /// The water marks, as `(low, high)`.
    #[doc(alias = "get_write_buffer_limits")]
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        let st = self.0.state.borrow();
        (st.buf.low, st.buf.high)
    }

    /// The number of bytes buffered and not yet taken by the socket (exact).
    #[doc(alias = "get_write_buffer_size")]
    pub fn write_buffer_size(&self) -> usize {
        self.0.state.borrow().buf.len()
    }

    /// The address of the peer.
    pub fn peername(&self) -> Option<SocketAddress> {
        self.0.peer.clone()
    }

    /// The local address of the socket.
    pub fn sockname(&self) -> Option<SocketAddress> {
        self.0.local.clone()
    }

    /// The socket's fd, until `connection_lost`; for socket options. Do not
    /// read, write or close it behind the transport's back.
    pub fn socket_fd(&self) -> Option<RawFd> {
        self.0.sock.borrow().as_ref().map(|s| s.as_fd().as_raw_fd())
    }

    /// PEP 3156's extra information by name: `"peername"`, `"sockname"`,
    /// `"socket"`. An unknown name, or a value not available, gives `None`
    /// (TP-09).
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::transport::{ExtraInfo, SocketAddress};
    /// use oneloop::{Loop, Protocol};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {}
    ///
    /// let lp = Loop::new()?;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let t = lp.run_until_complete(lp.create_connection(|| Quiet, addr))??;
    /// assert_eq!(t.extra_info("peername"), Some(ExtraInfo::Address(SocketAddress::Inet(addr))));
    /// assert!(matches!(t.extra_info("socket"), Some(ExtraInfo::Fd(_))));
    /// assert_eq!(t.extra_info("compression"), None); // not a name oneloop knows
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "get_extra_info")]
    pub fn extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "peername" => self.peername().map(ExtraInfo::Address),
            "sockname" => self.sockname().map(ExtraInfo::Address),
            "socket" => self.socket_fd().map(ExtraInfo::Fd),
            _ => None,
        }
    }
}

/// Reads made by the protocol's owner instead of the fd callback: a
/// [`StreamReader`](crate::StreamReader) reading straight into its caller's
/// buffer (no copy in user space), with the fd watched for readiness only.
/// Every outcome is the fd callback's: the peer's EOF is delivered as
/// `eof_received`, a failed read closes the transport with its error, and
/// nothing is read while the transport is not reading (paused, closing,
/// past EOF, lost, or before `connection_made`).
#[cfg(feature = "net")] // its one caller: core/src/streams.rs
impl Transport {
    /// Whether a read may be made now (the conditions under which the fd
    /// callback reads).
    fn owner_may_read(&self) -> bool {
        let st = self.0.state.borrow();
        st.made
            && !st.closing
            && !st.lost
            && !st.reading_paused
            && !st.read_eof
            && self.0.kind != Kind::WritePipe
    }

    /// One `recv` into `buf` (not empty), outside any protocol method.
    /// `None`: the transport is not reading, nothing was read. `Ok(0)`: the
    /// peer's EOF, already delivered to the protocol when this returns.
    /// `WouldBlock`: nothing there now. Another error: the transport is
    /// closing with it (`connection_lost(Some(error))` follows).
    pub(crate) fn recv_direct(&self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        debug_assert!(!buf.is_empty(), "a zero-length recv reads as EOF");
        self.read_direct(|s| s.recv(buf))
    }

    /// [`recv_direct`](Transport::recv_direct) into the spare capacity of
    /// `v` (not zero), appended.
    pub(crate) fn recv_direct_append(&self, v: &mut Vec<u8>) -> Option<io::Result<usize>> {
        debug_assert!(v.capacity() > v.len(), "a zero-length recv reads as EOF");
        self.read_direct(|s| s.recv_append(v))
    }

    fn read_direct(
        &self,
        f: impl FnOnce(&Endpoint) -> io::Result<usize>,
    ) -> Option<io::Result<usize>> {
        if !self.owner_may_read() {
            return None;
        }
        let inner = &self.0;
        let res = inner.recv(f);
        match &res {
            Ok(0) => inner.read_eof(),
            Ok(_) => {}
            Err(e) if would_block(e) => {}
            Err(e) => {
                let lost = match e.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(e.kind(), e.to_string()),
                };
                inner.force_close(Some(lost.into()));
            }
        }
        Some(res)
    }

    /// Watch the fd for reading with `on_ready` in place of the transport's
    /// own reader (which it replaces if registered), until `on_ready`
    /// returns false, the transport stops reading (`pause_reading`, `close`,
    /// EOF, loss; `resume_reading` then brings the transport's own reader
    /// back) or the loop closes. The registered callback, on which the
    /// reading task parks ([`FdCallback::park`]); `None` when the transport
    /// is not reading.
    pub(crate) fn watch_readable(
        &self,
        mut on_ready: impl FnMut() -> bool + 'static,
    ) -> Option<Rc<FdCallback>> {
        if !self.owner_may_read() {
            return None;
        }
        let inner = &self.0;
        // A loop that is gone reads nothing more; its close released us.
        let lp = inner.lp.get().ok()?;
        let sock = inner.sock.borrow();
        let s = sock.as_ref()?;
        inner.state.borrow_mut().reader_on = true;
        // The loop's drop of this callback releases the transport, as for
        // the transport's own reader (`Watch`).
        let me = Watch(inner.clone(), true);
        let added = lp.add_reader_parkable(s, move || {
            if !on_ready() {
                me.0.set_reading(false);
            }
        });
        drop(sock);
        match added {
            Ok(cb) => Some(cb),
            Err(e) => {
                inner.state.borrow_mut().reader_on = false;
                inner.force_close(Some(e));
                None
            }
        }
    }
}
