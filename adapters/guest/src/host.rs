//! [`Host`]: the one thing guest mode asks of a host loop, and [`Job`],
//! what it hands the host to run.

use std::fmt;
use std::sync::{Arc, Weak};
use std::thread::ThreadId;

use crate::io::Shared;

/// A host loop's thread-safe "run this soon on my thread" hook: winit's
/// `EventLoopProxy::send_event`, a toolkit's invoke-on-main-thread call,
/// asyncio's `call_soon_threadsafe`, a queue some thread drains.
///
/// `run_soon` is called from any thread (the guest's I/O thread, the host
/// thread, a thread that woke the loop); it must not block and must not
/// run the job inside the call. The host runs each job later on **its**
/// thread, the one that started the guest, by calling [`Job::run`], in
/// any order (guest mode does not rely on the host's ordering). A job the
/// host drops unrun (because it is shutting down, or its queue is full)
/// is not lost: the guest posts it again (see [`Job`]).
///
/// # Examples
///
/// Any `Fn(Job) + Send + Sync + 'static` is a host:
///
/// ```
/// use std::{cell::Cell, rc::Rc, sync::mpsc, time::Duration};
///
/// let (tx, rx) = mpsc::channel::<oneloop_guest::Job>();
/// let lp = oneloop_guest::new_loop(move |job| { let _ = tx.send(job); })?;
///
/// let ran = Rc::new(Cell::new(false));
/// lp.call_soon({ let ran = ran.clone(); move || ran.set(true) })?;
/// while !ran.get() {
///     rx.recv_timeout(Duration::from_secs(10))?.run(); // the host's turn: on this thread
/// }
/// lp.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Host: Send + Sync + 'static {
    /// Schedule `job` to run soon on the host thread.
    fn run_soon(&self, job: Job);
}

impl<F: Fn(Job) + Send + Sync + 'static> Host for F {
    fn run_soon(&self, job: Job) {
        self(job)
    }
}

impl<H: Host + ?Sized> Host for Arc<H> {
    fn run_soon(&self, job: Job) {
        (**self).run_soon(job)
    }
}

/// What the guest hands its host: one step of the guest, to run on the
/// host thread with [`run`](Job::run). `Send`, so that any thread may post
/// it; small (a few words, no allocation).
///
/// A job is never lost: one the host runs on another thread, or drops
/// unrun, goes back to the guest, whose I/O thread posts it again (at
/// once the first time, then backing off from 1 ms to 1 s while the host
/// keeps failing, so that a broken host costs no CPU).
pub struct Job {
    /// `None` once run: a job dropped with its work still in it was not.
    work: Option<Work>,
    thread: ThreadId,
    guest: Weak<Shared>,
}

/// The steps a host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Deliver the I/O thread's events and dispatch the loop once.
    Tick(u64),
    /// The main future of a guest run completed: close the loop, which
    /// calls the done callback.
    Finish(u64),
}

impl Job {
    pub(crate) fn new(work: Work, thread: ThreadId, guest: Weak<Shared>) -> Job {
        Job {
            work: Some(work),
            thread,
            guest,
        }
    }

    /// Run this step of the guest. Call it on the host thread, outside
    /// any oneloop callback, as the host's own callback would be.
    ///
    /// A job of a guest that has ended does nothing. A job run on another
    /// thread than the one that started its guest is a host bug: the
    /// loop's state belongs to that thread, so the job does not run here;
    /// it logs an error (through `tracing`) and goes back to the guest,
    /// which posts it again.
    pub fn run(mut self) {
        if this_thread() != self.thread {
            tracing::error!(
                host_thread = ?self.thread,
                this_thread = ?std::thread::current().id(),
                "a oneloop guest job was run off the host thread; the host must run jobs on the thread that started the guest (the job is posted again)"
            );
            // Dropped with its work: back to the guest.
            return;
        }
        if let Some(work) = self.work.take() {
            crate::registry::run(work);
        }
    }
}

/// This thread's id, without cloning its `Thread` handle at every job.
fn this_thread() -> ThreadId {
    thread_local!(static ID: ThreadId = std::thread::current().id());
    ID.try_with(|id| *id)
        .unwrap_or_else(|_| std::thread::current().id())
}

impl Drop for Job {
    /// Not run (dropped by the host, or run on the wrong thread): hand the
    /// work back to the guest, unless it has ended.
    fn drop(&mut self) {
        if let Some(work) = self.work.take()
            && let Some(guest) = self.guest.upgrade()
        {
            guest.not_run(work);
        }
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("work", &self.work)
            .field("thread", &self.thread)
            .finish()
    }
}
