//! [`start_guest_run`]: a main future run in guest mode to completion,
//! then a full cleanup, then the done callback (Trio's `start_guest_run`,
//! asyncio's guest mode).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future as StdFuture;
use std::rc::Rc;
use std::sync::Arc;

use oneloop::{Error, ErrorKind, Loop, Result, RunContext, TaskRef};

use crate::backend::{new_loop, shared_of};
use crate::host::Host;
use crate::io::Shared;

/// Run `main` as a guest of the host loop that runs `host`'s jobs, on this
/// thread (the host's), and call `done` with its output once the run has
/// finished and is cleaned up.
///
/// `main` receives the loop, and its future runs as the loop's main task.
/// When it completes (or is cancelled, or panics), the host runs one last
/// job that closes the loop: queued callbacks and other tasks are dropped,
/// fds unwatched, the executor shut down, the I/O thread joined. Only then
/// is `done` called, on the host thread, with the main future's output, or
/// [`ErrorKind::Cancelled`] / [`ErrorKind::Panicked`]. Closing the loop
/// yourself ends the run the same way; `done` then gets
/// [`ErrorKind::Closed`] if the main future had not completed.
///
/// As Trio and asyncio advise: start the guest right after the host loop
/// starts, and end the host loop in `done`, so that the two live and die
/// together; to quit early (a window closed), [`GuestRun::cancel`] the
/// main future rather than stopping the host under the guest. If the host
/// thread exits with the run unfinished, the run is abandoned: the loop is
/// closed and the I/O thread joined, but `done` is not called.
///
/// # Errors
/// As [`new_loop`]: [`ErrorKind::AlreadyRunning`] if a loop already runs
/// on this thread, so guest mode cannot be started from inside a running
/// loop, nor twice on one host thread.
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
/// use std::collections::VecDeque;
/// use std::rc::Rc;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let queue = Arc::new(Mutex::new(VecDeque::<oneloop_guest::Job>::new()));
/// let q = queue.clone();
/// let finished = Rc::new(RefCell::new(None));
/// let f = finished.clone();
/// let _run = oneloop_guest::start_guest_run(
///     move |job| q.lock().unwrap().push_back(job),
///     |lp| async move {
///         oneloop::sleep(Duration::from_millis(1)).await?;
///         lp.run_in_executor(|| 6 * 7)?.take().await
///     },
///     move |out| *f.borrow_mut() = Some(out.and_then(|r| r)),
/// )?;
/// // The host loop: run jobs until the guest says it is done.
/// while finished.borrow().is_none() {
///     let job = queue.lock().unwrap().pop_front();
///     match job {
///         Some(job) => job.run(),
///         None => std::thread::yield_now(),
///     }
/// }
/// assert_eq!(finished.take().unwrap()?, 42);
/// assert!(_run.is_finished()); // loop closed, I/O thread joined
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn start_guest_run<T, F, Fut, D>(host: impl Host, main: F, done: D) -> Result<GuestRun>
where
    T: 'static,
    F: FnOnce(Loop) -> Fut,
    Fut: StdFuture<Output = T> + 'static,
    D: FnOnce(Result<T>) + 'static,
{
    let lp = new_loop(host)?;
    let shared = shared_of(&lp)
        .ok_or_else(|| Error::new(ErrorKind::InvalidState, "the guest backend is missing"))?;
    let abandoned = Rc::new(Cell::new(false));
    let finisher = Rc::new(Finisher::<T, D> {
        outcome: RefCell::new(None),
        done: RefCell::new(Some(done)),
        abandoned: abandoned.clone(),
    });
    lp.add_run_context(finisher.clone())?;
    let task = lp.spawn(main(lp.clone()))?;
    let main_task = task.as_ref();
    let outcome = Rc::downgrade(&finisher);
    let post = shared.clone();
    lp.spawn(async move {
        let out = task.await;
        if let Some(f) = outcome.upgrade() {
            *f.outcome.borrow_mut() = Some(out);
        }
        post.post_finish();
    })?;
    let id = shared.id();
    RUNS.with(|r| {
        r.borrow_mut().0.insert(
            id,
            Run {
                lp: lp.clone(),
                shared: shared.clone(),
                abandoned,
            },
        )
    });
    Ok(GuestRun {
        lp,
        main: main_task,
        shared,
    })
}

/// A guest run (see [`start_guest_run`]). Dropping the handle does not end
/// the run.
pub struct GuestRun {
    lp: Loop,
    main: TaskRef,
    shared: Arc<Shared>,
}

impl fmt::Debug for GuestRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestRun")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

impl GuestRun {
    /// The guest's loop (for host code on this thread: `call_soon`,
    /// `spawn`, fd watching… all work from host callbacks directly).
    pub fn event_loop(&self) -> &Loop {
        &self.lp
    }

    /// Cancel the main future (the way to end a run early, a window
    /// closed): it ends cancelled, the run finishes and `done` gets
    /// [`ErrorKind::Cancelled`], or what the main future returned if it
    /// handled the cancellation. Returns false if it already finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, sync::mpsc, time::Duration};
    ///
    /// let (tx, rx) = mpsc::channel::<oneloop_guest::Job>();
    /// let outcome = Rc::new(RefCell::new(None));
    /// let o = outcome.clone();
    /// let run = oneloop_guest::start_guest_run(
    ///     move |job| { let _ = tx.send(job); },
    ///     |_lp| oneloop::sleep(Duration::from_secs(3600)), // a session that would go on
    ///     move |out| *o.borrow_mut() = Some(out),
    /// )?;
    /// assert!(run.cancel()); // the window was closed
    /// while outcome.borrow().is_none() {
    ///     rx.recv_timeout(Duration::from_secs(10))?.run();
    /// }
    /// assert!(outcome.take().unwrap().unwrap_err().is_cancelled());
    /// assert!(run.is_finished());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.main.cancel()
    }

    /// Whether the run finished: the loop is closed and its I/O thread
    /// joined (as it is when `done` is called).
    pub fn is_finished(&self) -> bool {
        self.lp.is_closed() && self.shared.is_joined()
    }
}

/// Holds `done` until the loop drops its run contexts, the last step of
/// `close()`, after every task, callback, fd and the I/O thread.
struct Finisher<T, D: FnOnce(Result<T>)> {
    outcome: RefCell<Option<Result<T>>>,
    done: RefCell<Option<D>>,
    abandoned: Rc<Cell<bool>>,
}

impl<T: 'static, D: FnOnce(Result<T>) + 'static> RunContext for Finisher<T, D> {
    fn enter(&self, run: &mut dyn FnMut()) {
        run();
    }

    fn name(&self) -> &str {
        "guest run"
    }
}

impl<T, D: FnOnce(Result<T>)> Drop for Finisher<T, D> {
    fn drop(&mut self) {
        if self.abandoned.get() {
            return;
        }
        let outcome = self.outcome.borrow_mut().take().unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Closed,
                "the loop was closed before the guest run's main future completed",
            ))
        });
        if let Some(done) = self.done.borrow_mut().take() {
            done(outcome);
        }
    }
}

struct Run {
    lp: Loop,
    shared: Arc<Shared>,
    abandoned: Rc<Cell<bool>>,
}

/// The unfinished runs of this thread.
#[derive(Default)]
struct Runs(HashMap<u64, Run>);

impl Drop for Runs {
    /// The host thread exits with runs unfinished: abandon them (close
    /// their loops, join their threads) without calling `done`.
    fn drop(&mut self) {
        for run in self.0.values() {
            run.abandoned.set(true);
        }
        for (_, run) in self.0.drain() {
            let _ = run.lp.close();
        }
    }
}

thread_local! {
    static RUNS: RefCell<Runs> = RefCell::new(Runs::default());
}

/// The host runs the last job of a run: close its loop (which calls
/// `done`). Inside a oneloop callback (a nested host loop) the loop cannot
/// close: the job is posted again.
pub(crate) fn finish(id: u64) {
    let Some(run) = RUNS
        .try_with(|r| r.borrow_mut().0.remove(&id))
        .ok()
        .flatten()
    else {
        return;
    };
    match run.lp.close() {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyRunning => {
            run.shared.post_finish();
            RUNS.with(|r| r.borrow_mut().0.insert(id, run));
        }
        Err(e) => tracing::error!("closing a finished guest run failed: {e}"),
    }
}
