//! The echo servers: what to serve (`--server`) on which loop (`--loop`).
//!
//! | `--server` | what |
//! |---|---|
//! | `oneloop-protocol` | a [`Protocol`] whose `data_received` writes the bytes back ([`Loop::create_server`]) |
//! | `oneloop-streams` | a task per connection: `read` into a buffer, `write_all` it back ([`Loop::start_server`]) |
//! | `oneloop-callbacks` | no transport: the loop's own fd callbacks ([`Loop::add_reader`]) on each accepted socket, whose callback does the floor's `recv` and `send`; what the loop costs apart from the transport layer (the perf gate's table, not the matrix) |
//! | `raw` | the host's own primitive echo, no oneloop: a tokio task per connection (`tokio`), an `Async<TcpStream>` task on a `LocalExecutor` (`smol`: async-io's reactor and async-executor), a `g_unix_fd_add` source per connection (`glib`), a calloop `Generic` fd source per connection (`calloop`); none on `native` (the floor is its reference) |
//! | `floor` | the bare-epoll echo ([`floor`](super::floor)), on `native` only: the least any loop can do |
//!
//! The Python servers of the matrix (uvloop and CPython's own loop,
//! [`LoopKind::Uvloop`] and [`LoopKind::Asyncio`]) are `bench/python/echo_server.py`, not
//! this binary: [`supported`] is `false` for them here.
//!
//! `tokio-raw` is accepted for `raw` on `tokio`. Every server listens on
//! 127.0.0.1, has `TCP_NODELAY` on accepted sockets (oneloop's servers set it, as asyncio does; the raw ones set it themselves), and runs on the
//! calling thread until the control channel ends the process.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use oneloop::{Loop, Protocol, Transport};

use super::control;

/// What the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Server {
    /// oneloop's protocol API.
    Protocol,
    /// oneloop's streams over protocols.
    Streams,
    /// oneloop's fd callbacks with the floor's syscalls: no transport.
    Callbacks,
    /// The host's own echo, without oneloop.
    Raw,
    /// The bare-epoll echo: no loop at all.
    Floor,
}

/// Which event loop the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoopKind {
    /// oneloop's default loop (`Loop::new()`).
    Native,
    /// tokio (`oneloop-tokio`, or a current-thread runtime for `raw`).
    Tokio,
    /// smol's engine, async-io + async-executor (`oneloop-smol`);
    /// `async-std` and `async-io` are accepted as aliases.
    Smol,
    /// glib (`oneloop-glib`).
    Glib,
    /// calloop (`oneloop-calloop`).
    Calloop,
    /// calloop, attached: the server runs its own `EventLoop` (a
    /// compositor's shape) and oneloop is attached to it
    /// (`oneloop_calloop::attach`). Not in [`LoopKind::ALL`]: the perf gate
    /// counts it, the matrix does not run it.
    CalloopAttached,
    /// uvloop 0.23 under CPython (the Python servers of the matrix).
    Uvloop,
    /// CPython's own asyncio loop (the Python servers of the matrix).
    Asyncio,
}

impl Server {
    /// Every server kind, in the order of the tables.
    pub const ALL: [Server; 4] = [
        Server::Protocol,
        Server::Streams,
        Server::Raw,
        Server::Floor,
    ];
}

impl LoopKind {
    /// Every loop this binary serves on, in the order of the tables.
    pub const ALL: [LoopKind; 5] = [
        LoopKind::Native,
        LoopKind::Tokio,
        LoopKind::Smol,
        LoopKind::Glib,
        LoopKind::Calloop,
    ];

    /// The Python loops (served by `bench/python/echo_server.py`).
    pub const PYTHON: [LoopKind; 2] = [LoopKind::Uvloop, LoopKind::Asyncio];

    /// Whether this is one of the [`PYTHON`](LoopKind::PYTHON) loops.
    pub fn is_python(self) -> bool {
        matches!(self, LoopKind::Uvloop | LoopKind::Asyncio)
    }
}

impl FromStr for Server {
    type Err = String;
    fn from_str(s: &str) -> Result<Server, String> {
        match s {
            "oneloop-protocol" | "protocol" => Ok(Server::Protocol),
            "oneloop-streams" | "streams" => Ok(Server::Streams),
            "oneloop-callbacks" | "callbacks" => Ok(Server::Callbacks),
            "raw" | "tokio-raw" => Ok(Server::Raw),
            "floor" => Ok(Server::Floor),
            _ => Err(format!(
                "unknown server `{s}` (oneloop-protocol, oneloop-streams, oneloop-callbacks, raw, floor)"
            )),
        }
    }
}

impl FromStr for LoopKind {
    type Err = String;
    fn from_str(s: &str) -> Result<LoopKind, String> {
        match s {
            "native" | "default" => Ok(LoopKind::Native),
            "tokio" => Ok(LoopKind::Tokio),
            "smol" | "async-std" | "async-io" => Ok(LoopKind::Smol),
            "glib" => Ok(LoopKind::Glib),
            "calloop" => Ok(LoopKind::Calloop),
            "calloop-attached" => Ok(LoopKind::CalloopAttached),
            "uvloop" => Ok(LoopKind::Uvloop),
            "asyncio" => Ok(LoopKind::Asyncio),
            _ => Err(format!(
                "unknown loop `{s}` (native, tokio, smol, glib, calloop, calloop-attached, uvloop, asyncio)"
            )),
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Server::Protocol => "oneloop-protocol",
            Server::Streams => "oneloop-streams",
            Server::Callbacks => "oneloop-callbacks",
            Server::Raw => "raw",
            Server::Floor => "floor",
        })
    }
}

impl fmt::Display for LoopKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoopKind::Native => "native",
            LoopKind::Tokio => "tokio",
            LoopKind::Smol => "smol",
            LoopKind::Glib => "glib",
            LoopKind::Calloop => "calloop",
            LoopKind::CalloopAttached => "calloop-attached",
            LoopKind::Uvloop => "uvloop",
            LoopKind::Asyncio => "asyncio",
        })
    }
}

/// Whether this build can serve `server` on `kind` (the adapter's feature
/// is on, and the host has a raw echo here).
pub fn supported(server: Server, kind: LoopKind) -> bool {
    let adapter = match kind {
        LoopKind::Native => true,
        LoopKind::Tokio => cfg!(feature = "tokio"),
        LoopKind::Smol => cfg!(feature = "smol"),
        LoopKind::Glib => cfg!(feature = "glib"),
        LoopKind::Calloop | LoopKind::CalloopAttached => cfg!(feature = "calloop"),
        LoopKind::Uvloop | LoopKind::Asyncio => false,
    };
    match server {
        Server::Protocol | Server::Streams | Server::Callbacks => adapter,
        // tokio is a dependency of the bench crate whatever the features.
        Server::Raw => match kind {
            LoopKind::Tokio => true,
            LoopKind::Smol | LoopKind::Glib | LoopKind::Calloop => adapter,
            LoopKind::Native | LoopKind::CalloopAttached | LoopKind::Uvloop | LoopKind::Asyncio => {
                false
            }
        },
        Server::Floor => kind == LoopKind::Native,
    }
}

/// Serve echo on 127.0.0.1:`port` (0: any free port), announce the port and
/// answer control commands ([`control`]); never returns unless the server
/// fails to start or stops with an error.
///
/// # Errors
/// If the combination is not [`supported`], the loop cannot be built, or
/// the port cannot be bound.
pub fn run(server: Server, kind: LoopKind, port: u16) -> Result<(), Box<dyn std::error::Error>> {
    serve(server, kind, ([127, 0, 0, 1], port).into(), control::serve)
}

/// Serve echo on `addr` on the calling thread, calling `listening` with
/// the port once the server listens (from the loop's thread, before the
/// loop runs); never returns unless the server fails to start or stops with
/// an error. [`run`] is this with the control channel; the perf gate
/// (`icount`) starts its client here instead.
///
/// # Errors
/// If the combination is not [`supported`], the loop cannot be built, or
/// the port cannot be bound.
pub fn serve(
    server: Server,
    kind: LoopKind,
    addr: SocketAddr,
    listening: impl FnOnce(u16),
) -> Result<(), Box<dyn std::error::Error>> {
    if !supported(server, kind) {
        return Err(
            format!("`--server {server} --loop {kind}` is not available in this build").into(),
        );
    }
    match server {
        Server::Raw => return super::raw::run(kind, addr, listening),
        Server::Floor => return Ok(super::floor::run(addr, listening)?),
        Server::Protocol | Server::Streams | Server::Callbacks => {}
    }
    #[cfg(feature = "calloop")]
    if kind == LoopKind::CalloopAttached {
        return serve_calloop_attached(server, addr, listening);
    }
    let lp = new_loop(kind)?;
    let srv = match server {
        Server::Protocol => lp.run_until_complete(lp.create_server(Echo::default, addr))??,
        Server::Streams => lp.run_until_complete(lp.start_server(echo_stream, addr))??,
        Server::Callbacks => return serve_callbacks(&lp, addr, listening),
        Server::Raw | Server::Floor => unreachable!("handled above"),
    };
    let port = srv
        .local_addrs()
        .first()
        .and_then(|a| a.as_inet())
        .ok_or("the server has no address")?
        .port();
    listening(port);
    lp.run_forever()?;
    Ok(())
}

/// A compositor's shape: the server owns a calloop `EventLoop` and runs it
/// with `EventLoop::run`; oneloop is attached to it, and its server is
/// started from a oneloop task (an attached loop refuses `run_*`).
#[cfg(feature = "calloop")]
fn serve_calloop_attached(
    server: Server,
    addr: SocketAddr,
    listening: impl FnOnce(u16),
) -> Result<(), Box<dyn std::error::Error>> {
    use std::cell::RefCell;
    use std::rc::Rc;

    let mut event_loop: calloop::EventLoop<'static, ()> = calloop::EventLoop::try_new()?;
    let lp = oneloop_calloop::attach(event_loop.handle())?;
    let started: Rc<RefCell<Option<oneloop::Result<oneloop::Server>>>> = Rc::default();
    let (lp2, slot) = (lp.clone(), started.clone());
    lp.spawn(async move {
        let srv = match server {
            Server::Streams => lp2.start_server(echo_stream, addr).await,
            _ => lp2.create_server(Echo::default, addr).await,
        };
        *slot.borrow_mut() = Some(srv);
    })?;
    while started.borrow().is_none() {
        event_loop.dispatch(None, &mut ())?;
    }
    let srv = started.borrow_mut().take().expect("set above")?;
    let port = srv
        .local_addrs()
        .first()
        .and_then(|a| a.as_inet())
        .ok_or("the server has no address")?
        .port();
    listening(port);
    event_loop.run(None, &mut (), |_| {})?;
    Ok(())
}

/// A new oneloop loop of `kind` (owned mode).
///
/// # Errors
/// If the backend cannot be built or its feature is off (and for
/// [`LoopKind::CalloopAttached`], which only [`serve`] runs).
pub fn new_loop(kind: LoopKind) -> oneloop::Result<Loop> {
    match kind {
        LoopKind::Native => Loop::new(),
        #[cfg(feature = "tokio")]
        LoopKind::Tokio => oneloop_tokio::new_loop(),
        #[cfg(feature = "smol")]
        LoopKind::Smol => Loop::with_backend(oneloop_smol::SmolBackend::new()?),
        #[cfg(feature = "glib")]
        LoopKind::Glib => oneloop_glib::new_loop(),
        #[cfg(feature = "calloop")]
        LoopKind::Calloop => oneloop_calloop::new_loop(),
        #[allow(unreachable_patterns)]
        _ => Err(oneloop::Error::new(
            oneloop::ErrorKind::Unsupported,
            format!("loop `{kind}` is not in this build"),
        )),
    }
}

/// Bind a std listener on `addr` (for the raw servers).
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The echo protocol: every byte received is written back.
#[derive(Debug, Default)]
struct Echo(Option<Transport>);

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.0 = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.0 {
            // Fails only once the transport is closing: the connection is over.
            let _ = t.write(data);
        }
    }

    fn connection_lost(&mut self, _error: Option<oneloop::Error>) {
        self.0 = None;
    }
}

/// The callbacks echo: the floor's per-request work (one `recv` into a
/// 256 KiB buffer, one `send`) in fd callbacks of the loop, so that the
/// loop's own cost per request can be told apart from the transport's.
fn serve_callbacks(
    lp: &Loop,
    addr: SocketAddr,
    listening: impl FnOnce(u16),
) -> Result<(), Box<dyn std::error::Error>> {
    use std::cell::RefCell;
    use std::rc::Rc;

    let listener = Rc::new(bind(addr)?);
    let buf = Rc::new(RefCell::new(vec![0u8; super::floor::READ_SIZE]));
    let (lp2, l2) = (lp.clone(), listener.clone());
    lp.add_reader(&*listener, move || {
        while let Ok((stream, _)) = l2.accept() {
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let stream = Rc::new(stream);
            let (lp3, s2, buf) = (lp2.clone(), stream.clone(), buf.clone());
            let added = lp2.add_reader(&*stream, move || {
                let keep = super::floor::echo_once(&s2, &mut buf.borrow_mut()).unwrap_or(false);
                if !keep {
                    // Drops this callback, and with it the last `Rc` of
                    // the socket, once it returns.
                    lp3.remove_reader(&*s2);
                }
            });
            if added.is_err() {
                return;
            }
        }
    })?;
    listening(listener.local_addr()?.port());
    lp.run_forever()?;
    Ok(())
}

/// The streams echo: one task per connection.
async fn echo_stream(mut reader: oneloop::StreamReader, mut writer: oneloop::StreamWriter) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if writer.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = writer.close().await;
}
