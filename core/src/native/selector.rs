//! [`Selector`]: the OS poller the default loop runs on, for any backend to
//! embed.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::sys::Registry;
use crate::backend::{Interest, Readiness, RemoteWake};

/// A private, level-triggered OS poller with a thread-safe wake: epoll on
/// Linux and Android, kqueue, event ports or `poll()` elsewhere (through
/// the `polling` crate).
///
/// It is everything [`Backend::watch`](crate::backend::Backend::watch) and
/// [`Backend::remote_waker`](crate::backend::Backend::remote_waker) ask for,
/// as one value with **one fd** of its own: the default loop blocks on it
/// directly; an adapter puts that one fd into its host (an `AsyncFd`, a
/// calloop `Generic`, a GLib unix-fd source) and calls
/// [`select`](Selector::select) with a zero timeout when the host says it is
/// readable. libuv's backend fd in a GLib loop is the same design. So
///
/// - the host watches one fd however many the loop watches, and never an fd
///   it does not own: a caller that closes a watched fd against the `Loop`
///   contract can only confuse this private set, keyed by fd number, never
///   a registration of the host's own (tokio's, async-io's and calloop's
///   reactors key theirs by pointer);
/// - readiness is level-triggered here, whatever the host does (tokio's
///   reactor is edge-triggered): [`select`](Selector::select) reports an fd
///   on every call while it stays ready, so an adapter re-selects until a
///   call reports nothing, and only then waits for the host;
/// - the wake is an eventfd (or `polling`'s notifier) inside the set: one
///   `write(2)`, async-signal-safe (D6), that makes the selector's fd
///   readable until the next `select` consumes it.
///
/// # I/O safety
///
/// [`watch`](Selector::watch) takes fd numbers, as `Backend::watch` does:
/// the fds belong to the loop's user, who lends each through `AsFd` for the
/// duration of `add_reader`/`add_writer` and, by the `Loop`'s contract
/// (asyncio's), keeps it open until it is removed. The selector keeps its
/// half by deleting every fd it added, on removal and in
/// [`clear`](Selector::clear). An fd closed against the contract leaves the
/// kernel's set by itself; the selector's syscalls on its number then fail
/// (`EBADF`, `ENOENT`) or act on whatever reused the number in this private
/// set. No memory is reached through an fd number.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsRawFd;
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
/// use oneloop::backend::Interest;
/// use oneloop::native::Selector;
///
/// let selector = Selector::new()?;
/// let (a, b) = UnixStream::pair()?;
/// selector.watch(a.as_raw_fd(), Interest::READABLE)?;
/// std::io::Write::write_all(&mut &b, b"x")?;
/// let mut seen = Vec::new();
/// let what = selector.select(Some(Duration::ZERO), |fd, r| seen.push((fd, r.readable)))?;
/// assert_eq!(seen, [(a.as_raw_fd(), true)]);
/// assert_eq!((what.fds, what.woken), (1, false));
/// // Level-triggered: still unread, so still reported.
/// assert_eq!(selector.select(Some(Duration::ZERO), |_, _| ())?.fds, 1);
///
/// selector.watch(a.as_raw_fd(), Interest::NONE)?;
/// selector.waker().wake(); // from any thread
/// let what = selector.select(None, |_, _| unreachable!())?;
/// assert!(what.woken && what.fds == 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Selector {
    registry: Registry,
}

/// What one [`Selector::select`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Selected {
    /// How many fds it reported ready.
    pub fds: usize,
    /// Whether a [`Selector::waker`] wake was pending (and is now consumed).
    pub woken: bool,
}

impl Selected {
    /// Whether it saw anything: a ready fd or a wake.
    pub fn any(self) -> bool {
        self.fds > 0 || self.woken
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("fd", &self.as_raw_fd())
            .field("watched", &self.len())
            .finish()
    }
}

impl Selector {
    /// A new, empty selector.
    ///
    /// # Errors
    /// If the OS poller (or its wake) cannot be created: out of fds, say.
    pub fn new() -> io::Result<Selector> {
        Ok(Selector {
            registry: Registry::new()?,
        })
    }

    /// The selector's thread-safe, async-signal-safe wake: the
    /// [`Backend::remote_waker`](crate::backend::Backend::remote_waker) of a
    /// backend that embeds it. A wake makes the selector's fd readable (and
    /// a blocked [`select`](Selector::select) return) until a `select`
    /// consumes it; wakes before then coalesce.
    pub fn waker(&self) -> Arc<dyn RemoteWake> {
        self.registry.waker()
    }

    /// Watch `fd` for `interest`, level-triggered, replacing the previous
    /// interest; [`Interest::NONE`] stops watching it. Exactly
    /// [`Backend::watch`](crate::backend::Backend::watch)'s contract, which
    /// a backend can forward here as it is.
    ///
    /// # Errors
    /// What the OS answers: `EBADF` for a closed fd (or a negative
    /// number, checked before the OS is asked), `EPERM` for one it
    /// cannot poll (a regular file, on epoll), `ENOMEM`/`ENOSPC` when the
    /// kernel's limits are reached. A failed call changes nothing.
    pub fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.registry.watch(fd, interest)
    }

    /// Wait up to `timeout` (`None`: until an fd is ready or a wake comes;
    /// zero: do not block) and call `ready` for each ready fd, in the order
    /// the kernel reports them (a bounded number per call: the rest stay
    /// ready for the next). Consumes a pending wake.
    ///
    /// A signal that interrupts the wait ends it with nothing seen on epoll;
    /// the `polling` path (other OSes) waits on until its timeout instead.
    /// A signal handler that must end the wait calls the
    /// [`waker`](Selector::waker), which works on both.
    ///
    /// # Errors
    /// What the OS answers to the wait itself; nothing is reported then.
    /// [`ResourceBusy`](io::ErrorKind::ResourceBusy) for a `select` made
    /// from inside another's `ready` callback, which is still handing out
    /// its events (`watch` may be called there).
    pub fn select(
        &self,
        timeout: Option<Duration>,
        ready: impl FnMut(RawFd, Readiness),
    ) -> io::Result<Selected> {
        self.registry.wait(timeout, ready)
    }

    /// Stop watching every fd (a backend's `close`). The wake stays usable.
    pub fn clear(&self) {
        self.registry.clear();
    }

    /// How many fds are watched.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether no fd is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The one fd a host watches for the selector: readable while a watched fd
/// is ready or a wake is pending. Only `select` may consume what it reports.
impl AsFd for Selector {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.registry.as_fd()
    }
}

impl AsRawFd for Selector {
    fn as_raw_fd(&self) -> RawFd {
        self.registry.as_fd().as_raw_fd()
    }
}
