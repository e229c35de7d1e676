//! [`LentFd`]: a file descriptor the reactor may watch but never owns. The
//! one place in this crate with `unsafe` code.
//!
//! `async_io::Async<T>` registers `T::as_fd()` with the reactor and closes it
//! when dropped, through `T`'s own `Drop`. The fds oneloop watches belong to
//! its user (`Loop::add_reader` takes `impl AsFd` and keeps no owner), so the
//! `T` here is a plain number that lends the fd and never closes it, and
//! `Async::new_nonblocking` (not `Async::new`) leaves its blocking mode alone.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};

/// A watched fd, lent to the reactor for as long as it is registered.
///
/// # Invariant
/// The fd is open for the whole life of the value. Two owners uphold it:
/// - for a user fd, the adapter keeps its `Async<LentFd>` only between
///   `Backend::watch(fd, interest)` and `Backend::watch(fd, Interest::NONE)`
///   (or the backend's `close`/drop), and `Loop` documents that a registered
///   fd stays open until it is removed (as asyncio does);
/// - for the adapter's own wake socket, the socket is owned by an `Arc` that
///   the adapter drops only after the `Async<LentFd>` over it (field order of
///   `Core`).
#[derive(Debug)]
pub(crate) struct LentFd(RawFd);

impl LentFd {
    /// Lend `fd`, which must stay open while the value lives (the type's
    /// invariant, kept by the caller).
    ///
    /// # Errors
    /// `InvalidInput` for a negative number, which no open fd has.
    pub(crate) fn new(fd: RawFd) -> io::Result<LentFd> {
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{fd} is not a file descriptor"),
            ));
        }
        Ok(LentFd(fd))
    }
}

impl AsFd for LentFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `self.0` is not negative (checked in `new`), and by
        // the type's invariant it stays open for as long as `self` lives,
        // which outlives the returned borrow. Were a user to close a watched
        // fd against the `Loop` contract, the reactor's syscalls on the number
        // fail with EBADF (or act on an unrelated fd that reused the number,
        // as any poller would); no memory is touched through it.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}
