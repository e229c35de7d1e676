//! The floor of the echo matrix: a bare level-triggered epoll echo server in
//! plain Rust (rustix), no framework. One `epoll_wait`, then per ready
//! socket one `recv` into a 256 KiB buffer (what oneloop's transports ask
//! per readable event) and one `send` of what came in, waiting in
//! `poll(POLLOUT)` on the rare reply that the socket buffer does not take
//! at once. This is the least any loop can do per request: the syscalls and
//! nothing else.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use rustix::event::epoll;

/// Bytes asked per `recv`, as oneloop's transports and uvloop.
pub(super) const READ_SIZE: usize = 256 * 1024;
/// The listener's key; connections use their fd number.
const LISTENER: u64 = u64::MAX;

/// Serve echo on `addr` forever; `listening` gets the port once bound.
///
/// # Errors
/// If the socket or epoll cannot be set up, or epoll fails.
pub fn run(addr: SocketAddr, listening: impl FnOnce(u16)) -> io::Result<()> {
    let listener = super::server::bind(addr)?;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(
        &ep,
        &listener,
        epoll::EventData::new_u64(LISTENER),
        epoll::EventFlags::IN,
    )?;
    listening(listener.local_addr()?.port());
    // Connections by fd number: the key epoll hands back.
    let mut conns: Vec<Option<TcpStream>> = Vec::new();
    let mut buf = vec![0u8; READ_SIZE];
    let mut events = Vec::with_capacity(64);
    loop {
        events.clear();
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            let key = ev.data.u64();
            if key == LISTENER {
                accept_all(&listener, &ep, &mut conns)?;
                continue;
            }
            let slot = &mut conns[key as usize];
            let keep = slot
                .as_ref()
                .is_some_and(|s| echo_once(s, &mut buf).unwrap_or(false));
            if !keep && let Some(s) = slot.take() {
                // Closing the fd removes it from the epoll set.
                drop(s);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    ep: &impl rustix::fd::AsFd,
    conns: &mut Vec<Option<TcpStream>>,
) -> io::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let fd = stream.as_raw_fd() as usize;
        epoll::add(
            ep,
            &stream,
            epoll::EventData::new_u64(fd as u64),
            epoll::EventFlags::IN,
        )?;
        if conns.len() <= fd {
            conns.resize_with(fd + 1, || None);
        }
        conns[fd] = Some(stream);
    }
}

/// One readable event: one `recv`, one `send` of it. `false` once the peer
/// closed or the socket failed.
pub(super) fn echo_once(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    let n = match stream.read(buf) {
        Ok(0) => return Ok(false),
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return Ok(true);
        }
        Err(e) => return Err(e),
    };
    super::raw::write_all_nonblocking(stream, &buf[..n])?;
    Ok(true)
}
