//! What a stream transport reads and writes: a connected socket or a pipe end.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{RecvFlags, SendFlags};
use socket2::Socket;

/// The role of a stream transport's fd.
///
/// One transport serves sockets (feature `net`) and pipes (`process`); with
/// only one of the features on, the other's variants are never built, but
/// the code that handles them stays, so that both share every line of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(all(feature = "net", feature = "process")), allow(dead_code))]
pub(crate) enum Kind {
    /// A connected stream socket: both directions, half-close.
    Socket,
    /// The read end of a pipe (PI-01).
    ReadPipe,
    /// The write end of a pipe (PI-02).
    WritePipe,
}

/// The fd of a stream transport.
#[derive(Debug)]
#[cfg_attr(not(all(feature = "net", feature = "process")), allow(dead_code))]
pub(crate) enum Endpoint {
    Socket(Socket),
    Pipe(OwnedFd),
}

impl Endpoint {
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Endpoint::Socket(s) => rustix::net::recv(s, buf, RecvFlags::empty())
                .map(|(n, _)| n)
                .map_err(io::Error::from),
            Endpoint::Pipe(p) => rustix::io::read(p, buf).map_err(io::Error::from),
        }
    }

    /// Append what one read gives to `v`, into its spare capacity (which
    /// the caller made non-empty), with no zero-filling.
    pub(crate) fn recv_append(&self, v: &mut Vec<u8>) -> io::Result<usize> {
        use rustix::buffer::spare_capacity;
        match self {
            Endpoint::Socket(s) => rustix::net::recv(s, spare_capacity(v), RecvFlags::empty())
                .map(|(n, _)| n)
                .map_err(io::Error::from),
            Endpoint::Pipe(p) => rustix::io::read(p, spare_capacity(v)).map_err(io::Error::from),
        }
    }

    /// Sockets never raise SIGPIPE (`MSG_NOSIGNAL`); a pipe write relies on
    /// SIGPIPE being ignored, as Rust's runtime sets it up for binaries.
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Endpoint::Socket(s) => {
                rustix::net::send(s, buf, SendFlags::NOSIGNAL).map_err(io::Error::from)
            }
            Endpoint::Pipe(p) => rustix::io::write(p, buf).map_err(io::Error::from),
        }
    }

    /// Send `parts` in order with one syscall (`sendmsg`, or `writev` on a
    /// pipe), as many as the kernel takes; at most `IOV_MAX` parts go in one
    /// call. Returns the bytes taken.
    pub(crate) fn send_vectored(&self, parts: &[&[u8]]) -> io::Result<usize> {
        use std::io::IoSlice;
        // POSIX guarantees at least 16; Linux and the BSDs take 1024.
        const IOV_MAX: usize = 1024;
        let iov: Vec<IoSlice<'_>> = parts
            .iter()
            .take(IOV_MAX)
            .map(|p| IoSlice::new(p))
            .collect();
        match self {
            Endpoint::Socket(s) => rustix::net::sendmsg(
                s,
                &iov,
                &mut rustix::net::SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            )
            .map_err(io::Error::from),
            Endpoint::Pipe(p) => rustix::io::writev(p, &iov).map_err(io::Error::from),
        }
    }

    /// Half-close a socket. (A pipe's write side ends by closing it.)
    pub(crate) fn shutdown_write(&self) {
        if let Endpoint::Socket(s) = self {
            // ENOTCONN after a reset: the read side reports the reset.
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    }
}

impl AsFd for Endpoint {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Endpoint::Socket(s) => s.as_fd(),
            Endpoint::Pipe(p) => p.as_fd(),
        }
    }
}
