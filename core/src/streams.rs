//! Streams over protocols: [`StreamReader`] / [`StreamWriter`] pairs that
//! implement `futures::io::{AsyncRead, AsyncBufRead, AsyncWrite}`, so codecs,
//! framed protocols and HTTP crates written against `futures-io` run on any
//! oneloop loop (asyncio's `open_connection` / `start_server`).
//!
//! # Reads: straight from the socket
//!
//! A read with nothing buffered is one `recv` straight into the caller's
//! buffer (`poll_read`) or the reader's own (`poll_fill_buf`), as tokio's
//! `TcpStream` reads: no copy in user space. While the reader waits, the
//! fd is watched by a callback that only wakes it, so the bytes stay in the
//! kernel until the task reads them; the task is parked on that callback
//! (`FdCallback::park`), so the poll that reports the fd wakes it at once
//! and it reads in the same loop iteration. Until the reader first waits (and
//! again after `resume_reading` on its transport), the transport's own
//! reader reads into a buffer of the protocol (`Protocol::get_buffer`),
//! which the reader serves first: bytes come out in the order they came in
//! whichever path read them.
//!
//! # Flow control
//!
//! Bytes nobody asked for wait in the kernel (the readiness callback stops
//! watching the fd while nobody reads), so a slow consumer pushes back on
//! the peer through the kernel; bytes the transport read itself wait in the
//! protocol's buffer, and above twice the limit (64 KiB by default) the
//! transport stops reading. `poll_write` waits while the transport is above
//! its high-water mark, so a fast producer cannot grow memory without bound.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::io;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker, ready};

use futures::io::{AsyncBufRead, AsyncRead, AsyncWrite};

use crate::error::{Error, Result};
use crate::event_loop::Loop;
use crate::net::server::Server;
use crate::protocol::Protocol;
use crate::scheduler::fds::FdCallback;
use crate::transport::Transport;

/// The reader's buffer limit (asyncio's default): reading pauses above twice this.
const DEFAULT_LIMIT: usize = 64 * 1024;

/// What `poll_write` takes at least when below the high-water mark.
const WRITE_CHUNK: usize = 64 * 1024;

/// The bounds of one read's room (see `StreamProtocol`).
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 256 * 1024;

/// What `poll_fill_buf` reads at most when it reads the socket itself.
const READ_CHUNK: usize = 64 * 1024;

/// What the protocol and the two stream halves share. Borrowed only for
/// bookkeeping, never across a transport call (which may call the
/// protocol, which borrows this).
#[derive(Debug, Default)]
struct State {
    incoming: Vec<u8>,
    eof: bool,
    error: Option<Error>,
    transport: Option<Transport>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    write_paused: bool,
    read_paused: bool,
    lost: bool,
    /// The reader's readiness callback is (as far as the reader knows)
    /// the fd's reader: see [`StreamReader::poll_next`].
    watching: bool,
    /// The last direct read got less than it asked for: the socket is
    /// most likely empty, so the next read waits for readiness instead
    /// of trying a `recv` that would fail.
    drained: bool,
    /// The readiness callback, on which a waiting read parks its task
    /// ([`FdCallback::park`]): the poll that reports the fd then wakes the
    /// task itself, so it reads in that iteration, not the next. Weak: the
    /// callback holds this state.
    parked_on: Weak<FdCallback>,
}

type Shared = Rc<RefCell<State>>;

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

type OnConnect = Box<dyn FnOnce(StreamReader, StreamWriter)>;

/// The protocol under a stream pair.
///
/// What the transport's own reader reads (before the reader first waits,
/// or after `resume_reading`; see the module docs) lands in `filling`
/// ([`Protocol::get_buffer`]), which is handed to the reader by swapping
/// vectors, not bytes, whenever the reader has consumed what it had; only
/// bytes arriving while unread ones wait are appended (copied) behind them.
struct StreamProtocol {
    shared: Shared,
    /// Both halves alive: when the last goes, the transport closes.
    halves: Rc<Cell<u8>>,
    on_connect: Option<OnConnect>,
    /// What the transport reads into.
    filling: Vec<u8>,
    /// The room offered for the next read: doubled when a read fills it,
    /// halved when reads stay small, so a busy stream reads big and an idle
    /// one keeps little memory.
    read_size: usize,
    /// The room the last read was offered.
    offered: usize,
}

impl StreamProtocol {
    /// Bytes were added to `incoming`: wake the reader, and pause reading
    /// above twice the limit.
    fn arrived(&mut self) {
        let (waker, pause) = {
            let mut st = self.shared.borrow_mut();
            // The transport's own reader read this: the reader's readiness
            // callback is not registered (any more).
            st.watching = false;
            let pause = !st.read_paused && st.incoming.len() > 2 * DEFAULT_LIMIT;
            if pause {
                st.read_paused = true;
            }
            (
                st.read_waker.take(),
                pause.then(|| st.transport.clone()).flatten(),
            )
        };
        if let Some(t) = pause {
            t.pause_reading();
        }
        wake(waker);
    }
}

impl Protocol for StreamProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        self.shared.borrow_mut().transport = Some(transport.clone());
        if let Some(f) = self.on_connect.take() {
            let (r, w) = pair(&self.shared, &self.halves, transport.clone());
            f(r, w);
        }
    }

    fn get_buffer(&mut self, _size_hint: usize) -> Option<&mut Vec<u8>> {
        let v = &mut self.filling;
        if v.is_empty() && v.capacity() > 4 * self.read_size {
            // A burst's big vector came back around: give it back.
            v.shrink_to(self.read_size);
        }
        if v.capacity() - v.len() < self.read_size {
            v.reserve(self.read_size);
        }
        self.offered = v.capacity() - v.len();
        Some(v)
    }

    fn buffer_updated(&mut self, nbytes: usize) {
        self.read_size = if nbytes >= self.offered {
            (self.read_size * 2).min(MAX_READ)
        } else if nbytes < self.read_size / 4 {
            (self.read_size / 2).max(MIN_READ)
        } else {
            self.read_size
        };
        {
            let mut st = self.shared.borrow_mut();
            if st.incoming.is_empty() {
                std::mem::swap(&mut st.incoming, &mut self.filling);
            } else {
                st.incoming.extend_from_slice(&self.filling);
                self.filling.clear();
            }
        }
        self.arrived();
    }

    fn data_received(&mut self, data: &[u8]) {
        self.shared.borrow_mut().incoming.extend_from_slice(data);
        self.arrived();
    }

    fn eof_received(&mut self) -> bool {
        let waker = {
            let mut st = self.shared.borrow_mut();
            st.eof = true;
            st.read_waker.take()
        };
        wake(waker);
        // Half-open: the writer may still send; it closes the transport.
        true
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        let (r, w, t) = {
            let mut st = self.shared.borrow_mut();
            st.lost = true;
            if st.error.is_none() {
                st.error = error;
            }
            (
                st.read_waker.take(),
                st.write_waker.take(),
                st.transport.take(),
            )
        };
        drop(t);
        wake(r);
        wake(w);
    }

    fn pause_writing(&mut self) {
        self.shared.borrow_mut().write_paused = true;
    }

    fn resume_writing(&mut self) {
        let w = {
            let mut st = self.shared.borrow_mut();
            st.write_paused = false;
            st.write_waker.take()
        };
        wake(w);
    }
}

/// The two halves over `transport`. Given, not taken from the shared
/// state: a connection lost before the halves are made (its
/// `connection_lost` ran before the task that awaited the transport) has
/// emptied that, and its halves must still be made, to report the loss.
fn pair(
    shared: &Shared,
    halves: &Rc<Cell<u8>>,
    transport: Transport,
) -> (StreamReader, StreamWriter) {
    halves.set(2);
    (
        StreamReader {
            shared: shared.clone(),
            halves: halves.clone(),
            transport: transport.clone(),
            buf: Vec::new(),
            pos: 0,
        },
        StreamWriter {
            shared: shared.clone(),
            halves: halves.clone(),
            transport,
        },
    )
}

fn release(halves: &Cell<u8>, transport: &Transport) {
    halves.set(halves.get().saturating_sub(1));
    if halves.get() == 0 {
        transport.close();
    }
}

fn to_io(e: &Error) -> io::Error {
    match e.io_error() {
        Some(io) => io::Error::new(io.kind(), io.to_string()),
        None => io::Error::other(e.clone()),
    }
}

/// The reading half of a stream: `AsyncRead` and `AsyncBufRead` (use
/// `futures::io::AsyncReadExt` / `AsyncBufReadExt` for `read_exact`,
/// `read_line`, `read_to_end`, …).
///
/// A read returns 0 at the peer's EOF; after a reset it fails with the
/// connection's error. When both halves are dropped the transport closes.
///
/// # Examples
///
/// A line protocol, read with `AsyncBufReadExt` straight from the
/// reader's buffer:
///
/// ```
/// use futures::io::{AsyncBufReadExt, AsyncWriteExt};
///
/// let lp = oneloop::Loop::new()?;
/// let (a, b) = std::os::unix::net::UnixStream::pair()?;
/// let lines = lp.run_until_complete(async {
///     let (mut reader, _) = lp.adopt_stream(a).await?.into_split();
///     let (_, mut writer) = lp.adopt_stream(b).await?.into_split();
///     writer.write_all(b"HELO\r\nQUIT\r\n").await?;
///     writer.close().await?; // EOF after the data
///     let mut lines = Vec::new();
///     let mut line = String::new();
///     while reader.read_line(&mut line).await? > 0 {
///         lines.push(line.trim_end().to_string());
///         line.clear();
///     }
///     assert!(reader.at_eof());
///     Ok::<_, Box<dyn std::error::Error>>(lines)
/// })?;
/// assert_eq!(lines?, ["HELO", "QUIT"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamReader {
    shared: Shared,
    halves: Rc<Cell<u8>>,
    transport: Transport,
    /// Bytes taken from the shared buffer in one swap; `buf[pos..]` unread.
    buf: Vec<u8>,
    pos: usize,
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("transport", &self.transport)
            .field("buffered", &(self.buf.len() - self.pos))
            .finish()
    }
}

impl StreamReader {
    /// The transport underneath (addresses, socket options).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Whether the peer's EOF was reached and every byte consumed.
    pub fn at_eof(&self) -> bool {
        let st = self.shared.borrow();
        self.pos == self.buf.len() && st.incoming.is_empty() && (st.eof || st.lost)
    }
}

/// What [`StreamReader::poll_next`] made ready.
enum Next {
    /// Bytes in the reader's own buffer (`buf[pos..]`); none at EOF.
    Buffered,
    /// This many bytes read straight into the caller's buffer; 0 at EOF.
    Direct(usize),
}

impl StreamReader {
    /// The one read behind `poll_read` and `poll_fill_buf`.
    ///
    /// Bytes already buffered come first, in order: the reader's own, then
    /// what the transport's fd callback read into the shared buffer. With
    /// nothing buffered, one `recv` straight from the socket: into `direct`
    /// when given (the caller's buffer: no copy in user space), else into
    /// the reader's own buffer. When the socket is empty the task waits
    /// with the fd watched by a readiness callback that only wakes it
    /// ([`Transport::watch_readable`]): the bytes stay in the kernel until
    /// the task reads them itself, so a slow reader pushes back on the
    /// peer with no buffer growing here, and no `pause_reading` needed.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        direct: Option<&mut [u8]>,
    ) -> Poll<io::Result<Next>> {
        if self.pos < self.buf.len() {
            return Poll::Ready(Ok(Next::Buffered));
        }
        let drained = {
            let mut st = self.shared.borrow_mut();
            if !st.incoming.is_empty() {
                self.buf.clear();
                self.pos = 0;
                std::mem::swap(&mut self.buf, &mut st.incoming);
                let resume = std::mem::take(&mut st.read_paused);
                drop(st);
                if resume {
                    self.transport.resume_reading();
                }
                return Poll::Ready(Ok(Next::Buffered));
            }
            if let Some(e) = &st.error {
                return Poll::Ready(Err(to_io(e)));
            }
            if st.eof || st.lost {
                return Poll::Ready(Ok(Next::Direct(0)));
            }
            if st.drained && st.watching {
                let parked_on = st.parked_on.upgrade();
                // Woken by the poll that reported the fd (in place of the
                // readiness callback): read.
                if parked_on.as_ref().is_some_and(|cb| cb.woke_parked()) {
                    st.drained = false;
                    drop(st);
                    drop(parked_on);
                    false
                } else {
                    // The common wait, in this one borrow.
                    set_waker(&mut st.read_waker, cx);
                    drop(st);
                    park(parked_on, cx);
                    return Poll::Pending;
                }
            } else {
                st.drained
            }
        };
        if !drained {
            // No borrow of the shared state here: an EOF or an error is
            // delivered to the protocol inside the call.
            let (asked, got) = match direct {
                Some(out) => (
                    out.len(),
                    self.transport.recv_direct(out).map(|r| r.map(Next::Direct)),
                ),
                None => {
                    self.buf.clear();
                    self.pos = 0;
                    self.buf.reserve(READ_CHUNK);
                    let asked = self.buf.capacity();
                    // Whatever came (nothing at EOF) is `buf[..]`.
                    let got = self.transport.recv_direct_append(&mut self.buf);
                    (asked, got.map(|r| r.map(|_| Next::Buffered)))
                }
            };
            match got {
                Some(Ok(next)) => {
                    let n = match next {
                        Next::Direct(n) => n,
                        Next::Buffered => self.buf.len(),
                    };
                    if n > 0 {
                        self.shared.borrow_mut().drained = n < asked;
                    }
                    return Poll::Ready(Ok(next));
                }
                Some(Err(e)) if would_block(&e) => self.shared.borrow_mut().drained = true,
                // The transport is closing with this error: it reaches both
                // halves alike through `connection_lost`, which wakes us.
                Some(Err(_)) => {}
                // Not reading now (paused, closing): the transport's own
                // reader or `connection_lost` wakes us.
                None => {}
            }
        }
        let watch = {
            let mut st = self.shared.borrow_mut();
            set_waker(&mut st.read_waker, cx);
            !st.watching
        };
        if watch {
            let shared = self.shared.clone();
            let cb = self.transport.watch_readable(move || on_readiness(&shared));
            let mut st = self.shared.borrow_mut();
            st.watching = cb.is_some();
            st.parked_on = cb.as_ref().map_or_else(Weak::new, Rc::downgrade);
            drop(st);
            park(cb, cx);
        } else {
            let parked_on = self.shared.borrow().parked_on.upgrade();
            park(parked_on, cx);
        }
        Poll::Pending
    }
}

/// Park the waiting read's task on the readiness callback `cb` (if it is
/// still registered), so that the poll reporting the fd wakes it. Only an
/// optimisation: the callback wakes the task too.
fn park(cb: Option<Rc<FdCallback>>, cx: &Context<'_>) {
    if let Some(cb) = cb {
        // A replaced waker is dropped here, outside every borrow.
        drop(cb.park(cx.waker()));
    }
}

/// The reader's readiness callback: wake the waiting reader; false to
/// stop watching (nobody reads: a level-triggered fd left unread would
/// report itself at every iteration).
fn on_readiness(shared: &Shared) -> bool {
    let mut st = shared.borrow_mut();
    // A report that found a task parked woke it without running this
    // (`FdCallback::park`): here nobody was parked, or the report came
    // before the task parked.
    st.drained = false;
    if st.read_waker.is_none() {
        st.watching = false;
        return false;
    }
    let w = st.read_waker.take();
    drop(st);
    wake(w);
    true
}

/// Keep `cx`'s waker in `slot`, cloning only a different one.
fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl AsyncBufRead for StreamReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        ready!(this.poll_next(cx, None))?;
        Poll::Ready(Ok(&this.buf[this.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.buf.len());
    }
}

impl AsyncRead for StreamReader {
    /// Straight from the socket into `out` when nothing is buffered (no
    /// copy in user space), else from the buffer.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match ready!(this.poll_next(cx, Some(&mut *out)))? {
            Next::Direct(n) => Poll::Ready(Ok(n)),
            Next::Buffered => {
                let avail = &this.buf[this.pos..];
                let n = avail.len().min(out.len());
                out[..n].copy_from_slice(&avail[..n]);
                this.pos += n;
                Poll::Ready(Ok(n))
            }
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // A read dropped while waiting (a cancelled `select!` arm) leaves
        // its waker: nothing must wake that task for this stream again.
        let (waker, parked_on) = {
            let mut st = self.shared.borrow_mut();
            (st.read_waker.take(), st.parked_on.upgrade())
        };
        drop(waker);
        drop(parked_on.and_then(|cb| cb.take_waiter()));
        release(&self.halves, &self.transport);
    }
}

/// The writing half of a stream: `AsyncWrite` (use
/// `futures::io::AsyncWriteExt` for `write_all`, …).
///
/// `poll_write` hands bytes to the transport — as many as fit under its
/// high-water mark, at least 64 KiB — and waits while the transport is above
/// the mark, so memory stays bounded whatever the peer does. `poll_flush` is asyncio's
/// `drain()`: it waits until the transport is below the mark; what is still
/// buffered is sent in the background, even after the writer is dropped.
/// `poll_close` sends EOF after the buffered data (a half-close: the reader
/// goes on) and returns once that data has gone to the kernel. When both
/// halves are dropped the transport closes, after flushing.
///
/// # Examples
///
/// `flush` waits only until the transport is below its high-water mark,
/// so a producer writing far faster than the peer reads keeps memory
/// bounded. `close` queues the EOF behind the buffered bytes and returns
/// once the loop has sent them all.
///
/// ```
/// use std::io::Read;
/// use futures::io::AsyncWriteExt;
///
/// let lp = oneloop::Loop::new()?;
/// let (ours, mut peer) = std::os::unix::net::UnixStream::pair()?;
/// let drained = lp.run_in_executor(move || {
///     let mut all = Vec::new();
///     peer.read_to_end(&mut all).map(|_| all.len()) // until our EOF
/// })?;
/// let total = lp.run_until_complete(async {
///     let (_, mut writer) = lp.adopt_stream(ours).await?.into_split();
///     for _ in 0..64 {
///         writer.write_all(&[7; 64 * 1024]).await?; // waits while the peer lags
///         let (_, high) = writer.transport().write_buffer_limits();
///         assert!(writer.transport().write_buffer_size() <= high + 64 * 1024); // the mark plus a chunk
///     }
///     writer.close().await?;
///     Ok::<_, Box<dyn std::error::Error>>(drained.take().await??)
/// })?;
/// assert_eq!(total?, 64 * 64 * 1024);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamWriter {
    shared: Shared,
    halves: Rc<Cell<u8>>,
    transport: Transport,
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("transport", &self.transport)
            .finish()
    }
}

impl StreamWriter {
    /// The transport underneath (addresses, buffer limits, `close`).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.borrow_mut();
        if st.lost {
            return Poll::Ready(Err(match &st.error {
                Some(e) => to_io(e),
                None => io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed"),
            }));
        }
        if st.write_paused {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        // Take at most what fits under the high-water mark (or one chunk):
        // a huge `write_all` to a peer that does not read then waits instead
        // of buffering everything (memory stays within the mark plus a chunk).
        // (A chunk always fits: no need to look at the buffer for one.)
        let buf = if buf.len() <= WRITE_CHUNK {
            buf
        } else {
            let (_, high) = self.transport.write_buffer_limits();
            let room = high
                .saturating_sub(self.transport.write_buffer_size())
                .max(WRITE_CHUNK);
            &buf[..buf.len().min(room)]
        };
        match self.transport.write(buf) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
        }
    }

    /// Several buffers in one vectored send (`sendmsg`), under the same
    /// bound as `poll_write`.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        let (_, high) = self.transport.write_buffer_limits();
        let mut room = high
            .saturating_sub(self.transport.write_buffer_size())
            .max(WRITE_CHUNK);
        let mut parts = Vec::with_capacity(bufs.len());
        for b in bufs {
            if room == 0 {
                break;
            }
            let take = b.len().min(room);
            parts.push(&b[..take]);
            room -= take;
        }
        let n = parts.iter().map(|p| p.len()).sum();
        match self.transport.write_parts(&parts) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_ready(cx)
    }

    /// Queue the EOF behind the buffered bytes, then wait until they have
    /// all gone to the kernel: a writer closed with `close().await` has
    /// lost nothing, whatever happens to the loop after. An error if the
    /// connection ended first.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.transport.write_eof();
        if ready!(self.transport.poll_sent(cx)) {
            return Poll::Ready(Ok(()));
        }
        let st = self.shared.borrow();
        Poll::Ready(Err(match &st.error {
            Some(e) => to_io(e),
            None => io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection ended before the buffered bytes were sent",
            ),
        }))
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        release(&self.halves, &self.transport);
    }
}

/// A whole stream: [`StreamReader`] and [`StreamWriter`] of one
/// connection as one object, implementing `AsyncRead`, `AsyncBufRead` and
/// `AsyncWrite` (what hyper, async-tungstenite and most `futures-io`
/// libraries take).
///
/// Make one with [`Loop::open_stream`], from an already connected socket
/// with [`Loop::adopt_stream`], or from a pair with [`Stream::join`]; split
/// it again with [`Stream::into_split`]. Dropping it closes the transport
/// after flushing, as dropping both halves does.
///
/// # Examples
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
///
/// let lp = oneloop::Loop::new()?;
/// let (a, b) = std::os::unix::net::UnixStream::pair()?;
/// let out = lp.run_until_complete(async {
///     let lp = oneloop::get_running_loop()?;
///     let (mut a, mut b) = (lp.adopt_stream(a).await?, lp.adopt_stream(b).await?);
///     a.write_all(b"ping").await?;
///     let mut got = [0; 4];
///     b.read_exact(&mut got).await?;
///     Ok::<_, Box<dyn std::error::Error>>(got)
/// })?;
/// assert_eq!(&out?, b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Stream {
    reader: StreamReader,
    writer: StreamWriter,
}

impl Stream {
    /// Join the two halves of one connection.
    ///
    /// # Errors
    /// Gives both back if they belong to different connections.
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::Stream;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let (a, b) = std::os::unix::net::UnixStream::pair()?;
    /// lp.run_until_complete(async {
    ///     let (ra, wa) = lp.adopt_stream(a).await?.into_split();
    ///     let (rb, wb) = lp.adopt_stream(b).await?.into_split();
    ///     let (ra, wb) = Stream::join(ra, wb).unwrap_err(); // two connections: refused
    ///     assert!(Stream::join(ra, wa).is_ok() && Stream::join(rb, wb).is_ok());
    ///     Ok::<_, oneloop::Error>(())
    /// })??;
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn join(
        reader: StreamReader,
        writer: StreamWriter,
    ) -> std::result::Result<Stream, (StreamReader, StreamWriter)> {
        if Rc::ptr_eq(&reader.shared, &writer.shared) {
            Ok(Stream { reader, writer })
        } else {
            Err((reader, writer))
        }
    }

    /// The two halves, to read and write from different tasks.
    pub fn into_split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    /// The transport underneath (addresses, socket options, buffer limits).
    pub fn transport(&self) -> &Transport {
        &self.writer.transport
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, out)
    }
}

impl AsyncBufRead for Stream {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().reader).consume(amt)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_close(cx)
    }
}

fn stream_protocol(on_connect: Option<OnConnect>) -> (StreamProtocol, Shared, Rc<Cell<u8>>) {
    let shared: Shared = Rc::default();
    let halves = Rc::new(Cell::new(0));
    (
        StreamProtocol {
            shared: shared.clone(),
            halves: halves.clone(),
            on_connect,
            filling: Vec::new(),
            read_size: 16 * 1024,
            offered: 0,
        },
        shared,
        halves,
    )
}

impl Loop {
    /// Connect over TCP and get a reader/writer pair (asyncio's
    /// `open_connection`).
    ///
    /// # Errors
    /// As [`create_connection`](Loop::create_connection).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// std::thread::spawn(move || {
    ///     let (mut s, _) = listener.accept().unwrap();
    ///     std::io::copy(&mut s.try_clone().unwrap(), &mut s).unwrap(); // echo
    /// });
    /// let echoed = lp.run_until_complete(async {
    ///     let (mut r, mut w) = oneloop::get_running_loop()?.open_connection(addr).await?;
    ///     w.write_all(b"hi").await?;
    ///     w.close().await?; // EOF after the data
    ///     let mut back = Vec::new();
    ///     r.read_to_end(&mut back).await?;
    ///     Ok::<_, Box<dyn std::error::Error>>(back)
    /// })?;
    /// assert_eq!(echoed.unwrap(), b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_connection<A>(
        &self,
        addr: A,
    ) -> impl StdFuture<Output = Result<(StreamReader, StreamWriter)>> + 'static
    where
        A: ToSocketAddrs + Send + 'static,
    {
        let (protocol, shared, halves) = stream_protocol(None);
        let fut = self.create_connection(move || protocol, addr);
        async move {
            let transport = fut.await?;
            Ok(pair(&shared, &halves, transport))
        }
    }

    /// Connect to a Unix socket and get a reader/writer pair.
    ///
    /// # Errors
    /// As [`create_unix_connection`](Loop::create_unix_connection).
    ///
    /// # Examples
    ///
    /// See [`start_unix_server`](Loop::start_unix_server).
    pub fn open_unix_connection(
        &self,
        path: impl AsRef<Path>,
    ) -> impl StdFuture<Output = Result<(StreamReader, StreamWriter)>> + 'static {
        let (protocol, shared, halves) = stream_protocol(None);
        let fut = self.create_unix_connection(move || protocol, path);
        async move {
            let transport = fut.await?;
            Ok(pair(&shared, &halves, transport))
        }
    }

    /// Connect over TCP and get one duplex [`Stream`].
    ///
    /// # Errors
    /// As [`create_connection`](Loop::create_connection).
    ///
    /// # Examples
    ///
    /// See [`start_server`](Loop::start_server), whose example is a client
    /// of the server it starts.
    pub fn open_stream<A>(&self, addr: A) -> impl StdFuture<Output = Result<Stream>> + 'static
    where
        A: ToSocketAddrs + Send + 'static,
    {
        let fut = self.open_connection(addr);
        async move { fut.await.map(joined) }
    }

    /// A duplex [`Stream`] on an already connected stream socket (a
    /// `std::net::TcpStream`, a `UnixStream`, an accepted or inherited
    /// socket); the socket is made non-blocking.
    ///
    /// # Errors
    /// As [`connect_accepted_socket`](Loop::connect_accepted_socket).
    pub fn adopt_stream(
        &self,
        socket: impl Into<std::os::fd::OwnedFd>,
    ) -> impl StdFuture<Output = Result<Stream>> + 'static {
        let (protocol, shared, halves) = stream_protocol(None);
        let fut = self.connect_accepted_socket(move || protocol, socket);
        async move {
            let transport = fut.await?;
            Ok(joined(pair(&shared, &halves, transport)))
        }
    }

    /// Serve TCP with streams: for each connection, `handler(reader, writer)`
    /// is spawned as a task on this loop (asyncio's `start_server`).
    ///
    /// The handler's future gives `()`: it handles its own errors (a
    /// connection reset is the peer's business, not the server's).
    ///
    /// # Errors
    /// As [`create_server`](Loop::create_server).
    ///
    /// # Examples
    ///
    /// A server that answers one line in upper case, and a client of it on
    /// the same loop:
    ///
    /// ```
    /// use futures::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let server = lp.run_until_complete(lp.start_server(
    ///     |mut reader, mut writer| async move {
    ///         let mut line = String::new();
    ///         if reader.read_line(&mut line).await.is_ok() {
    ///             let _ = writer.write_all(line.to_uppercase().as_bytes()).await;
    ///         }
    ///         // dropping both halves closes the connection, after flushing
    ///     },
    ///     "127.0.0.1:0",
    /// ))??;
    /// let addr = server.local_addrs()[0].as_inet().unwrap();
    ///
    /// let reply = lp.run_until_complete(async {
    ///     let mut stream = lp.open_stream(addr).await?;
    ///     stream.write_all(b"hello\n").await?;
    ///     let mut reply = String::new();
    ///     stream.read_to_string(&mut reply).await?;
    ///     Ok::<_, Box<dyn std::error::Error>>(reply)
    /// })?;
    /// assert_eq!(reply?, "HELLO\n");
    /// server.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_server<H, Fut, A>(
        &self,
        handler: H,
        addr: A,
    ) -> impl StdFuture<Output = Result<Server>> + 'static
    where
        H: Fn(StreamReader, StreamWriter) -> Fut + 'static,
        Fut: StdFuture<Output = ()> + 'static,
        A: ToSocketAddrs + Send + 'static,
    {
        self.create_server(stream_factory(self, handler), addr)
    }

    /// Serve a Unix socket with streams, as [`start_server`](Loop::start_server).
    ///
    /// # Errors
    /// As [`create_unix_server`](Loop::create_unix_server).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let path = std::env::temp_dir().join(format!("oneloop-doc-streams-{}.sock", std::process::id()));
    /// let server = lp.run_until_complete(lp.start_unix_server(
    ///     |_reader, mut writer| async move {
    ///         let _ = writer.write_all(b"hello").await;
    ///     },
    ///     &path,
    /// ))??;
    /// let reply = lp.run_until_complete(async {
    ///     let (mut reader, _writer) = lp.open_unix_connection(&path).await?;
    ///     let mut reply = Vec::new();
    ///     reader.read_to_end(&mut reply).await?;
    ///     Ok::<_, Box<dyn std::error::Error>>(reply)
    /// })?;
    /// assert_eq!(reply?, b"hello");
    /// server.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_unix_server<H, Fut>(
        &self,
        handler: H,
        path: impl AsRef<Path>,
    ) -> impl StdFuture<Output = Result<Server>> + 'static
    where
        H: Fn(StreamReader, StreamWriter) -> Fut + 'static,
        Fut: StdFuture<Output = ()> + 'static,
    {
        self.create_unix_server(stream_factory(self, handler), path)
    }
}

fn joined((reader, writer): (StreamReader, StreamWriter)) -> Stream {
    Stream { reader, writer }
}

fn stream_factory<H, Fut>(lp: &Loop, handler: H) -> impl Fn() -> StreamProtocol + 'static
where
    H: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = ()> + 'static,
{
    let handler = Rc::new(handler);
    // Weakly: the server holds this factory, and the loop the server.
    let lp = lp.downgrade();
    move || {
        let handler = handler.clone();
        let lp = lp.clone();
        let on_connect: OnConnect = Box::new(move |r, w| {
            let fut = handler(r, w);
            if let Err(e) = lp.get().and_then(|lp| lp.spawn(fut)) {
                tracing::warn!(target: "oneloop", "cannot start the stream handler: {e}");
            }
        });
        stream_protocol(Some(on_connect)).0
    }
}
