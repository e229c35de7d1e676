//! The connection factories of [`Loop`]: `create_connection`,
//! `connect_accepted_socket`, `create_unix_connection`, and name resolution
//! through the executor.

pub(crate) mod server;
pub(crate) mod udp;

use std::future::Future as StdFuture;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;
use crate::protocol::Protocol;
use crate::transport::{StreamInner, Transport};

/// Options of [`Loop::create_connection_with`].
///
/// # Examples
///
/// Connect from a chosen local address:
///
/// ```
/// use oneloop::{ConnectOptions, Loop, Protocol};
///
/// struct Quiet;
/// impl Protocol for Quiet {}
///
/// let lp = Loop::new()?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let from = "127.0.0.1:0".parse()?; // any free port on this address
/// let options = ConnectOptions::new().local_addr(from);
/// let t = lp.run_until_complete(lp.create_connection_with(|| Quiet, listener.local_addr()?, options))??;
/// let (_, seen_from) = listener.accept()?;
/// assert_eq!(t.sockname().and_then(|a| a.as_inet()), Some(seen_from));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Bind the socket to this local address before connecting.
    pub local_addr: Option<SocketAddr>,
}

impl ConnectOptions {
    /// No options: any local address.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// Bind to `addr` before connecting (asyncio's `local_addr`).
    pub fn local_addr(mut self, addr: SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }
}

impl Loop {
    /// Resolve `addr` on the executor (`getaddrinfo` blocks), as
    /// `std::net::ToSocketAddrs` does it.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the name does not resolve; [`ErrorKind::Closed`]
    /// if the loop is closed.
    ///
    /// # Cancel safety
    /// Dropping the future drops the answer; the lookup itself, a blocking
    /// call on an executor thread, runs to its end.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// let addrs = lp.run_until_complete(lp.getaddrinfo("127.0.0.1:80"))??;
    /// assert_eq!(addrs, ["127.0.0.1:80".parse().unwrap()]);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn getaddrinfo<A>(
        &self,
        addr: A,
    ) -> impl StdFuture<Output = Result<Vec<SocketAddr>>> + 'static
    where
        A: ToSocketAddrs + Send + 'static,
    {
        let lp = self.clone();
        async move {
            let job = lp.run_in_executor(move || {
                addr.to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>())
                    .map_err(Error::from)
            })?;
            job.await?
        }
    }

    /// Connect a TCP stream to `addr` and run the protocol made by `factory`
    /// on it. See [`create_connection_with`](Loop::create_connection_with).
    ///
    /// # Errors
    /// As [`create_connection_with`](Loop::create_connection_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::{Loop, Protocol, Transport};
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         let _ = t.write(b"hello");
    ///         t.close();
    ///     }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let t = lp.run_until_complete(lp.create_connection(|| Hello, addr))??;
    /// assert_eq!(t.peername().and_then(|a| a.as_inet()), Some(addr));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_connection<P, F, A>(
        &self,
        factory: F,
        addr: A,
    ) -> impl StdFuture<Output = Result<Transport>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
        A: ToSocketAddrs + Send + 'static,
    {
        self.create_connection_with(factory, addr, ConnectOptions::new())
    }

    /// Connect a TCP stream to `addr` with `options`, then make the protocol
    /// with `factory` and run it on the connection.
    ///
    /// `addr` is resolved on the executor; each address is tried in turn
    /// until one connects (no happy eyeballs). The future resolves once the
    /// protocol's `connection_made` has returned (D2, TP-03), with the
    /// transport — which may already be closing if `connection_made` closed
    /// it (TP-10). `TCP_NODELAY` is set, as asyncio does.
    ///
    /// # Errors
    /// The error of the last address tried ([`ErrorKind::Io`]: refused,
    /// unreachable, local address in use …); no protocol is made then
    /// (TP-11). [`ErrorKind::InvalidArgument`] if `addr` resolves to
    /// nothing; [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Cancel safety
    /// Dropping the future while it resolves or connects abandons the
    /// attempt: the socket is closed and no protocol is made. Once the
    /// connection is up the protocol is made and its `connection_made`
    /// queued; from then on the connection is the protocol's, and dropping
    /// the future does not close it.
    ///
    /// # Examples
    ///
    /// See [`ConnectOptions`].
    pub fn create_connection_with<P, F, A>(
        &self,
        factory: F,
        addr: A,
        options: ConnectOptions,
    ) -> impl StdFuture<Output = Result<Transport>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
        A: ToSocketAddrs + Send + 'static,
    {
        let lp = self.clone();
        async move {
            let addrs = lp.getaddrinfo(addr).await?;
            let mut last = None;
            for a in addrs {
                match connect_inet(&lp, a, &options).await {
                    Ok(sock) => return adopt(&lp, sock, Box::new(factory())).await,
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    "the address resolved to nothing",
                )
            }))
        }
    }

    /// Connect a Unix stream socket to `path` and run the protocol made by
    /// `factory` on it, as [`create_connection`](Loop::create_connection)
    /// does for TCP (UX-01).
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the connection fails (no such file, refused, a
    /// listener whose backlog is full: `WouldBlock`); no protocol is made
    /// then.
    ///
    /// # Examples
    ///
    /// See [`create_unix_server`](Loop::create_unix_server), whose example
    /// connects to the server it makes.
    pub fn create_unix_connection<P, F>(
        &self,
        factory: F,
        path: impl AsRef<Path>,
    ) -> impl StdFuture<Output = Result<Transport>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.clone();
        let addr = SockAddr::unix(path.as_ref());
        async move {
            let addr = addr?;
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            sock.set_nonblocking(true)?;
            connect(&lp, &sock, &addr).await?;
            adopt(&lp, sock, Box::new(factory())).await
        }
    }

    /// Run the protocol made by `factory` on an already connected or
    /// accepted stream socket (TP-11): the same call sequence as a
    /// connection made by the loop. The socket is made non-blocking.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `socket` is not a stream socket;
    /// [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// A connection accepted elsewhere (here by a plain `std` listener)
    /// handed to a protocol:
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{TcpListener, TcpStream};
    /// use oneloop::{Loop, Protocol, Transport};
    ///
    /// struct Greeter;
    /// impl Protocol for Greeter {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         let _ = t.write(b"welcome\n");
    ///     }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let mut client = TcpStream::connect(listener.local_addr()?)?;
    /// let (accepted, _) = listener.accept()?;
    /// let t = lp.run_until_complete(lp.connect_accepted_socket(|| Greeter, accepted))??;
    /// let mut greeting = [0; 8];
    /// client.read_exact(&mut greeting)?;
    /// assert_eq!(&greeting, b"welcome\n");
    /// t.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_accepted_socket<P, F>(
        &self,
        factory: F,
        socket: impl Into<OwnedFd>,
    ) -> impl StdFuture<Output = Result<Transport>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.clone();
        let sock = Socket::from(socket.into());
        async move {
            if sock.r#type()? != Type::STREAM {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "connect_accepted_socket needs a stream socket",
                ));
            }
            sock.set_nonblocking(true)?;
            adopt(&lp, sock, Box::new(factory())).await
        }
    }
}

/// Start a transport on a connected socket; resolve after `connection_made`.
pub(crate) async fn adopt(
    lp: &Loop,
    sock: Socket,
    protocol: Box<dyn Protocol>,
) -> Result<Transport> {
    let inner = StreamInner::new(lp, sock, protocol, None);
    let made = lp.create_future::<Transport>();
    inner.start(Some(made.clone()))?;
    made.await
}

async fn connect_inet(lp: &Loop, addr: SocketAddr, options: &ConnectOptions) -> Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(local) = options.local_addr {
        sock.bind(&local.into())
            .map_err(|e| annotate(e, format_args!("cannot bind to local address {local}")))?;
    }
    connect(lp, &sock, &addr.into())
        .await
        .map_err(|e| match e.io_error() {
            Some(io) => annotate(
                io::Error::new(io.kind(), io.to_string()),
                format_args!("connect to {addr}"),
            ),
            None => e,
        })?;
    Ok(sock)
}

/// A non-blocking connect: start it, wait for writability, read the outcome.
async fn connect(lp: &Loop, sock: &Socket, addr: &SockAddr) -> Result<()> {
    match sock.connect(addr) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
        // A Unix stream connect is never left in progress: EAGAIN means the
        // listener's backlog is full and the socket stays unconnected (it
        // turns writable at once, with no error pending), so waiting would
        // report a connection that was never made.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && !addr.is_unix() => {}
        Err(e) => return Err(e.into()),
    }
    let writable = lp.create_future::<()>();
    let w = writable.clone();
    lp.add_writer(sock, move || {
        let _ = w.set_result(());
    })?;
    // Removes the writer however this future ends, dropped included.
    struct Unwatch<'a>(&'a Loop, &'a Socket);
    impl Drop for Unwatch<'_> {
        fn drop(&mut self) {
            self.0.remove_writer(self.1);
        }
    }
    let _unwatch = Unwatch(lp, sock);
    writable.await?;
    match sock.take_error()? {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

pub(crate) fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// An [`ErrorKind::Io`] error that keeps the OS error's kind and says what
/// was being done.
pub(crate) fn annotate(e: io::Error, what: std::fmt::Arguments<'_>) -> Error {
    Error::from(io::Error::new(e.kind(), format!("{what}: {e}")))
}
