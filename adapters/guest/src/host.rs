//! [`Host`]: the one thing guest mode asks of a host loop, and [`Job`],
//! what it hands the host to run.

use std::fmt;
use std::sync::Arc;
use std::thread::ThreadId;

/// A host loop's thread-safe "run this soon on my thread" hook: winit's
/// `EventLoopProxy::send_event`, a toolkit's invoke-on-main-thread call,
/// asyncio's `call_soon_threadsafe`, a queue some thread drains.
///
/// `run_soon` is called from any thread (the guest's I/O thread, the host
/// thread, a thread that woke the loop); it must not block and must not
/// run the job inside the call. The host runs each job later on **its**
/// thread, the one that started the guest, by calling [`Job::run`], in
/// any order (guest mode does not rely on the host's ordering). A job the
/// host drops unrun (because the host is shutting down) only delays the
/// guest, which can still be closed.
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
/// it; cheap (two words).
pub struct Job {
    pub(crate) work: Work,
    pub(crate) thread: ThreadId,
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
    /// Run this step of the guest. Call it on the host thread, outside
    /// any oneloop callback, as the host's own callback would be.
    ///
    /// A job of a guest that has ended does nothing. A job run on another
    /// thread than the one that started its guest is a host bug: it does
    /// nothing but log an error (through `tracing`), since the loop's state
    /// belongs to that thread.
    pub fn run(self) {
        if std::thread::current().id() != self.thread {
            tracing::error!(
                host_thread = ?self.thread,
                this_thread = ?std::thread::current().id(),
                "a oneloop guest job was run off the host thread; the host must run jobs on the thread that started the guest"
            );
            return;
        }
        crate::registry::run(self.work);
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
