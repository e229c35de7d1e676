//! The cross-thread inbox: what `call_soon_threadsafe` and wakers of tasks
//! woken off-thread feed, drained into the ready queue once per iteration.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use super::ready::TaskMeta;
use crate::backend::RemoteWake;

/// An item posted from another thread.
pub(crate) enum Remote {
    /// A `call_soon_threadsafe` callback.
    Call(Box<dyn FnOnce() + Send>, &'static Location<'static>),
    /// A task step whose waker was woken.
    Task(async_task::Runnable<TaskMeta>),
}

/// The inbox proper.
struct Inbox {
    queue: VecDeque<Remote>,
    /// Set once by `close`; posts fail afterwards (TH-05).
    closed: bool,
    /// The backend's wake; `None` once closed, so that a `RemoteLoop`
    /// outliving the loop does not keep the wake's fd open.
    waker: Option<Arc<dyn RemoteWake>>,
    /// Task steps woken on another thread after `closed`: they can be
    /// neither posted nor dropped there (a local task's future belongs to
    /// the loop's thread), so they wait for `close` to drop them on it
    /// ([`Shared::take_orphans`]); `None` once it has.
    orphans: Option<Vec<async_task::Runnable<TaskMeta>>>,
}

/// The `Send + Sync` part of a loop, shared with `RemoteLoop` and wakers.
///
/// # Invariants
/// - `closed` is only set under the lock, and nothing is pushed once it is,
///   so a post either lands before `close` drains the inbox or fails.
/// - The backend is woken exactly when the queue goes from empty to
///   non-empty (coalescing, PERFORMANCE.md): at once, or when the poster's
///   [`crate::defer_wakes`] scope ends; the loop drains the whole queue in
///   one go, so a wake is never lost: a post that finds the queue non-empty
///   knows a wake for it is already pending or held by its thread.
pub(crate) struct Shared {
    /// Unique id of the loop, the key of the thread-local loop registry.
    pub(crate) id: u64,
    /// The thread the loop belongs to.
    pub(crate) thread: ThreadId,
    inbox: Mutex<Inbox>,
    /// Something was posted since the loop last drained: lets `take` skip
    /// the lock in the common iteration that received nothing from another
    /// thread. Set and cleared under the lock; read without it.
    posted: AtomicBool,
}

impl Shared {
    pub(crate) fn new(id: u64, thread: ThreadId, waker: Arc<dyn RemoteWake>) -> Shared {
        Shared {
            id,
            thread,
            inbox: Mutex::new(Inbox {
                queue: VecDeque::new(),
                closed: false,
                waker: Some(waker),
                orphans: Some(Vec::new()),
            }),
            posted: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // A panic while holding this lock cannot leave the queue in a broken
        // state (push/take only), so poisoning is ignored.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Post `item`; gives it back if the loop is closed.
    pub(crate) fn post(&self, item: Remote) -> Result<(), Remote> {
        let waker = {
            let mut inbox = self.lock();
            if inbox.closed {
                return Err(item);
            }
            inbox.queue.push_back(item);
            self.posted.store(true, Ordering::Release);
            // Only the post that makes the queue non-empty wakes.
            (inbox.queue.len() == 1)
                .then(|| inbox.waker.clone())
                .flatten()
        };
        if let Some(waker) = waker {
            crate::defer::wake_or_defer(&waker);
        }
        Ok(())
    }

    /// Wake the backend without posting anything.
    pub(crate) fn wake(&self) {
        let waker = self.lock().waker.clone();
        if let Some(waker) = waker {
            crate::defer::wake_or_defer(&waker);
        }
    }

    /// Take everything posted so far.
    ///
    /// A post that races with the unlocked check below is not lost: it
    /// found the queue empty, so it wakes the backend, and the dispatch
    /// that wake brings takes it.
    pub(crate) fn take(&self) -> Option<VecDeque<Remote>> {
        if !self.posted.load(Ordering::Acquire) {
            return None;
        }
        let mut inbox = self.lock();
        self.posted.store(false, Ordering::Release);
        Some(std::mem::take(&mut inbox.queue))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// From another thread whose post found the loop closed: keep `step`
    /// for `close` to drop on the loop's thread; handed back once `close`
    /// has taken the orphans (the caller leaks it).
    pub(crate) fn park_orphan(
        &self,
        step: async_task::Runnable<TaskMeta>,
    ) -> Result<(), async_task::Runnable<TaskMeta>> {
        match &mut self.lock().orphans {
            Some(orphans) => {
                orphans.push(step);
                Ok(())
            }
            None => Err(step),
        }
    }

    /// On the loop's thread, at the end of `close`: the steps parked by
    /// [`park_orphan`](Shared::park_orphan), to drop there; later ones are
    /// refused.
    pub(crate) fn take_orphans(&self) -> Vec<async_task::Runnable<TaskMeta>> {
        self.lock().orphans.take().unwrap_or_default()
    }

    /// Refuse further posts and hand back what is queued, and the wake
    /// (both for the caller to drop, outside the lock).
    pub(crate) fn close(&self) -> (VecDeque<Remote>, Option<Arc<dyn RemoteWake>>) {
        let mut inbox = self.lock();
        inbox.closed = true;
        (std::mem::take(&mut inbox.queue), inbox.waker.take())
    }
}
