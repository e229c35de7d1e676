//! The default loop's registrations on Linux: epoll driven directly, the
//! one place in this module with `unsafe` code on Linux.
//!
//! Why not `polling` here: its `wait` re-arms a timerfd and re-registers its
//! notifier around every call, four extra syscalls per iteration that
//! doubled the cost of an fd callback (docs/benchmarks.md, `fd_callbacks`).
//! Here an iteration is one `epoll_pwait2` (nanosecond timeouts, so no
//! timerfd), and the wake eventfd stays registered, level-triggered: it is
//! read only in the iterations it fired.
//!
//! I/O safety: `Loop::add_reader`/`add_writer` lend the fd through `AsFd`
//! and require it to stay open until it is removed; this module keeps its
//! half by deleting every fd it added, on removal and on close.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::event::Timespec;
use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::event::{EventfdFlags, eventfd};

use crate::backend::{Interest, Readiness, RemoteWake};

/// The key of the wake eventfd; fds are non-negative, so it cannot clash.
const WAKE: u64 = u64::MAX;

/// An epoll instance, its wake eventfd, and the interest of each fd.
pub(super) struct Registry {
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
    /// # Invariant
    /// Holds exactly the fds added to `epoll` and not yet deleted.
    watched: RefCell<HashMap<RawFd, Interest>>,
    /// Reused event buffer.
    events: RefCell<Vec<Event>>,
}

fn flags(i: Interest) -> EventFlags {
    // Level-triggered (no EPOLLET): asyncio's add_reader semantics.
    let mut f = EventFlags::empty();
    if i.readable {
        f |= EventFlags::IN;
    }
    if i.writable {
        f |= EventFlags::OUT;
    }
    f
}

/// Writes to the wake eventfd: one `write(2)`, async-signal-safe (D6).
struct Wake(Arc<OwnedFd>);

impl RemoteWake for Wake {
    fn wake(&self) {
        // EAGAIN means the counter is saturated: a wake is pending anyway.
        let _ = rustix::io::write(&*self.0, &1u64.to_ne_bytes());
    }
}

impl Registry {
    pub(super) fn new() -> io::Result<Registry> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &wake, EventData::new_u64(WAKE), EventFlags::IN)?;
        Ok(Registry {
            epoll,
            wake: Arc::new(wake),
            watched: RefCell::new(HashMap::new()),
            events: RefCell::new(Vec::with_capacity(256)),
        })
    }

    pub(super) fn waker(&self) -> Arc<dyn RemoteWake> {
        Arc::new(Wake(self.wake.clone()))
    }

    /// Wait up to `timeout` (`None`: until an event) and report each ready
    /// fd; wake-ups are consumed here.
    pub(super) fn wait(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut(RawFd, Readiness),
    ) -> io::Result<()> {
        // A timeout too large for a timespec (TM-07) waits for events only.
        let ts = timeout.and_then(|d| Timespec::try_from(d).ok());
        let mut events = self.events.borrow_mut();
        events.clear();
        match epoll::wait(&self.epoll, spare_capacity(&mut *events), ts.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let key = ev.data.u64();
            if key == WAKE {
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(&*self.wake, &mut buf);
                continue;
            }
            let f = ev.flags;
            ready(
                key as RawFd,
                Readiness {
                    readable: f.intersects(EventFlags::IN | EventFlags::PRI),
                    writable: f.contains(EventFlags::OUT),
                    hangup: f.intersects(EventFlags::HUP | EventFlags::ERR),
                },
            );
        }
        Ok(())
    }

    pub(super) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        let mut watched = self.watched.borrow_mut();
        // SAFETY: `fd` is open: the loop only passes fds its user lent it
        // through `AsFd` and documents that they stay open while registered;
        // for a change or a removal the fd is still registered here, so by
        // that same contract still open. An fd closed against the contract
        // makes the syscall fail with EBADF; no memory is involved.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let data = EventData::new_u64(fd as u64);
        match (watched.get(&fd).copied(), interest.is_none()) {
            (None, true) => Ok(()),
            (None, false) => {
                epoll::add(&self.epoll, borrowed, data, flags(interest))?;
                watched.insert(fd, interest);
                Ok(())
            }
            (Some(_), true) => {
                watched.remove(&fd);
                epoll::delete(&self.epoll, borrowed).map_err(Into::into)
            }
            (Some(old), false) if old == interest => Ok(()),
            (Some(_), false) => {
                epoll::modify(&self.epoll, borrowed, data, flags(interest))?;
                watched.insert(fd, interest);
                Ok(())
            }
        }
    }

    /// Delete every registration (loop close).
    pub(super) fn clear(&self) {
        let fds: Vec<RawFd> = self
            .watched
            .borrow_mut()
            .drain()
            .map(|(fd, _)| fd)
            .collect();
        for fd in fds {
            // SAFETY: as in `watch`: registered, hence open by contract.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = epoll::delete(&self.epoll, borrowed);
        }
    }
}
