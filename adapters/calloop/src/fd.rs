//! A borrowed fd that a calloop `Generic` can own: the one place in this
//! crate with `unsafe` code.
//!
//! `Generic<F: AsFd>` wants to own its `F`, but oneloop only lends the fd:
//! its user keeps the socket or pipe and promises to keep it open while it
//! is registered (`Loop::add_reader`). [`WatchedFd`] is that promise as a
//! type: an fd number that implements `AsFd` and never closes anything.

use std::os::fd::{AsFd, BorrowedFd, RawFd};

/// An fd lent by a oneloop user for as long as it is watched.
///
/// # Invariant
/// The fd stays open while a `WatchedFd` for it is registered with calloop:
/// the `Loop` API requires its user to remove a reader or writer before
/// closing the fd, and the backend drops (and unregisters) the `WatchedFd`
/// on that removal and on `close`.
#[derive(Debug)]
pub(crate) struct WatchedFd(RawFd);

impl WatchedFd {
    pub(crate) fn new(fd: RawFd) -> WatchedFd {
        WatchedFd(fd)
    }
}

impl AsFd for WatchedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: by the type's invariant the fd is open while registered,
        // and calloop only uses the borrow for `epoll_ctl` on registration
        // changes. An fd closed against the `Loop` contract makes those
        // syscalls fail with EBADF; they never touch memory. The borrow never
        // outlives `self`, and `WatchedFd` has no `Drop`: nothing is closed.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}
