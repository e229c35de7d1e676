//! The cross-thread wake: an eventfd (a pipe off Linux) that tokio's reactor
//! watches for the driver task.
//!
//! `RemoteWake::wake` is a single `write(2)`, so it is safe from any thread
//! and from a signal handler (D6). Waking a tokio task directly from another
//! thread would take the `LocalSet`'s queue lock, which a signal handler that
//! interrupted the loop thread holding it would deadlock on. The write wakes
//! the runtime wherever it parks: the eventfd is in the reactor's epoll set.
//! The scheduler already coalesces (one wake per empty → non-empty inbox).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use oneloop::backend::RemoteWake;
use tokio::io::unix::AsyncFd;

/// The write end, shared with every `RemoteLoop` of the loop.
#[derive(Debug)]
pub(crate) struct WakeFd {
    fd: OwnedFd,
}

impl RemoteWake for WakeFd {
    fn wake(&self) {
        // EAGAIN means the counter (or the pipe) is already full of wakes:
        // the driver will see it. No other error is possible on a valid fd.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = rustix::io::write(&self.fd, &[1u8]);
    }
}

/// The read end, registered with tokio, owned by the driver's state.
#[derive(Debug)]
pub(crate) struct WakeReceiver {
    afd: AsyncFd<OwnedFd>,
}

/// A new wake pair. Must run inside a tokio runtime context.
pub(crate) fn pair() -> io::Result<(Arc<WakeFd>, WakeReceiver)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let (read, write) = {
        use rustix::event::{EventfdFlags, eventfd};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        (rustix::io::fcntl_dupfd_cloexec(&fd, 0)?, fd)
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let (read, write) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )?;
    let afd = crate::fd::register_owned(read)?;
    Ok((Arc::new(WakeFd { fd: write }), WakeReceiver { afd }))
}

impl WakeReceiver {
    /// Whether a wake arrived; consumes it and registers `cx` for the next.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> bool {
        let mut woken = false;
        while let Poll::Ready(Ok(mut guard)) = self.afd.poll_read_ready(cx) {
            let mut buf = [0u8; 64];
            match rustix::io::read(self.afd.get_ref(), &mut buf) {
                Ok(0) => return woken,
                Ok(_) => woken = true,
                Err(rustix::io::Errno::INTR) => {}
                // Drained: now the flag may be cleared (tokio's own rule).
                Err(_) => guard.clear_ready(),
            }
        }
        woken
    }
}
