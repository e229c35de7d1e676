//! Each host's own echo, without oneloop: the baselines of the echo table
//! (the performance plan's "raw echo on its own host").

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::server::LoopKind;

type BoxError = Box<dyn std::error::Error>;

/// Serve the raw echo of `kind` on `addr`, forever; `listening` gets the
/// port once bound.
pub(super) fn run(
    kind: LoopKind,
    addr: SocketAddr,
    listening: impl FnOnce(u16),
) -> Result<(), BoxError> {
    match kind {
        LoopKind::Tokio => tokio_echo(addr, listening),
        #[cfg(feature = "smol")]
        LoopKind::Smol => smol_echo(addr, listening),
        #[cfg(feature = "glib")]
        LoopKind::Glib => glib_echo(addr, listening),
        #[cfg(feature = "calloop")]
        LoopKind::Calloop => calloop_echo(addr, listening),
        #[allow(unreachable_patterns)]
        _ => Err(format!("no raw echo for `{kind}` in this build").into()),
    }
}

/// A task per connection on a current-thread runtime: what a tokio user
/// writes. With every driver enabled (`enable_all`, as `#[tokio::main]`
/// and the tokio adapter's owned loop have it): the time driver alone adds
/// about 310 instructions to each park (its clock reads and wheel), which a
/// runtime with `enable_io` only does not pay (1 786 a 1 KiB request then,
/// against 2 098), and which an application with a single timeout pays.
fn tokio_echo(addr: SocketAddr, listening: impl FnOnce(u16)) -> Result<(), BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(super::server::bind(addr)?)?;
        listening(listener.local_addr()?.port());
        loop {
            let (mut stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// A task per `Async<TcpStream>` on a `LocalExecutor` under
/// `async_io::block_on`: smol's (and async-std's) engine, as a smol user
/// writes it.
#[cfg(feature = "smol")]
fn smol_echo(addr: SocketAddr, listening: impl FnOnce(u16)) -> Result<(), BoxError> {
    use futures::io::{AsyncReadExt, AsyncWriteExt};

    let ex = async_executor::LocalExecutor::new();
    async_io::block_on(ex.run(async {
        let listener = async_io::Async::new(super::server::bind(addr)?)?;
        listening(listener.get_ref().local_addr()?.port());
        loop {
            let (mut stream, _) = listener.accept().await?;
            stream.get_ref().set_nodelay(true)?;
            ex.spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
    }))
}

/// A level-triggered calloop `Generic` source per connection, the callback
/// reading and writing back: calloop's own fd-callback style.
#[cfg(feature = "calloop")]
fn calloop_echo(addr: SocketAddr, listening: impl FnOnce(u16)) -> Result<(), BoxError> {
    use calloop::generic::Generic;
    use calloop::{EventLoop, Interest, Mode, PostAction};

    let mut event_loop: EventLoop<'_, ()> = EventLoop::try_new()?;
    let handle = event_loop.handle();
    let listener = super::server::bind(addr)?;
    listening(listener.local_addr()?.port());
    let inner = handle.clone();
    handle
        .insert_source(
            Generic::new(listener, Interest::READ, Mode::Level),
            move |_, listener, _| {
                loop {
                    let stream = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    stream.set_nonblocking(true)?;
                    stream.set_nodelay(true)?;
                    let mut buf = vec![0u8; 64 * 1024];
                    inner
                        .insert_source(
                            Generic::new(stream, Interest::READ, Mode::Level),
                            move |_, stream, _| {
                                Ok(if echo_readable(stream.as_ref(), &mut buf)? {
                                    PostAction::Continue
                                } else {
                                    PostAction::Remove
                                })
                            },
                        )
                        .map_err(|e| io::Error::other(e.to_string()))?;
                }
                Ok(PostAction::Continue)
            },
        )
        .map_err(|e| e.error)?;
    event_loop.run(None, &mut (), |_| {})?;
    Ok(())
}

/// A `g_unix_fd_add` source per connection on the default main context,
/// the callback reading and writing back: GLib's own fd-callback style.
#[cfg(feature = "glib")]
fn glib_echo(addr: SocketAddr, listening: impl FnOnce(u16)) -> Result<(), BoxError> {
    use std::os::fd::AsRawFd;

    use glib::{ControlFlow, IOCondition};

    let main_loop = glib::MainLoop::new(None, false);
    let listener = super::server::bind(addr)?;
    listening(listener.local_addr()?.port());
    let fd = listener.as_raw_fd();
    // The closure owns the listener (and each connection's closure its
    // stream): the fd lives exactly as long as its source.
    glib_unix::unix_fd_add_local(fd, IOCondition::IN, move |_, _| {
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return ControlFlow::Break,
            };
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let mut buf = vec![0u8; 64 * 1024];
            let fd = stream.as_raw_fd();
            glib_unix::unix_fd_add_local(
                fd,
                IOCondition::IN | IOCondition::HUP | IOCondition::ERR,
                move |_, _| match echo_readable(&stream, &mut buf) {
                    Ok(true) => ControlFlow::Continue,
                    _ => ControlFlow::Break,
                },
            );
        }
        ControlFlow::Continue
    });
    main_loop.run();
    Ok(())
}

/// One readiness callback of a raw fd-callback echo: read what is there,
/// write it back. `false` once the peer closed (or the socket failed).
#[allow(dead_code)] // unused when no fd-callback host is built
fn echo_readable(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    loop {
        let n = match stream.read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(false),
        };
        if write_all_nonblocking(stream, &buf[..n]).is_err() {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
    }
}

/// Write all of `data` to a non-blocking socket. Strict request/response
/// keeps the reply within the kernel's buffers, so waiting for `POLLOUT`
/// here is rare (a 100 KiB reply on a small buffer); it keeps the baseline
/// simple and correct rather than adding a write queue the host would need.
pub(super) fn write_all_nonblocking(mut stream: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [rustix::event::PollFd::new(
                    &stream,
                    rustix::event::PollFlags::OUT,
                )];
                rustix::event::poll(&mut fds, None)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
