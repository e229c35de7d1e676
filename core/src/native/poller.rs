//! The [`Selector`](super::Selector) on the `polling` crate, on platforms
//! other than Linux (kqueue, event ports, poll()), and on Linux when built
//! with `--cfg oneloop_polling` (so that CI compiles and runs this path): the
//! one place in this module with `unsafe` code there.
//!
//! `polling::Poller::add` is `unsafe` because of I/O safety: the fd must be
//! deleted before it is closed, or a later fd with the same number could see
//! stale events. The `Loop` API states that contract to its users (a
//! registered fd must stay open until it is removed, as in asyncio), and
//! this module keeps its half: every fd it adds is tracked and deleted on
//! removal and on close.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};

use super::Selected;
use crate::backend::{Interest, Readiness, RemoteWake};

/// A poller plus the interest registered for each fd.
pub(super) struct Registry {
    poller: Arc<Poller>,
    /// A wake is pending: `polling` consumes its notification inside `wait`
    /// without saying so, so the waker also sets this flag first.
    woken: Arc<AtomicBool>,
    /// Reused event buffer.
    events: RefCell<Events>,
    /// # Invariant
    /// Holds exactly the fds added to `poller` and not yet deleted.
    watched: RefCell<HashMap<RawFd, Interest>>,
}

fn event(fd: RawFd, i: Interest) -> Event {
    Event::new(fd as usize, i.readable, i.writable)
}

/// The error of a `select` made from inside another's `ready` callback.
#[cold]
fn nested_select() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "Selector::select called from inside a select's callback",
    )
}

impl Registry {
    pub(super) fn new() -> io::Result<Registry> {
        Ok(Registry {
            poller: Arc::new(Poller::new()?),
            woken: Arc::new(AtomicBool::new(false)),
            events: RefCell::new(Events::new()),
            watched: RefCell::new(HashMap::new()),
        })
    }

    pub(super) fn waker(&self) -> Arc<dyn RemoteWake> {
        let (poller, woken) = (self.poller.clone(), self.woken.clone());
        Arc::new(move || {
            woken.store(true, Ordering::Release);
            // notify() fails only if the poller is gone, i.e. the loop was
            // dropped: nothing to wake then.
            let _ = poller.notify();
        })
    }

    /// The poller's fd.
    pub(super) fn as_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }

    /// How many fds are registered.
    pub(super) fn len(&self) -> usize {
        self.watched.borrow().len()
    }

    /// Wait up to `timeout` (`None`: until an event) and report each ready
    /// fd.
    pub(super) fn wait(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut(RawFd, Readiness),
    ) -> io::Result<Selected> {
        // The buffer is lent out while `ready` runs, and `ready` is user
        // code (`Selector::select` is public): a nested select is refused.
        let Ok(mut events) = self.events.try_borrow_mut() else {
            return Err(nested_select());
        };
        events.clear();
        match self.poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Selected::default()),
            Err(e) => return Err(e),
        }
        let seen = Selected {
            fds: events.len(),
            woken: self.woken.swap(false, Ordering::Acquire),
        };
        for ev in events.iter() {
            let hangup = ev.is_interrupt() || ev.is_err().unwrap_or(false);
            ready(
                ev.key as RawFd,
                Readiness {
                    readable: ev.readable,
                    writable: ev.writable,
                    hangup,
                },
            );
        }
        Ok(seen)
    }

    pub(super) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        if fd < 0 {
            // `Selector::watch` is safe and takes any number, but
            // `BorrowedFd::borrow_raw` panics on -1: answer what the OS
            // answers for a number that is no fd. Never watched, so there
            // is nothing to stop watching.
            return if interest.is_none() {
                Ok(())
            } else {
                Err(rustix::io::Errno::BADF.into())
            };
        }
        let mut watched = self.watched.borrow_mut();
        // SAFETY: `fd` is not -1 (checked above), and it is open: the loop only
        // passes fds its user lent it through `AsFd` and documents that they
        // stay open while registered; for a removal, the fd is still registered
        // here, so by that same contract still open. An fd closed against the
        // contract makes the syscall fail with EBADF, never touches memory.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match (watched.get(&fd).copied(), interest.is_none()) {
            (None, true) => Ok(()),
            (None, false) => {
                // SAFETY: see above; and `watched` now records the fd, so it
                // is deleted on removal or close (the contract of `add`).
                unsafe {
                    self.poller
                        .add_with_mode(fd, event(fd, interest), PollMode::Level)?
                };
                watched.insert(fd, interest);
                Ok(())
            }
            (Some(_), true) => {
                watched.remove(&fd);
                self.poller.delete(borrowed)
            }
            (Some(old), false) if old == interest => Ok(()),
            (Some(_), false) => {
                self.poller
                    .modify_with_mode(borrowed, event(fd, interest), PollMode::Level)?;
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
            let _ = self.poller.delete(borrowed);
        }
    }
}
