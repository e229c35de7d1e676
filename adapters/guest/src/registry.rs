//! The guests of this thread, by id: a [`Job`](crate::Job) carries only an
//! id (it is `Send`), and finds its guest here, on the host thread.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::Inner;
use crate::host::Work;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// A list, not a map: a thread has at most one open guest (its
    /// running loop), so this is one entry long, and a tick scans it
    /// faster than it would hash an id.
    static GUESTS: RefCell<Vec<(u64, Weak<Inner>)>> = const { RefCell::new(Vec::new()) };
}

/// A process-unique guest id.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn insert(id: u64, inner: &Rc<Inner>) {
    GUESTS.with(|g| g.borrow_mut().push((id, Rc::downgrade(inner))));
}

pub(crate) fn remove(id: u64) {
    // During thread-local destruction the map may be gone already.
    let _ = GUESTS.try_with(|g| g.borrow_mut().retain(|(i, _)| *i != id));
}

/// Run one job's work on this (the host) thread.
pub(crate) fn run(work: Work) {
    match work {
        Work::Tick(id) => {
            let inner = GUESTS
                .try_with(|g| {
                    let guests = g.borrow();
                    guests
                        .iter()
                        .find(|(i, _)| *i == id)
                        .and_then(|(_, w)| w.upgrade())
                })
                .ok()
                .flatten();
            // None: the guest ended; a stale job is harmless.
            if let Some(inner) = inner {
                inner.tick();
            }
        }
        Work::Finish(id) => crate::run::finish(id),
    }
}
