//! [`Server`]: listening sockets that make one protocol per accepted
//! connection (PEP 3156 §Servers), and the factories `create_server`,
//! `create_unix_server`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::{annotate, would_block};
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::{Loop, WeakLoop};
use crate::exception::{ExceptionContext, panic_message};
use crate::future::LoopFuture;
use crate::handle::TimerHandle;
use crate::protocol::Protocol;
use crate::transport::{SocketAddress, StreamInner};

/// Out of fds or kernel memory: accepting again at once would fail again.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(
            rustix::io::Errno::MFILE
                | rustix::io::Errno::NFILE
                | rustix::io::Errno::NOBUFS
                | rustix::io::Errno::NOMEM
        )
    )
}

/// After EMFILE/ENFILE/ENOBUFS/ENOMEM on accept, stop accepting this long:
/// the listening fd stays readable, so retrying at once would spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Connections accepted per readable event at most, so that a flood of
/// connects cannot starve the loop.
const ACCEPT_BATCH: usize = 64;

/// Options of [`Loop::create_server_with`].
///
/// # Examples
///
/// Two servers sharing one port (`SO_REUSEPORT`: the kernel spreads the
/// connections between them, as between the loops of several threads):
///
/// ```
/// use oneloop::{Loop, Protocol, ServerOptions};
///
/// struct Quiet;
/// impl Protocol for Quiet {}
///
/// let lp = Loop::new()?;
/// let options = ServerOptions::new().backlog(512).reuse_port(true);
/// let first = lp.run_until_complete(lp.create_server_with(|| Quiet, "127.0.0.1:0", options.clone()))??;
/// let addr = first.local_addrs()[0].as_inet().unwrap();
/// let second = lp.run_until_complete(lp.create_server_with(|| Quiet, addr, options))??;
/// assert_eq!(second.local_addrs()[0].as_inet(), Some(addr));
///
/// // Without it, the port is taken.
/// let taken = lp.run_until_complete(lp.create_server(|| Quiet, addr))?;
/// assert_eq!(taken.unwrap_err().kind(), oneloop::ErrorKind::Io);
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// `listen()` backlog (default 100, as asyncio).
    pub backlog: i32,
    /// `SO_REUSEADDR` (default true, as asyncio on Unix).
    pub reuse_address: bool,
    /// `SO_REUSEPORT` (default false).
    pub reuse_port: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            backlog: 100,
            reuse_address: true,
            reuse_port: false,
        }
    }
}

impl ServerOptions {
    /// The defaults: backlog 100, `SO_REUSEADDR` on, `SO_REUSEPORT` off.
    pub fn new() -> ServerOptions {
        ServerOptions::default()
    }
    /// Set the `listen()` backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }
    /// Set `SO_REUSEADDR`.
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }
    /// Set `SO_REUSEPORT` (several servers share a port).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }
}

type Factory = Box<dyn Fn() -> Box<dyn Protocol>>;

/// The socket file of a Unix server, and which file it was when bound.
struct UnixPath {
    path: PathBuf,
    /// Device and inode: another server may bind the path meanwhile (a
    /// successor in a restart), and its file is not this server's to
    /// remove (asyncio 3.13's `_stop_serving` checks the inode too).
    id: Option<(u64, u64)>,
}

impl UnixPath {
    fn bound(path: PathBuf) -> UnixPath {
        let id = file_id(&path);
        UnixPath { path, id }
    }

    /// Remove the file if it is still the one this server bound.
    fn remove_if_ours(&self) {
        if self.id.is_some() && file_id(&self.path) == self.id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

struct ServerInner {
    /// Weakly: the loop holds the server, through its listeners' reader
    /// callbacks and its back-off timer.
    lp: WeakLoop,
    /// Emptied (the fds closed) by `close()`.
    listeners: RefCell<Vec<Socket>>,
    addrs: Vec<SocketAddress>,
    /// A Unix socket file to remove on close, if it is still this
    /// server's.
    unix_path: Option<UnixPath>,
    factory: Factory,
    closed: Cell<bool>,
    /// Accepting now (false while backing off after EMFILE).
    accepting: Cell<bool>,
    /// Connections made and not yet lost.
    active: Cell<usize>,
    /// `wait_closed` callers: closed and no connection left.
    idle_waiters: RefCell<Vec<LoopFuture<()>>>,
    /// `serve_forever` callers: closed.
    close_waiters: RefCell<Vec<LoopFuture<()>>>,
    backoff: RefCell<Option<TimerHandle>>,
    /// The exception handler was told of the current shortage; it is told
    /// again only after an accept succeeds (once per pause, not per retry).
    shortage_reported: Cell<bool>,
}

/// A listening server: one protocol per accepted connection (TP-09).
///
/// Accepting starts as soon as the server is created and goes on (the loop
/// keeps the server alive) until [`close`](Server::close), even if this
/// handle is dropped.
///
/// # Examples
///
/// ```
/// use oneloop::{Loop, Protocol, Transport};
///
/// #[derive(Default)]
/// struct Echo(Option<Transport>);
/// impl Protocol for Echo {
///     fn connection_made(&mut self, t: &Transport) { self.0 = Some(t.clone()); }
///     fn data_received(&mut self, d: &[u8]) { let _ = self.0.as_ref().unwrap().write(d); }
///     fn connection_lost(&mut self, _: Option<oneloop::Error>) { self.0 = None; }
/// }
///
/// let lp = Loop::new()?;
/// let server = lp.run_until_complete(lp.create_server(Echo::default, "127.0.0.1:0"))??;
/// let addr = server.local_addrs()[0].as_inet().unwrap();
/// let client = std::thread::spawn(move || {
///     use std::io::{Read, Write};
///     let mut s = std::net::TcpStream::connect(addr).unwrap();
///     s.write_all(b"ping").unwrap();
///     let mut buf = [0; 4];
///     s.read_exact(&mut buf).unwrap();
///     buf
/// });
/// let done = lp.run_in_executor(move || client.join().unwrap())?;
/// assert_eq!(&lp.run_until_complete(done)??, b"ping");
/// server.close();
/// lp.run_until_complete(server.wait_closed())??;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Server(Rc<ServerInner>);

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.0.addrs)
            .field("closed", &self.0.closed.get())
            .field("active", &self.0.active.get())
            .finish()
    }
}

impl ServerInner {
    /// Watch every listener; on failure none stays watched.
    fn start_accepting(self: &Rc<Self>) -> Result<()> {
        self.accepting.set(true);
        let added = {
            let listeners = self.listeners.borrow();
            let lp = self.lp.get();
            listeners.iter().enumerate().try_for_each(|(i, l)| {
                let me = self.clone();
                lp.as_ref()
                    .map_err(Clone::clone)?
                    .add_reader(l, move || me.on_acceptable(i))
            })
        };
        if added.is_err() {
            self.stop_accepting();
        }
        added
    }

    fn stop_accepting(&self) {
        self.accepting.set(false);
        // A dropped loop took its callbacks with it.
        if let Some(lp) = self.lp.upgrade() {
            for l in self.listeners.borrow().iter() {
                lp.remove_reader(l);
            }
        }
    }

    /// Tell the loop's exception handler, if the loop is still there.
    fn report(&self, ctx: ExceptionContext) {
        if let Some(lp) = self.lp.upgrade() {
            lp.call_exception_handler(ctx);
        }
    }

    fn on_acceptable(self: &Rc<Self>, index: usize) {
        for _ in 0..ACCEPT_BATCH {
            let accepted = {
                let listeners = self.listeners.borrow();
                match listeners.get(index) {
                    Some(l) => l.accept(),
                    None => return,
                }
            };
            match accepted {
                Ok((sock, _)) => {
                    self.shortage_reported.set(false);
                    self.serve(sock);
                }
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    let resource = out_of_resources(&e);
                    let what = if resource {
                        format!(
                            "accept failed; the server stops accepting for {ACCEPT_RETRY_DELAY:?}"
                        )
                    } else {
                        "accept failed".to_string()
                    };
                    if !(resource && self.shortage_reported.replace(true)) {
                        self.report(ExceptionContext::new(what).with_error(e.into()));
                    }
                    if resource {
                        self.back_off();
                    }
                    return;
                }
            }
        }
    }

    /// Out of fds or memory: unwatch the listeners (they stay readable, so
    /// a retry now would spin) and retry after a pause.
    ///
    /// The retry timer holds the server, as the listeners' callbacks did:
    /// a server whose handle was dropped goes on serving after the pause.
    /// `close()` cancels the timer, and so does closing the loop.
    fn back_off(self: &Rc<Self>) {
        self.stop_accepting();
        let me = self.clone();
        let timer = self.lp.get().and_then(|lp| {
            lp.call_later(ACCEPT_RETRY_DELAY, move || {
                if me.closed.get() || me.accepting.get() {
                    return;
                }
                let Err(e) = me.start_accepting() else { return };
                // Still out of fds (watching one may need an fd of its own,
                // as on the tokio adapter): pause again; the handler was
                // told once, when the pause began.
                if e.io_error().is_some_and(out_of_resources) {
                    me.back_off();
                } else {
                    me.report(ExceptionContext::new("cannot resume accepting").with_error(e));
                }
            })
        });
        *self.backoff.borrow_mut() = timer.ok();
    }

    fn serve(self: &Rc<Self>, sock: Socket) {
        let Some(lp) = self.lp.upgrade() else { return };
        if let Err(e) = sock.set_nonblocking(true) {
            self.report(ExceptionContext::new("accepted socket").with_error(e.into()));
            return;
        }
        if sock.domain().is_ok_and(|d| d != Domain::UNIX) {
            let _ = sock.set_tcp_nodelay(true);
        }
        let protocol = match catch_unwind(AssertUnwindSafe(|| (self.factory)())) {
            Ok(p) => p,
            Err(payload) => {
                let msg = panic_message(&*payload);
                self.report(
                    ExceptionContext::new(
                        "the server's protocol factory panicked; connection dropped",
                    )
                    .with_panic(msg.clone())
                    .with_error(Error::new(ErrorKind::Panicked, msg)),
                );
                return;
            }
        };
        self.active.set(self.active.get() + 1);
        let weak: Weak<ServerInner> = Rc::downgrade(self);
        let on_lost = Box::new(move || {
            if let Some(me) = weak.upgrade() {
                me.active.set(me.active.get() - 1);
                me.wake_idle();
            }
        });
        let inner = StreamInner::new(&lp, sock, protocol, Some(on_lost));
        // On a closed loop `start` releases the transport (and the count).
        let _ = inner.start(None);
    }

    fn wake_idle(&self) {
        if self.closed.get() && self.active.get() == 0 {
            let waiters = std::mem::take(&mut *self.idle_waiters.borrow_mut());
            for w in waiters {
                let _ = w.set_result(());
            }
        }
    }
}

impl Server {
    /// The loop the server runs on, while it exists (PEP 3156's
    /// `get_loop`). A server holds its loop weakly: the loop holds the
    /// server, through its listeners' callbacks.
    #[doc(alias = "get_loop")]
    pub fn event_loop(&self) -> Option<Loop> {
        self.0.lp.upgrade()
    }

    /// Stop accepting and close the listening sockets, so new connects are
    /// refused; connections already made go on (TP-09). Idempotent.
    pub fn close(&self) {
        let inner = &self.0;
        if inner.closed.replace(true) {
            return;
        }
        inner.stop_accepting();
        let timer = inner.backoff.borrow_mut().take();
        if let Some(t) = timer {
            t.cancel();
        }
        let listeners = std::mem::take(&mut *inner.listeners.borrow_mut());
        drop(listeners);
        if let Some(path) = &inner.unix_path {
            path.remove_if_ours();
        }
        let waiters = std::mem::take(&mut *inner.close_waiters.borrow_mut());
        for w in waiters {
            let _ = w.set_result(());
        }
        inner.wake_idle();
    }

    /// Whether the server is accepting (false after [`close`](Server::close),
    /// while it backs off from fd exhaustion, and once its loop is closed).
    pub fn is_serving(&self) -> bool {
        !self.0.closed.get()
            && self.0.accepting.get()
            && self.0.lp.upgrade().is_some_and(|lp| !lp.is_closed())
    }

    /// Resolves once the server is closed and every connection it accepted
    /// has been lost (TP-09).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] if the loop closes first.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting.
    ///
    /// # Examples
    ///
    /// See [`Server`].
    pub fn wait_closed(&self) -> impl StdFuture<Output = Result<()>> + 'static {
        let inner = &self.0;
        let fut = inner.lp.get().map(|lp| lp.create_future::<()>());
        if let Ok(fut) = &fut {
            if inner.closed.get() && inner.active.get() == 0 {
                let _ = fut.set_result(());
            } else {
                inner.idle_waiters.borrow_mut().push(fut.clone());
            }
        }
        async move { fut?.await }
    }

    /// Serve until the server is closed. Dropping (cancelling) this future
    /// closes the server, as asyncio's `serve_forever`.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] if the loop closes first.
    ///
    /// # Cancel safety
    /// Dropping the future closes the server: that is how it is stopped.
    ///
    /// # Examples
    ///
    /// asyncio's shape: a task serves until it is cancelled.
    ///
    /// ```
    /// use std::io::Read;
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
    /// let server = lp.run_until_complete(lp.create_server(|| Hello, "127.0.0.1:0"))??;
    /// let addr = server.local_addrs()[0].as_inet().unwrap();
    /// let serving = lp.spawn(server.serve_forever())?;
    ///
    /// let client = lp.run_in_executor(move || -> std::io::Result<String> {
    ///     let mut reply = String::new();
    ///     std::net::TcpStream::connect(addr)?.read_to_string(&mut reply)?;
    ///     Ok(reply)
    /// })?;
    /// assert_eq!(lp.run_until_complete(client.take())???, "hello");
    ///
    /// serving.cancel();
    /// assert!(lp.run_until_complete(serving)?.unwrap_err().is_cancelled());
    /// assert!(!server.is_serving()); // closed as the future was dropped
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn serve_forever(&self) -> impl StdFuture<Output = Result<()>> + 'static {
        struct CloseOnDrop(Server);
        impl Drop for CloseOnDrop {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        let guard = CloseOnDrop(self.clone());
        let fut = self.0.lp.get().map(|lp| lp.create_future::<()>());
        if let Ok(fut) = &fut {
            if self.0.closed.get() {
                let _ = fut.set_result(());
            } else {
                self.0.close_waiters.borrow_mut().push(fut.clone());
            }
        }
        async move {
            let _guard = guard;
            fut?.await
        }
    }

    /// The addresses the server listens on (one per listening socket).
    pub fn local_addrs(&self) -> Vec<SocketAddress> {
        self.0.addrs.clone()
    }

    /// The listening sockets' fds (empty after close), for socket options.
    #[doc(alias = "sockets")]
    pub fn socket_fds(&self) -> Vec<RawFd> {
        self.0
            .listeners
            .borrow()
            .iter()
            .map(|s| s.as_raw_fd())
            .collect()
    }

    /// The number of connections accepted and not yet lost.
    pub fn active_connections(&self) -> usize {
        self.0.active.get()
    }
}

impl Loop {
    /// Listen on every address `addr` resolves to and serve each accepted
    /// connection with a new protocol from `factory` (TP-09). See
    /// [`create_server_with`](Loop::create_server_with).
    ///
    /// # Errors
    /// As [`create_server_with`](Loop::create_server_with).
    pub fn create_server<P, F, A>(
        &self,
        factory: F,
        addr: A,
    ) -> impl StdFuture<Output = Result<Server>> + 'static
    where
        P: Protocol,
        F: Fn() -> P + 'static,
        A: ToSocketAddrs + Send + 'static,
    {
        self.create_server_with(factory, addr, ServerOptions::new())
    }

    /// [`create_server`](Loop::create_server) with options (backlog,
    /// `SO_REUSEADDR`, `SO_REUSEPORT`). IPv6 sockets are `IPV6_V6ONLY`, so
    /// `::` and `0.0.0.0` can be served side by side.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if a socket cannot be bound (address in use) or
    /// listen; then no socket is left open (TP-11).
    /// [`ErrorKind::InvalidArgument`] if `addr` resolves to nothing.
    ///
    /// # Cancel safety
    /// Dropping the future before it resolves leaves nothing listening.
    ///
    /// # Examples
    ///
    /// See [`ServerOptions`].
    pub fn create_server_with<P, F, A>(
        &self,
        factory: F,
        addr: A,
        options: ServerOptions,
    ) -> impl StdFuture<Output = Result<Server>> + 'static
    where
        P: Protocol,
        F: Fn() -> P + 'static,
        A: ToSocketAddrs + Send + 'static,
    {
        let lp = self.clone();
        async move {
            let addrs = lp.getaddrinfo(addr).await?;
            if addrs.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "the address resolved to nothing",
                ));
            }
            let mut listeners = Vec::new();
            for a in addrs {
                let sock = Socket::new(Domain::for_address(a), Type::STREAM, None)?;
                if options.reuse_address {
                    sock.set_reuse_address(true)?;
                }
                if options.reuse_port {
                    sock.set_reuse_port(true)?;
                }
                if a.is_ipv6() {
                    sock.set_only_v6(true)?;
                }
                sock.bind(&a.into())
                    .map_err(|e| annotate(e, format_args!("cannot bind to {a}")))?;
                listeners.push(sock);
            }
            serve(&lp, listeners, None, options.backlog, boxed(factory))
        }
    }

    /// Listen on the Unix socket `path` and serve each connection with a new
    /// protocol from `factory` (UX-01). A stale socket file at `path` is
    /// replaced; the file is removed when the server closes, unless another
    /// server has bound the path since.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if `path` exists and is not a socket, or cannot be
    /// bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::{Error, Loop, LoopFuture, Protocol, Transport};
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         let _ = t.write(b"hello over a Unix socket");
    ///         t.close();
    ///     }
    /// }
    ///
    /// struct Collect(Vec<u8>, LoopFuture<Vec<u8>>);
    /// impl Protocol for Collect {
    ///     fn data_received(&mut self, data: &[u8]) { self.0.extend_from_slice(data); }
    ///     fn connection_lost(&mut self, _: Option<Error>) { let _ = self.1.set_result(std::mem::take(&mut self.0)); }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let path = std::env::temp_dir().join(format!("oneloop-doc-{}.sock", std::process::id()));
    /// let server = lp.run_until_complete(lp.create_unix_server(|| Hello, &path))??;
    ///
    /// let reply = lp.create_future();
    /// let r = reply.clone();
    /// lp.run_until_complete(lp.create_unix_connection(move || Collect(Vec::new(), r), &path))??;
    /// assert_eq!(lp.run_until_complete(reply)??, b"hello over a Unix socket");
    ///
    /// server.close();
    /// assert!(!path.exists()); // the socket file goes with the server
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_unix_server<P, F>(
        &self,
        factory: F,
        path: impl AsRef<Path>,
    ) -> impl StdFuture<Output = Result<Server>> + 'static
    where
        P: Protocol,
        F: Fn() -> P + 'static,
    {
        let lp = self.clone();
        let path = path.as_ref().to_path_buf();
        async move {
            use std::os::unix::fs::FileTypeExt;
            if let Ok(meta) = std::fs::symlink_metadata(&path)
                && meta.file_type().is_socket()
            {
                let _ = std::fs::remove_file(&path);
            }
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            sock.bind(&SockAddr::unix(&path)?)
                .map_err(|e| annotate(e, format_args!("cannot bind to {}", path.display())))?;
            let path = UnixPath::bound(path);
            serve(&lp, vec![sock], Some(path), 100, boxed(factory))
        }
    }
}

fn boxed<P: Protocol, F: Fn() -> P + 'static>(factory: F) -> Factory {
    Box::new(move || Box::new(factory()) as Box<dyn Protocol>)
}

fn serve(
    lp: &Loop,
    listeners: Vec<Socket>,
    unix_path: Option<UnixPath>,
    backlog: i32,
    factory: Factory,
) -> Result<Server> {
    let mut addrs = Vec::new();
    for l in &listeners {
        l.listen(backlog)?;
        l.set_nonblocking(true)?;
        addrs.push(SocketAddress::from_sockaddr(&l.local_addr()?));
    }
    let inner = Rc::new(ServerInner {
        lp: lp.downgrade(),
        listeners: RefCell::new(listeners),
        addrs,
        unix_path,
        factory,
        closed: Cell::new(false),
        accepting: Cell::new(false),
        active: Cell::new(0),
        idle_waiters: RefCell::new(Vec::new()),
        close_waiters: RefCell::new(Vec::new()),
        backoff: RefCell::new(None),
        shortage_reported: Cell::new(false),
    });
    let server = Server(inner.clone());
    if let Err(e) = inner.start_accepting() {
        server.close();
        return Err(e);
    }
    Ok(server)
}
