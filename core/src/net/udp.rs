//! `create_datagram_endpoint`: UDP endpoints on the loop (UD-01…UD-04).

use std::future::Future as StdFuture;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Socket, Type};

use super::annotate;
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;
use crate::transport::{DatagramInner, DatagramProtocol, DatagramTransport};

/// Where a UDP endpoint binds and what it talks to
/// ([`Loop::create_datagram_endpoint`]).
///
/// # Examples
///
/// The two usual shapes: a server bound to a local address that answers
/// whoever writes, and a client connected to that server.
///
/// ```
/// use std::net::SocketAddr;
/// use oneloop::{DatagramOptions, DatagramProtocol, DatagramTransport, Error, Loop, LoopFuture};
///
/// /// Answers each datagram with its length.
/// struct Server(Option<DatagramTransport>);
/// impl DatagramProtocol for Server {
///     fn connection_made(&mut self, t: &DatagramTransport) { self.0 = Some(t.clone()); }
///     fn datagram_received(&mut self, data: &[u8], from: SocketAddr) {
///         if let Some(t) = &self.0 {
///             let _ = t.sendto(data.len().to_string().as_bytes(), Some(from));
///         }
///     }
///     fn connection_lost(&mut self, _: Option<Error>) { self.0 = None; }
/// }
///
/// /// Keeps the first answer.
/// struct Client(LoopFuture<Vec<u8>>);
/// impl DatagramProtocol for Client {
///     fn datagram_received(&mut self, data: &[u8], _from: SocketAddr) {
///         let _ = self.0.set_result(data.to_vec());
///     }
/// }
///
/// let lp = Loop::new()?;
/// let here = DatagramOptions::new().local_addr("127.0.0.1:0".parse()?);
/// let server = lp.run_until_complete(lp.create_datagram_endpoint(|| Server(None), here))??;
///
/// let answer = lp.create_future();
/// let a = answer.clone();
/// let there = DatagramOptions::new().remote_addr(server.sockname().unwrap());
/// let client = lp.run_until_complete(lp.create_datagram_endpoint(move || Client(a), there))??;
/// client.sendto(b"ping", None)?; // to the connected remote
/// assert_eq!(lp.run_until_complete(answer)??, b"4");
/// client.close();
/// server.close();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DatagramOptions {
    /// Bind here (default: any address of the remote's family, any port).
    pub local_addr: Option<SocketAddr>,
    /// Connect to this peer: `sendto(data, None)` goes there, and only its
    /// datagrams are received.
    pub remote_addr: Option<SocketAddr>,
    /// `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// `SO_BROADCAST`.
    pub allow_broadcast: bool,
}

impl DatagramOptions {
    /// No address, no socket options.
    pub fn new() -> DatagramOptions {
        DatagramOptions::default()
    }
    /// Bind to `addr`.
    pub fn local_addr(mut self, addr: SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }
    /// Connect to `addr`.
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.remote_addr = Some(addr);
        self
    }
    /// Set `SO_REUSEPORT`.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }
    /// Set `SO_BROADCAST`.
    pub fn allow_broadcast(mut self, on: bool) -> Self {
        self.allow_broadcast = on;
        self
    }
}

impl Loop {
    /// A UDP endpoint running the protocol made by `factory` (UD-01). The
    /// future resolves after `connection_made`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] with neither a local nor a remote
    /// address; [`ErrorKind::Io`] if binding or connecting fails (no
    /// protocol is made then).
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::{DatagramOptions, DatagramProtocol, DatagramTransport, Loop};
    ///
    /// struct Echo(Option<DatagramTransport>);
    /// impl DatagramProtocol for Echo {
    ///     fn connection_made(&mut self, t: &DatagramTransport) { self.0 = Some(t.clone()); }
    ///     fn datagram_received(&mut self, data: &[u8], from: std::net::SocketAddr) {
    ///         let _ = self.0.as_ref().unwrap().sendto(data, Some(from));
    ///     }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let opts = DatagramOptions::new().local_addr("127.0.0.1:0".parse().unwrap());
    /// let t = lp.run_until_complete(lp.create_datagram_endpoint(|| Echo(None), opts))??;
    /// let peer = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// peer.send_to(b"ping", t.sockname().unwrap())?;
    /// let got = lp.run_in_executor(move || {
    ///     let mut buf = [0; 4];
    ///     peer.recv_from(&mut buf).map(|_| buf).unwrap()
    /// })?;
    /// assert_eq!(&lp.run_until_complete(got)??, b"ping");
    /// t.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_datagram_endpoint<P, F>(
        &self,
        factory: F,
        options: DatagramOptions,
    ) -> impl StdFuture<Output = Result<DatagramTransport>> + 'static
    where
        P: DatagramProtocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.clone();
        async move {
            let sock = bind(&options)?;
            start(&lp, sock, Box::new(factory())).await
        }
    }

    /// A UDP endpoint over an already bound (and maybe connected) socket
    /// (UD-04). The socket is made non-blocking.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the socket cannot be made non-blocking;
    /// [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// For socket options [`DatagramOptions`] does not offer: set them on
    /// the socket, then hand it over.
    ///
    /// ```
    /// use oneloop::{DatagramProtocol, Loop};
    ///
    /// struct Quiet;
    /// impl DatagramProtocol for Quiet {}
    ///
    /// let lp = Loop::new()?;
    /// let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// sock.set_ttl(4)?;
    /// let addr = sock.local_addr()?;
    /// let t = lp.run_until_complete(lp.create_datagram_endpoint_from_socket(|| Quiet, sock))??;
    /// assert_eq!(t.sockname(), Some(addr));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_datagram_endpoint_from_socket<P, F>(
        &self,
        factory: F,
        socket: UdpSocket,
    ) -> impl StdFuture<Output = Result<DatagramTransport>> + 'static
    where
        P: DatagramProtocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.clone();
        async move {
            socket.set_nonblocking(true)?;
            start(&lp, socket, Box::new(factory())).await
        }
    }
}

fn bind(options: &DatagramOptions) -> Result<UdpSocket> {
    let family = options.local_addr.or(options.remote_addr).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            "a datagram endpoint needs a local or a remote address",
        )
    })?;
    let sock = Socket::new(Domain::for_address(family), Type::DGRAM, None)?;
    sock.set_nonblocking(true)?;
    if options.reuse_port {
        sock.set_reuse_port(true)?;
    }
    if options.allow_broadcast {
        sock.set_broadcast(true)?;
    }
    if let Some(local) = options.local_addr {
        sock.bind(&local.into())
            .map_err(|e| annotate(e, format_args!("cannot bind to {local}")))?;
    }
    if let Some(remote) = options.remote_addr {
        sock.connect(&remote.into())
            .map_err(|e| annotate(e, format_args!("cannot connect to {remote}")))?;
    }
    Ok(sock.into())
}

async fn start(
    lp: &Loop,
    sock: UdpSocket,
    protocol: Box<dyn DatagramProtocol>,
) -> Result<DatagramTransport> {
    let inner = DatagramInner::new(lp, sock, protocol);
    let made = lp.create_future::<DatagramTransport>();
    inner.start(made.clone())?;
    made.await
}
