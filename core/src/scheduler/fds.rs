//! The fd registry: one entry per fd, a reader and a writer slot each, and
//! the merged interest the backend watches.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::panic::Location;
use std::rc::Rc;

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
    /// Where `add_reader`/`add_writer` was called.
    pub(crate) location: &'static Location<'static>,
}

impl FdCallback {
    pub(crate) fn new(f: Box<dyn FnMut()>, location: &'static Location<'static>) -> Rc<FdCallback> {
        Rc::new(FdCallback {
            f: RefCell::new(f),
            active: Cell::new(true),
            queued: Cell::new(false),
            location,
        })
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

/// All watched fds of one loop.
#[derive(Default)]
pub(crate) struct FdRegistry {
    pub(crate) entries: HashMap<RawFd, FdEntry>,
}

impl FdRegistry {
    /// The slot for `fd`'s reader (`readable`) or writer.
    pub(crate) fn slot(&mut self, fd: RawFd, readable: bool) -> &mut Option<Rc<FdCallback>> {
        let e = self.entries.entry(fd).or_default();
        if readable {
            &mut e.reader
        } else {
            &mut e.writer
        }
    }

    pub(crate) fn interest(&self, fd: RawFd) -> Interest {
        self.entries
            .get(&fd)
            .map(FdEntry::interest)
            .unwrap_or(Interest::NONE)
    }

    /// Forget `fd` if neither slot is used.
    pub(crate) fn prune(&mut self, fd: RawFd) {
        if self
            .entries
            .get(&fd)
            .is_some_and(|e| e.interest().is_none())
        {
            self.entries.remove(&fd);
        }
    }
}
