//! Watched fds: one `AsyncFd` per fd for both directions, with asyncio's
//! level-triggered semantics emulated on tokio's edge-triggered reactor.
//!
//! # Level-triggered emulation (HOSTS.md §2.2)
//!
//! mio registers with `EPOLLET` and tokio caches a readiness flag until it is
//! cleared. An `add_reader` callback does its own I/O, so the adapter never
//! sees `WouldBlock` and cannot follow tokio's "clear on `WouldBlock`" rule.
//! Instead, after the callbacks of a reported fd ran, [`FdWatch::settle`]
//! looks at the fd's real state with a zero-timeout `poll(2)` (one syscall
//! for every fd reported in that iteration):
//! - a direction that is no longer ready has its tokio flag cleared, and the
//!   fd waits for the next edge (no spinning on a drained fd);
//! - a direction that is still ready is remembered and reported again in the
//!   next iteration (no data lost when a callback read only part).
//!
//! The probe, not tokio's flags, decides what is reported again: tokio never
//! clears its "closed" bits, and a direction nobody wants may have its flag
//! cleared, so a direction that becomes wanted is probed at once. An error
//! with no data and no hang-up (`EPOLLERR` alone, e.g. ICMP port unreachable
//! on a UDP socket) only wakes tokio's write side; a reader-only fd keeps a
//! waker there so its reader still sees the error (FD-07).
//!
//! Nothing else runs on the loop thread between the probe and the clear (the
//! reactor only runs when the runtime parks), so an edge can never arrive in
//! between and be lost.
//!
//! # I/O safety
//!
//! `AsyncFd::register_with_interest` is `unsafe`: the fd must stay open and
//! keep referring to the same open file description for the life of the
//! `AsyncFd`. The scheduler only lends the fd for the duration of
//! `add_reader`/`add_writer`, and a caller may close it while it is watched
//! (a caller error, as in asyncio, but reachable from safe code). So the
//! adapter registers its **own duplicate** of the fd (`F_DUPFD_CLOEXEC`),
//! which it owns for exactly as long as the `AsyncFd` lives and drops as
//! soon as the scheduler stops watching the fd. (So an fd closed by its
//! owner while still watched keeps its file open until it is removed or the
//! loop closes, instead of letting tokio watch whatever reuses the number.)
//! Every `unsafe` block of the crate is in this file but one: the bridge
//! thread's scheduling policy, in `sched.rs`.

use std::cell::Cell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use oneloop::backend::{Interest, Readiness};
use rustix::event::{PollFd, PollFlags};
use std::sync::Mutex;
use tokio::io::unix::AsyncFd;

/// Wake-ups for the driver task: the fds whose readiness changed, and the
/// driver's own waker.
///
/// `Send + Sync` because wakers must be; on a current-thread runtime the
/// reactor runs on the loop thread, so the lock is never contended.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    /// Fds whose waker fired since the driver last looked.
    fds: Mutex<Vec<Arc<FdWake>>>,
    /// The driver task.
    pub(crate) task: AtomicWaker,
}

impl Signal {
    /// Take the fds that were woken.
    pub(crate) fn take(&self) -> Vec<Arc<FdWake>> {
        std::mem::take(&mut *self.lock())
    }

    /// Whether an fd is waiting for the driver.
    pub(crate) fn has_fds(&self) -> bool {
        !self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<FdWake>>> {
        // Only push and take happen under the lock: a poisoned list is intact.
        self.fds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The waker tokio's reactor calls for one watched fd: queues the fd for the
/// driver (once until the driver takes it) and wakes the driver.
#[derive(Debug)]
pub(crate) struct FdWake {
    /// The fd number as the scheduler knows it.
    pub(crate) fd: RawFd,
    /// In `Signal::fds` and not yet taken.
    queued: AtomicBool,
    signal: Arc<Signal>,
}

impl FdWake {
    /// Queue this fd for the driver and wake it.
    pub(crate) fn schedule(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.signal.lock().push(self.clone());
        }
        self.signal.task.wake();
    }

    /// The driver took this fd from the queue.
    pub(crate) fn taken(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for FdWake {
    fn wake(self: Arc<Self>) {
        self.schedule();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}

/// One watched fd: our duplicate of it, registered once with tokio for both
/// directions, and the directions the scheduler currently wants.
#[derive(Debug)]
pub(crate) struct FdWatch {
    afd: AsyncFd<OwnedFd>,
    interest: Interest,
    /// Identity of this registration (a re-added fd number gets a new one).
    pub(crate) wake: Arc<FdWake>,
    waker: Waker,
    /// Directions the last probe found still ready: reported again in the
    /// next iteration whatever tokio's flags say (the level part).
    carry: Cell<Readiness>,
}

impl FdWatch {
    /// Register a duplicate of `fd` with the current tokio runtime.
    ///
    /// Must run inside a runtime context (the caller enters the handle) and
    /// while the scheduler lends `fd` (see the module docs).
    pub(crate) fn register(fd: RawFd, interest: Interest, signal: Arc<Signal>) -> io::Result<Self> {
        // SAFETY: `watch` is called for an fd that is not yet watched only from
        // `Loop::add_reader`/`add_writer`, which hold the caller's `BorrowedFd`
        // for the whole call (oneloop `Backend::watch`), so `fd` is open here;
        // the borrow ends before this function returns.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let own = rustix::io::fcntl_dupfd_cloexec(borrowed, 0)?;
        let afd = register_owned(own)?;
        let wake = Arc::new(FdWake {
            fd,
            queued: AtomicBool::new(false),
            signal,
        });
        let waker = Waker::from(wake.clone());
        Ok(FdWatch {
            afd,
            interest,
            wake,
            waker,
            carry: Cell::new(Readiness::default()),
        })
    }

    /// Change the directions wanted (one registration serves both).
    ///
    /// A direction newly wanted is probed at once: its tokio flag may have
    /// been cleared while nobody wanted it, and an fd that is already ready
    /// sends no new edge.
    pub(crate) fn set_interest(&mut self, interest: Interest) {
        let gained = Interest {
            readable: interest.readable && !self.interest.readable,
            writable: interest.writable && !self.interest.writable,
        };
        self.interest = interest;
        if !gained.is_none() {
            let revents = probe_all(&[&*self]).pop().unwrap_or(PollFlags::empty());
            let now = directions(gained, revents);
            let mut carry = self.carry.get();
            carry.readable |= now.readable;
            carry.writable |= now.writable;
            self.carry.set(carry);
        }
    }

    /// What to report for the wanted directions: what the last probe found
    /// still ready, plus what tokio's reactor flagged since (its flags are
    /// kept). Registers this fd's waker for every direction not flagged.
    pub(crate) fn readiness(&self) -> Readiness {
        let mut cx = Context::from_waker(&self.waker);
        let carry = self.carry.take();
        let mut r = Readiness {
            readable: carry.readable && self.interest.readable,
            writable: carry.writable && self.interest.writable,
            hangup: false,
        };
        if self.interest.readable {
            match self.afd.poll_read_ready(&mut cx) {
                Poll::Ready(Ok(mut guard)) => {
                    r.readable = true;
                    guard.retain_ready();
                }
                // The reactor is gone: let the callback see the error.
                Poll::Ready(Err(_)) => r.hangup = true,
                Poll::Pending => {}
            }
        }
        if self.interest.writable {
            match self.afd.poll_write_ready(&mut cx) {
                Poll::Ready(Ok(mut guard)) => {
                    r.writable = true;
                    guard.retain_ready();
                }
                Poll::Ready(Err(_)) => r.hangup = true,
                Poll::Pending => {}
            }
        } else if self.interest.readable && self.error_pending(&mut cx) {
            // Report it to the reader, which sees the error (FD-07); the
            // probe after the callback tells whether it is still there.
            r.readable = true;
        }
        r
    }

    /// Reader only: whether tokio saw an error (`EPOLLERR` alone, e.g. ICMP
    /// port unreachable on a UDP socket). mio files that under "write
    /// closed", so only the write side is woken: keep a waker there, clearing
    /// the plain writable flag nobody wants (`set_interest` probes before a
    /// writer relies on it).
    fn error_pending(&self, cx: &mut Context<'_>) -> bool {
        for _ in 0..2 {
            match self.afd.poll_write_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    if guard.ready().is_write_closed() {
                        guard.retain_ready();
                        return true;
                    }
                    guard.clear_ready_matching(tokio::io::Ready::WRITABLE);
                }
                Poll::Ready(Err(_)) => return true,
                Poll::Pending => return false,
            }
        }
        false
    }

    /// The `poll(2)` request for this fd's wanted directions.
    pub(crate) fn probe(&self) -> PollFd<'_> {
        let mut flags = PollFlags::empty();
        if self.interest.readable {
            flags |= PollFlags::IN;
        }
        if self.interest.writable {
            flags |= PollFlags::OUT;
        }
        PollFd::new(self.afd.get_ref(), flags)
    }

    /// After the callbacks ran: remember each wanted direction the probe
    /// found still ready (`revents`), to report it again in the next
    /// iteration, and clear tokio's flag of the others so that the fd waits
    /// for the next edge. Returns whether anything is still ready.
    pub(crate) fn settle(&self, revents: PollFlags) -> bool {
        let still = directions(self.interest, revents);
        let mut cx = Context::from_waker(&self.waker);
        if self.interest.readable && !still.readable {
            clear_direction(|| self.afd.poll_read_ready(&mut cx));
        }
        let mut cx = Context::from_waker(&self.waker);
        if self.interest.writable && !still.writable {
            clear_direction(|| self.afd.poll_write_ready(&mut cx));
        }
        self.carry.set(still);
        still.readable || still.writable
    }
}

/// The directions of `wanted` that `revents` shows ready; hang-up and error
/// count as both (the callbacks' I/O then sees EOF or the error).
fn directions(wanted: Interest, revents: PollFlags) -> Readiness {
    let hangup = revents.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL);
    Readiness {
        readable: wanted.readable && (hangup || revents.intersects(PollFlags::IN | PollFlags::PRI)),
        writable: wanted.writable && (hangup || revents.contains(PollFlags::OUT)),
        hangup: false,
    }
}

/// Clear one direction's tokio flag, then poll again so that the waker is
/// registered for the next edge. (tokio never clears its "closed" bits; the
/// probe, not the flag, decides whether a closed fd is reported again.)
fn clear_direction<'a>(
    mut poll: impl FnMut() -> Poll<io::Result<tokio::io::unix::AsyncFdReadyGuard<'a, OwnedFd>>>,
) {
    if let Poll::Ready(Ok(mut guard)) = poll() {
        guard.clear_ready();
    }
    if let Poll::Ready(Ok(mut guard)) = poll() {
        guard.retain_ready();
    }
}

/// Probe `watches` with one zero-timeout `poll(2)`: the `revents` of each.
///
/// On failure every fd counts as ready: a spurious report is harmless, a
/// lost one is not.
pub(crate) fn probe_all(watches: &[&FdWatch]) -> Vec<PollFlags> {
    let mut fds: Vec<PollFd<'_>> = watches.iter().map(|w| w.probe()).collect();
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(_) => fds.iter().map(PollFd::revents).collect(),
        Err(_) => vec![PollFlags::IN | PollFlags::OUT; watches.len()],
    }
}

/// Register an fd the adapter owns with the current tokio runtime, for both
/// directions.
///
/// Must run inside a runtime context.
pub(crate) fn register_owned(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    let interest = tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE;
    // SAFETY: the `AsyncFd` takes ownership of `fd`, so the descriptor stays
    // open and refers to the same open file description until the `AsyncFd`
    // is dropped or gives it back; `OwnedFd::as_raw_fd` always returns it.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}
