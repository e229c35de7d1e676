//! The wakes that reach the driver: the cross-thread [`RemoteWaker`] and
//! the per-fd [`FdWake`]s, all `Send + Sync` as std's `Waker` requires.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Wake;

use futures::task::AtomicWaker;
use oneloop::backend::RemoteWake;

/// `call_soon_threadsafe`'s wake: one byte down a socket pair whose read end
/// the driver watches through the reactor.
///
/// A `write(2)` is async-signal-safe (D6), which waking a task is not (an
/// executor takes locks). The scheduler already wakes only when its inbox
/// goes from empty to non-empty; `pending` coalesces further, so at most one
/// byte is in flight.
///
/// # Invariant
/// `pending` is true from the wake that wrote a byte until the driver, about
/// to dispatch, has read that byte and clears it; a wake that finds it true
/// knows a dispatch is coming that will see its post.
#[derive(Debug)]
pub(crate) struct RemoteWaker {
    pending: AtomicBool,
    /// Every `wake()`, coalesced or not: the owned driver ends its turn when
    /// it changed, so that `run_until_complete` polls its root future.
    wakes: AtomicU64,
    tx: UnixStream,
    /// The read end lives here, not in the driver, so a wake from a thread
    /// that outlives the loop writes to a socket that is still open (no
    /// EPIPE, no SIGPIPE).
    pub(crate) rx: UnixStream,
}

impl RemoteWaker {
    pub(crate) fn new() -> io::Result<RemoteWaker> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(RemoteWaker {
            pending: AtomicBool::new(false),
            wakes: AtomicU64::new(0),
            tx,
            rx,
        })
    }

    /// The driver is about to dispatch: empty the socket, then accept
    /// further wakes. Posts made before this call are seen by that dispatch.
    ///
    /// In this order: a wake between the read and the store writes nothing
    /// (its post is seen by the coming dispatch), and every wake after the
    /// store writes a byte that stays unread. Clearing first would let a
    /// wake's byte be read while `pending` stays true: every later wake
    /// would then skip its write and be lost.
    pub(crate) fn consume(&self) {
        // At most one byte is in flight; one read takes it.
        let mut buf = [0u8; 8];
        let _ = (&self.rx).read(&mut buf);
        self.pending.store(false, Ordering::SeqCst);
    }

    /// How many wakes there were so far.
    pub(crate) fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl RemoteWake for RemoteWaker {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if !self.pending.swap(true, Ordering::SeqCst) {
            // WouldBlock means the buffer already holds unread wakes: the
            // driver will see them. Nothing else can fail on a live pair.
            let _ = (&self.tx).write(&[1]);
        }
    }
}

/// Which side of an fd a wake is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Readable.
    Read,
    /// Writable.
    Write,
}

/// An fd side the reactor reported: the fd, the registration it was made
/// for (fd numbers are reused), the side.
pub(crate) type Reported = (RawFd, u64, Side);

/// What woke the driver from the reactor's side: which fd sides, plus the
/// driver's waker.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    /// The driver task's waker; fd wakes may come from the reactor running
    /// on another thread (async-io's fallback thread), hence atomic.
    pub(crate) driver: AtomicWaker,
    /// Fd sides the reactor reported since the driver last looked.
    fds: Mutex<Vec<Reported>>,
}

impl Wakeups {
    /// The fd sides reported since the last call, in report order.
    pub(crate) fn take_fds(&self, into: &mut Vec<Reported>) {
        let mut fds = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *fds, into);
    }
}

/// The waker one side of an fd's `Async` registration holds.
///
/// async-io wakes a side's waker exactly when its reactor reports that side
/// (it drains the waker and disarms the side: oneshot), and the driver
/// never replaces it with another waker, so a wake *is* a readiness report.
/// Using it as one saves the second reactor round trip that `poll_readable`
/// needs when the report lands in the reactor tick that registered it.
#[derive(Debug)]
pub(crate) struct FdWake {
    report: Reported,
    /// Already in `Wakeups::fds`; cleared by the driver when it takes it.
    queued: AtomicBool,
    wakeups: Arc<Wakeups>,
}

impl FdWake {
    pub(crate) fn new(fd: RawFd, id: u64, side: Side, wakeups: Arc<Wakeups>) -> FdWake {
        FdWake {
            report: (fd, id, side),
            queued: AtomicBool::new(false),
            wakeups,
        }
    }

    /// The driver took the report: a later wake queues it again.
    pub(crate) fn unqueue(&self) {
        self.queued.store(false, Ordering::SeqCst);
    }
}

impl Wake for FdWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.wakeups
                .fds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.report);
            self.wakeups.driver.wake();
        }
    }
}
