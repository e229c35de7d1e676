//! [`Protocol`]: what a stream transport calls (PEP 3156 §Stream Protocols).

use crate::error::Error;
use crate::transport::Transport;

/// The receiving half of a stream connection (TCP, Unix socket): the
/// transport calls these methods, the protocol never calls itself.
///
/// The call order is fixed (TP-01): [`connection_made`](Protocol::connection_made)
/// exactly once, then [`data_received`](Protocol::data_received) zero or more
/// times (or, for a protocol that reads into its own buffer, pairs of
/// [`get_buffer`](Protocol::get_buffer) and
/// [`buffer_updated`](Protocol::buffer_updated)), then [`eof_received`](Protocol::eof_received) at most once, then
/// [`connection_lost`](Protocol::connection_lost) exactly once; nothing after
/// that. [`pause_writing`](Protocol::pause_writing) and
/// [`resume_writing`](Protocol::resume_writing) come in pairs between made and
/// lost (FC-01).
///
/// # Re-entrancy
///
/// The transport is the only caller of its protocol and never calls it while
/// one of its methods is already running. A notification that arises inside a
/// protocol method — `pause_writing` because `data_received` wrote past the
/// high-water mark — is delivered right after that method returns. Called from
/// anywhere else (a task, a timer), [`Transport::write`] delivers
/// `pause_writing` before it returns (FC-03). So `&mut self` is sound and no
/// borrow can fail.
///
/// # Panics
///
/// A protocol method that panics is caught: the loop's exception handler is
/// told (with the method's name), the transport is aborted, and
/// `connection_lost` still runs exactly once (unless it was `connection_lost`
/// that panicked). The loop and other connections carry on.
///
/// # Examples
///
/// An echo protocol:
///
/// ```
/// use oneloop::{Protocol, Transport};
///
/// #[derive(Default)]
/// struct Echo(Option<Transport>);
///
/// impl Protocol for Echo {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.0 = Some(transport.clone());
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         if let Some(t) = &self.0 {
///             let _ = t.write(data);
///         }
///     }
///     fn connection_lost(&mut self, _error: Option<oneloop::Error>) {
///         self.0 = None; // drop the transport: no cycle survives the connection
///     }
/// }
///
/// # let lp = oneloop::Loop::new()?;
/// let server = lp.run_until_complete(lp.create_server(Echo::default, "127.0.0.1:0"))??;
/// # server.close();
/// # Ok::<(), oneloop::Error>(())
/// ```
pub trait Protocol: 'static {
    /// The connection is up. Keep a clone of `transport` to write later.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Bytes arrived; `data` is never empty (TP-02). Chunking is arbitrary.
    fn data_received(&mut self, data: &[u8]) {
        let _ = data;
    }

    /// Zero-copy reads (asyncio's `BufferedProtocol`): the vector the
    /// transport appends the next read to, straight from the kernel into
    /// its spare capacity: no intermediate buffer, no copy, no zero-filling.
    /// `None` (the default) means [`data_received`](Protocol::data_received)
    /// instead; a protocol may answer either way from one read to the next.
    ///
    /// The read takes at most the vector's spare capacity; a vector with
    /// none gets `size_hint` bytes reserved first (the most the transport
    /// would read at once). So the protocol sizes its reads by what it
    /// reserves, and keeps idle connections small by keeping its vectors
    /// small.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// use oneloop::Protocol;
    ///
    /// /// Counts what the peer sends, read straight into one reused buffer.
    /// struct Count {
    ///     buf: Vec<u8>,
    ///     total: Rc<Cell<usize>>,
    /// }
    ///
    /// impl Protocol for Count {
    ///     fn get_buffer(&mut self, _size_hint: usize) -> Option<&mut Vec<u8>> {
    ///         self.buf.clear();
    ///         self.buf.reserve(4096);
    ///         Some(&mut self.buf)
    ///     }
    ///     fn buffer_updated(&mut self, nbytes: usize) {
    ///         // The last `nbytes` of `self.buf` are new.
    ///         self.total.set(self.total.get() + nbytes);
    ///     }
    /// }
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let total = Rc::new(Cell::new(0));
    /// let t = total.clone();
    /// let factory = move || Count { buf: Vec::new(), total: t.clone() };
    /// let server = lp.run_until_complete(lp.create_server(factory, "127.0.0.1:0"))??;
    /// let addr = server.local_addrs()[0].as_inet().unwrap();
    /// std::io::Write::write_all(&mut std::net::TcpStream::connect(addr)?, &[7; 10_000])?;
    /// while total.get() < 10_000 {
    ///     lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))??;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn get_buffer(&mut self, size_hint: usize) -> Option<&mut Vec<u8>> {
        let _ = size_hint;
        None
    }

    /// `nbytes` (never 0) were appended to the vector
    /// [`get_buffer`](Protocol::get_buffer) returned (asyncio's
    /// `buffer_updated`). EOF comes as
    /// [`eof_received`](Protocol::eof_received), as with `data_received`.
    fn buffer_updated(&mut self, nbytes: usize) {
        let _ = nbytes;
    }

    /// The peer will send no more. Return `true` to keep the connection
    /// half-open (you may still write, then close), `false` (the default)
    /// to let the transport close itself (TP-07).
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is gone: `None` after a clean close or abort, the
    /// error otherwise (reset by peer, broken pipe, a protocol panic).
    /// The last call this protocol gets; a good place to drop the
    /// [`Transport`] it kept.
    fn connection_lost(&mut self, error: Option<Error>) {
        let _ = error;
    }

    /// The transport's write buffer went above the high-water mark: stop
    /// writing until [`resume_writing`](Protocol::resume_writing).
    fn pause_writing(&mut self) {}

    /// The write buffer drained to the low-water mark: writing is welcome again.
    fn resume_writing(&mut self) {}
}

impl<P: Protocol + ?Sized> Protocol for Box<P> {
    fn connection_made(&mut self, transport: &Transport) {
        (**self).connection_made(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        (**self).data_received(data);
    }
    fn get_buffer(&mut self, size_hint: usize) -> Option<&mut Vec<u8>> {
        (**self).get_buffer(size_hint)
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        (**self).buffer_updated(nbytes);
    }
    fn eof_received(&mut self) -> bool {
        (**self).eof_received()
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        (**self).connection_lost(error);
    }
    fn pause_writing(&mut self) {
        (**self).pause_writing();
    }
    fn resume_writing(&mut self) {
        (**self).resume_writing();
    }
}
