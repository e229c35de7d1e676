//! Transports: the sending half of a connection, built only on
//! [`Loop::add_reader`](crate::Loop::add_reader) /
//! [`add_writer`](crate::Loop::add_writer), so every backend has them.
//!
//! # How a stream transport works
//!
//! One [`Transport`] owns one non-blocking socket and one boxed
//! [`Protocol`](crate::Protocol). Its invariants:
//!
//! 1. **One caller, never re-entrant.** Every protocol call goes through one
//!    gate (`gate.rs`, shared by the stream, datagram and subprocess
//!    transports): a flag says a protocol method is running, and a
//!    notification raised meanwhile (`pause_writing` from a `write()` inside
//!    `data_received`, a `connection_lost` from an `abort()`) is queued and
//!    delivered when the running method returns. The protocol is moved out
//!    of its cell while it runs, so no borrow is held across user code.
//! 2. **Short borrows.** The transport state is borrowed only between
//!    syscalls, never across a protocol call, a `Drop` of user data or a
//!    loop call that may run user code.
//! 3. **Reads are one `recv` per readiness** (level-triggered, as asyncio):
//!    a busy connection cannot starve others. `pause_reading` removes the
//!    reader, so the kernel buffer fills and the peer is slowed (FC-04).
//! 4. **Writes try the socket first**; only what the kernel refused is
//!    buffered, and the writer callback is registered only while the buffer
//!    is non-empty.
//! 5. **`connection_lost` runs once, from a fresh callback**, after which the
//!    protocol is dropped, the fd unwatched and closed. Until then the loop's
//!    reader and writer registrations keep the transport alive, so a protocol
//!    need not hold it — except while reading is paused with nothing to
//!    write: then a transport nobody holds is dropped, closing its socket.

#[cfg(feature = "process")]
mod child;
#[cfg(feature = "net")]
mod datagram;
mod endpoint;
mod gate;
#[cfg(feature = "process")]
pub(crate) mod pipe;
mod stream;
#[cfg(feature = "process")]
pub(crate) mod subprocess;
mod write_buffer;

#[cfg(feature = "net")]
pub(crate) use datagram::DatagramInner;
#[cfg(feature = "net")]
pub use datagram::{DatagramProtocol, DatagramTransport};
pub(crate) use stream::StreamInner;
pub use stream::Transport;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A socket address: an internet one or a Unix-domain one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketAddress {
    /// IPv4 or IPv6.
    Inet(SocketAddr),
    /// A Unix-domain socket path; `None` for an unnamed (or abstract) socket.
    Unix(Option<PathBuf>),
}

impl SocketAddress {
    /// The internet address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            SocketAddress::Inet(a) => Some(*a),
            SocketAddress::Unix(_) => None,
        }
    }

    #[cfg(feature = "net")]
    pub(crate) fn from_sockaddr(addr: &socket2::SockAddr) -> SocketAddress {
        match addr.as_socket() {
            Some(a) => SocketAddress::Inet(a),
            None => SocketAddress::Unix(addr.as_pathname().map(PathBuf::from)),
        }
    }
}

impl From<SocketAddr> for SocketAddress {
    fn from(a: SocketAddr) -> SocketAddress {
        SocketAddress::Inet(a)
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Inet(a) => write!(f, "{a}"),
            SocketAddress::Unix(Some(p)) => write!(f, "{}", p.display()),
            SocketAddress::Unix(None) => f.write_str("(unnamed)"),
        }
    }
}

/// A value of [`Transport::extra_info`], PEP 3156's optional transport
/// information by name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// `"peername"`, `"sockname"`.
    Address(SocketAddress),
    /// `"socket"`: the raw fd, valid until `connection_lost`.
    Fd(std::os::fd::RawFd),
}
