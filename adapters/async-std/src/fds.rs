//! [`FdTable`]: the watched fds, one async-io registration each, made
//! level-triggered.
//!
//! # Invariants
//! - One `Async` registration per watched fd, carrying both interests; it
//!   is dropped (deregistered) inside `watch(fd, NONE)`, before the user can
//!   close the fd, and made with `Async::new_nonblocking`, so the fd keeps
//!   its blocking mode.
//! - Each side (readable, writable) has its own waker. async-io wakes a
//!   side's waker exactly when its reactor reports that side, draining the
//!   waker and disarming the side (oneshot); the waker is never replaced. So
//!   a wake *is* a readiness report, and the table uses it as one.
//! - Level-triggered: a reported side is re-armed (its waker registered
//!   again) only *after* the dispatch that ran its callback; the reactor
//!   then reports it again while it stays ready.
//! - A side whose callback was removed keeps at most its pending oneshot
//!   registration; its report is dropped and it is not re-armed, so an
//!   always-writable fd stops waking the loop (FD-05).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_io::Async;
use oneloop::backend::{Interest, Readiness};
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::fd::LentFd;
use crate::wake::{FdWake, Reported, Side, Wakeups};

/// A watched fd: one registration, one waker per side.
struct Watched {
    io: Async<LentFd>,
    interest: Interest,
    /// Tells this registration's reports from those of an earlier one of
    /// the same fd number.
    id: u64,
    read: (Arc<FdWake>, Waker),
    write: (Arc<FdWake>, Waker),
}

impl Watched {
    fn side(&self, side: Side) -> &(Arc<FdWake>, Waker) {
        match side {
            Side::Read => &self.read,
            Side::Write => &self.write,
        }
    }

    fn wants(&self, side: Side) -> bool {
        match side {
            Side::Read => self.interest.readable,
            Side::Write => self.interest.writable,
        }
    }

    /// Register `side`'s waker with the reactor, which re-arms the oneshot
    /// registration.
    fn arm(&self, side: Side) -> io::Result<()> {
        let mut cx = Context::from_waker(&self.side(side).1);
        // A first poll may only consume a report (async-io's tick check);
        // the second one registers.
        for _ in 0..2 {
            let polled = match side {
                Side::Read => self.io.poll_readable(&mut cx),
                Side::Write => self.io.poll_writable(&mut cx),
            };
            match polled {
                Poll::Pending => return Ok(()),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Ready(Ok(())) => {}
            }
        }
        Ok(())
    }

    fn arm_sides(&self, sides: Interest) -> io::Result<()> {
        if sides.readable {
            self.arm(Side::Read)?;
        }
        if sides.writable {
            self.arm(Side::Write)?;
        }
        Ok(())
    }
}

/// The watched fds of one loop.
pub(crate) struct FdTable {
    fds: RefCell<HashMap<RawFd, Watched>>,
    wakeups: Arc<Wakeups>,
    /// Scratch list for the sides reported in one poll.
    woken: RefCell<Vec<Reported>>,
    /// The id of the next registration.
    next_id: Cell<u64>,
}

impl FdTable {
    pub(crate) fn new(wakeups: Arc<Wakeups>) -> FdTable {
        FdTable {
            fds: RefCell::new(HashMap::new()),
            wakeups,
            woken: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.fds.borrow().len()
    }

    /// `Backend::watch`.
    pub(crate) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        if interest.is_none() {
            // Deregister synchronously: the caller may close the fd next.
            let old = self.fds.borrow_mut().remove(&fd);
            drop(old);
            return Ok(());
        }
        let mut fds = self.fds.borrow_mut();
        if let Some(w) = fds.get_mut(&fd) {
            let old = w.interest;
            w.interest = interest;
            let added = Interest {
                readable: interest.readable && !old.readable,
                writable: interest.writable && !old.writable,
            };
            let armed = w.arm_sides(added);
            if armed.is_err() {
                // The scheduler rolls its side back on error; so do we.
                w.interest = old;
            }
            return armed;
        }
        // The entry, and with it the lent fd, lives exactly while the
        // scheduler has the fd registered (the invariant of `LentFd`).
        let io = Async::new_nonblocking(LentFd::new(fd)?)?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let side = |side| {
            let wake = Arc::new(FdWake::new(fd, id, side, self.wakeups.clone()));
            let waker = Waker::from(wake.clone());
            (wake, waker)
        };
        let w = Watched {
            io,
            interest,
            id,
            read: side(Side::Read),
            write: side(Side::Write),
        };
        w.arm_sides(interest)?;
        fds.insert(fd, w);
        Ok(())
    }

    /// Deregister everything (backend close or drop).
    pub(crate) fn clear(&self) {
        let fds = std::mem::take(&mut *self.fds.borrow_mut());
        drop(fds);
    }

    /// Append the sides the reactor reported since the last call.
    pub(crate) fn reported(&self, ready: &mut Vec<(RawFd, Readiness)>) {
        let mut woken = self.woken.borrow_mut();
        self.wakeups.take_fds(&mut woken);
        let fds = self.fds.borrow();
        for (fd, id, side) in woken.drain(..) {
            let Some(w) = fds.get(&fd).filter(|w| w.id == id) else {
                continue;
            };
            w.side(side).0.unqueue();
            if w.wants(side) {
                let r = match side {
                    Side::Read => Readiness::READABLE,
                    Side::Write => Readiness::WRITABLE,
                };
                ready.push((fd, r));
            }
        }
    }

    /// Append the readiness of every watched fd, from one zero-timeout
    /// `poll(2)`: I/O polled on this thread, whoever holds the reactor.
    pub(crate) fn probe(&self, ready: &mut Vec<(RawFd, Readiness)>) {
        let fds: Vec<RawFd> = self.fds.borrow().keys().copied().collect();
        if let Some(polled) = self.poll_now(&fds) {
            ready.extend(
                polled
                    .into_iter()
                    .filter(|(_, r)| r.readable || r.writable || r.hangup),
            );
        }
    }

    /// Keep only the readiness that still holds, by one zero-timeout
    /// `poll(2)` of the reported fds. The reactor's report can be stale: the
    /// same data may already have been seen by a probe and drained by its
    /// reader, and a drained fd must not call its reader again (FD-01). A
    /// side that is no longer ready is re-armed, to wait for the next edge.
    pub(crate) fn confirm(&self, ready: &mut Vec<(RawFd, Readiness)>) {
        if ready.is_empty() {
            return;
        }
        let mut fds: Vec<RawFd> = ready.iter().map(|&(fd, _)| fd).collect();
        fds.sort_unstable();
        fds.dedup();
        let Some(now) = self.poll_now(&fds) else {
            return;
        };
        let table = self.fds.borrow();
        let mut confirmed = Vec::with_capacity(now.len());
        for (fd, r) in now {
            let reported =
                ready
                    .iter()
                    .filter(|(f, _)| *f == fd)
                    .fold(Readiness::default(), |a, (_, b)| Readiness {
                        readable: a.readable || b.readable,
                        writable: a.writable || b.writable,
                        hangup: a.hangup || b.hangup,
                    });
            let kept = Readiness {
                readable: r.readable && (reported.readable || reported.hangup),
                writable: r.writable && (reported.writable || reported.hangup),
                hangup: r.hangup,
            };
            if let Some(w) = table.get(&fd) {
                for (side, was, still) in [
                    (Side::Read, reported.readable, kept.readable || kept.hangup),
                    (Side::Write, reported.writable, kept.writable || kept.hangup),
                ] {
                    if was && !still && w.wants(side) && w.arm(side).is_err() {
                        w.side(side).1.wake_by_ref();
                    }
                }
            }
            if kept.readable || kept.writable || kept.hangup {
                confirmed.push((fd, kept));
            }
        }
        *ready = confirmed;
    }

    /// The readiness of `fds` right now (one zero-timeout `poll(2)`), for
    /// the sides each is watched for; `None` if the call failed (EINTR,
    /// ENOMEM: the reactor reports the same readiness soon).
    fn poll_now(&self, fds: &[RawFd]) -> Option<Vec<(RawFd, Readiness)>> {
        let table = self.fds.borrow();
        let (numbers, mut polled): (Vec<RawFd>, Vec<PollFd<'_>>) = fds
            .iter()
            .filter_map(|fd| table.get(fd).map(|w| (*fd, w)))
            .map(|(fd, w)| {
                let mut flags = PollFlags::empty();
                flags.set(PollFlags::IN, w.interest.readable);
                flags.set(PollFlags::OUT, w.interest.writable);
                (fd, PollFd::new(w.io.get_ref(), flags))
            })
            .unzip();
        if numbers.is_empty() {
            return Some(Vec::new());
        }
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut polled, Some(&zero)).ok()?;
        Some(
            numbers
                .into_iter()
                .zip(&polled)
                .map(|(fd, p)| {
                    let got = p.revents();
                    (
                        fd,
                        Readiness {
                            readable: got.contains(PollFlags::IN),
                            writable: got.contains(PollFlags::OUT),
                            hangup: got
                                .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
                        },
                    )
                })
                .collect(),
        )
    }

    /// Re-arm the sides just dispatched. A side that cannot be re-armed
    /// (its fd was closed against the contract) is reported again next
    /// time, so its owner sees the error.
    pub(crate) fn rearm(&self, ready: &[(RawFd, Readiness)]) {
        let fds = self.fds.borrow();
        for &(fd, r) in ready {
            let Some(w) = fds.get(&fd) else { continue };
            for (side, hit) in [
                (Side::Read, r.readable || r.hangup),
                (Side::Write, r.writable || r.hangup),
            ] {
                if hit && w.wants(side) && w.arm(side).is_err() {
                    w.side(side).1.wake_by_ref();
                }
            }
        }
    }
}
