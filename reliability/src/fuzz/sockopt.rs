//! The one socket option the fuzzer sets on a live transport: `SO_LINGER`
//! with a zero timeout, so that the next close sends a reset (RST) instead
//! of a FIN: the "peer reset at a random point" fault.

use std::os::fd::BorrowedFd;

use oneloop::Transport;

/// Make `t`'s next close a reset. Returns false if the transport has no
/// socket any more (it was lost already).
pub(crate) fn reset_on_close(t: &Transport) -> bool {
    let Some(raw) = t.socket_fd() else {
        return false;
    };
    // SAFETY: `socket_fd` returns the transport's socket, which stays open
    // until its `connection_lost` (the documented use: socket options).
    // This runs on the loop's thread, where nothing can deliver
    // `connection_lost` until we return, and the borrow ends here.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::net::sockopt::set_socket_linger(fd, Some(std::time::Duration::ZERO)).is_ok()
}
