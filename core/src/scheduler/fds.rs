//! The fd registry: one entry per fd, a reader and a writer slot each, and
//! the merged interest the backend watches.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::panic::Location;
use std::rc::Rc;
use std::task::Waker;

use crate::backend::Interest;

/// A registered reader or writer callback.
///
/// The ready queue holds an `Rc` to it, not the fd: a callback that was
/// removed or replaced after its readiness was queued is skipped
/// (`active == false`) instead of calling whatever is registered now
/// (FD-02, FD-06).
pub(crate) struct FdCallback {
    /// The callback; `FnMut` because it fires on every ready iteration.
    pub(crate) f: RefCell<Box<dyn FnMut()>>,
    /// Still registered.
    pub(crate) active: Cell<bool>,
    /// Already in the ready queue: level-triggered readiness reported again
    /// before it ran must not queue it twice.
    pub(crate) queued: Cell<bool>,
    /// A task parked on this readiness ([`park`](FdCallback::park)).
    waiter: Cell<Option<Waker>>,
    /// A report of the fd woke the parked task since it last parked
    /// ([`take_reported`](FdCallback::take_reported)).
    woke: Cell<bool>,
    /// Where `add_reader`/`add_writer` was called.
    pub(crate) location: &'static Location<'static>,
}

impl FdCallback {
    pub(crate) fn new(f: Box<dyn FnMut()>, location: &'static Location<'static>) -> Rc<FdCallback> {
        Rc::new(FdCallback {
            f: RefCell::new(f),
            active: Cell::new(true),
            queued: Cell::new(false),
            waiter: Cell::new(None),
            woke: Cell::new(false),
            location,
        })
    }

    /// Park a task on this readiness (a reader's: a writer's waiter is never
    /// woken): the poll that next reports the fd wakes `waker` at once
    /// *instead of* queueing the callback, so the task runs in that
    /// iteration's batch rather than being woken by the callback into the
    /// next iteration (a second poll, which would report the still unread
    /// fd again), and no callback runs just to wake it. For a callback
    /// whose only job is to wake a task that reads the fd itself; the task
    /// asks [`woke_parked`](FdCallback::woke_parked) whether the report
    /// came. One waiter; parking again replaces it (a clone only if
    /// different), and the replaced waker is handed back, for the caller
    /// to drop outside its borrows.
    #[cfg(feature = "net")] // its one user: a stream's waiting read
    pub(crate) fn park(&self, waker: &Waker) -> Option<Waker> {
        // The task parks after it read the fd or asked `woke_parked`: a
        // report from before is spent.
        self.woke.set(false);
        let old = self.waiter.take();
        match old {
            Some(w) if w.will_wake(waker) => {
                self.waiter.set(Some(w));
                None
            }
            old => {
                self.waiter.set(Some(waker.clone()));
                old
            }
        }
    }

    /// The parked waker, taken to unpark.
    #[cfg(feature = "net")]
    pub(crate) fn take_waiter(&self) -> Option<Waker> {
        self.waiter.take()
    }

    /// The parked waker, taken by the poll that reported the fd, to wake
    /// it in place of the callback; the woken task learns of the report
    /// from [`woke_parked`](FdCallback::woke_parked).
    ///
    /// A later report that finds nobody parked leaves the flag alone: a
    /// backend may report an fd twice before one dispatch (the tokio
    /// adapter's driver selects again after a dispatch that found fds,
    /// then once more before the next), and the task the first report woke
    /// must still read.
    pub(crate) fn take_reported(&self) -> Option<Waker> {
        let w = self.waiter.take();
        if w.is_some() {
            self.woke.set(true);
        }
        w
    }

    /// Whether a report of the fd woke the parked task since it parked
    /// (answered once): the fd is worth reading, though its callback did
    /// not run.
    #[cfg(feature = "net")]
    pub(crate) fn woke_parked(&self) -> bool {
        self.woke.replace(false)
    }

    /// Run it if still registered. Never panics on re-entry: a callback that
    /// is somehow already running is skipped.
    pub(crate) fn run(&self) {
        self.queued.set(false);
        if !self.active.get() {
            return;
        }
        if let Ok(mut f) = self.f.try_borrow_mut() {
            f();
        }
    }
}

/// The reader and writer of one fd.
#[derive(Default)]
pub(crate) struct FdEntry {
    pub(crate) reader: Option<Rc<FdCallback>>,
    pub(crate) writer: Option<Rc<FdCallback>>,
}

impl FdEntry {
    pub(crate) fn interest(&self) -> Interest {
        Interest {
            readable: self.reader.is_some(),
            writable: self.writer.is_some(),
        }
    }
}

/// All watched fds of one loop, indexed by fd number.
///
/// fd numbers are small and dense (the kernel hands out the lowest free
/// one), so a table indexed by number beats a hash map on the hot path:
/// every ready event looks its fd up, and SipHash alone cost about 15 % of
/// an echo request (docs/benchmarks.md). The table grows to the highest fd
/// watched (16 bytes a slot) and shrinks back when its tail empties.
#[derive(Default)]
pub(crate) struct FdRegistry {
    slots: Vec<FdEntry>,
    /// Entries with a reader or a writer.
    len: usize,
}

impl FdRegistry {
    fn index(fd: RawFd) -> usize {
        // Negative numbers never reach the table: `add_reader` takes a
        // `BorrowedFd`, whose number is never -1 and never negative.
        usize::try_from(fd).expect("a watched fd is never negative")
    }

    /// The entry of `fd`, if it has a reader or a writer.
    pub(crate) fn get(&self, fd: RawFd) -> Option<&FdEntry> {
        let e = self.slots.get(usize::try_from(fd).ok()?)?;
        (!e.interest().is_none()).then_some(e)
    }

    /// Whether `fd` has a reader or a writer.
    pub(crate) fn contains(&self, fd: RawFd) -> bool {
        self.get(fd).is_some()
    }

    /// How many fds have a reader or a writer.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The fds with a reader or a writer.
    pub(crate) fn fds(&self) -> Vec<RawFd> {
        (0..self.slots.len())
            .filter(|&i| !self.slots[i].interest().is_none())
            .map(|i| i as RawFd)
            .collect()
    }

    /// Set (or clear, with `None`) `fd`'s reader (`readable`) or writer;
    /// the one it replaces is handed back.
    pub(crate) fn set(
        &mut self,
        fd: RawFd,
        readable: bool,
        cb: Option<Rc<FdCallback>>,
    ) -> Option<Rc<FdCallback>> {
        let i = Self::index(fd);
        if i >= self.slots.len() {
            // Clearing a slot the table does not reach: nothing was there.
            cb.as_ref()?;
            self.slots.resize_with(i + 1, FdEntry::default);
        }
        let e = &mut self.slots[i];
        let was = !e.interest().is_none();
        let slot = if readable {
            &mut e.reader
        } else {
            &mut e.writer
        };
        let old = std::mem::replace(slot, cb);
        let is = !e.interest().is_none();
        match (was, is) {
            (false, true) => self.len += 1,
            (true, false) => {
                self.len -= 1;
                // Shrink a tail of empty slots, so a burst of high fd numbers
                // does not pin the table.
                while self.slots.last().is_some_and(|e| e.interest().is_none()) {
                    self.slots.pop();
                }
                if self.slots.capacity() > 4 * self.slots.len().max(64) {
                    self.slots.shrink_to(self.slots.len().max(64));
                }
            }
            _ => {}
        }
        old
    }

    pub(crate) fn interest(&self, fd: RawFd) -> Interest {
        self.get(fd)
            .map(FdEntry::interest)
            .unwrap_or(Interest::NONE)
    }
}
