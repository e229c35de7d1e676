//! The loop's [`Selector`] registered with tokio's reactor: the one place
//! in this crate with `unsafe` code but the bridge thread's scheduling
//! policy (`sched.rs`) and a test's hand-made waker (`turn.rs`).
//!
//! `AsyncFd::register` is `unsafe` (tokio PR #8587): the fd must stay open,
//! and keep referring to the same open file description, for the life of
//! the `AsyncFd`, because tokio's reactor keys its registrations by pointer
//! and trusts the fd to be deregistered before it is closed. The fds a
//! oneloop user watches cannot promise that (a caller may close one while it
//! is watched, a caller error reachable from safe code), so none of them is
//! ever registered with tokio: they live in the selector, a private epoll
//! set keyed by fd number, and only the selector's own fd, which it owns,
//! is registered here. (The adapter used to register a private duplicate of
//! every watched fd instead: two fds per watched fd.)

use std::io;

use oneloop::native::Selector;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Register `selector` with the current tokio runtime, for readability.
///
/// Must run inside a runtime context.
pub(crate) fn register(selector: Selector) -> io::Result<AsyncFd<Selector>> {
    // SAFETY: the `AsyncFd` takes ownership of the selector, which owns its
    // epoll fd and closes it only when dropped, i.e. after the `AsyncFd`
    // deregistered it (or gave it back through `into_inner`); and
    // `Selector::as_raw_fd` always returns that same fd.
    unsafe { AsyncFd::register_with_interest(selector, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
