//! The executor behind `run_in_executor` (PEP 3156's
//! `concurrent.futures.Executor`): the [`Executor`] trait, the default one on
//! the `blocking` crate's thread pool, and the loop's executor slot.
//!
//! Nothing here knows a loop; `run.rs` adds the `Loop` methods.

mod run;

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};

use crate::error::Result;

/// Runs jobs off the loop thread (PEP 3156's `concurrent.futures.Executor`).
///
/// Give one to [`Loop::set_default_executor`](crate::Loop::set_default_executor)
/// to choose where [`run_in_executor`](crate::Loop::run_in_executor) runs
/// its jobs (the tokio adapter's `BlockingExecutor` puts them on tokio's
/// blocking pool).
///
/// # Examples
///
/// ```
/// use oneloop::Executor;
///
/// /// One named thread per job: for a few long jobs, never for many.
/// struct ThreadPerJob;
/// impl Executor for ThreadPerJob {
///     fn execute(&self, job: Box<dyn FnOnce() + Send>) {
///         std::thread::Builder::new().name("job".into()).spawn(job).expect("spawn a thread");
///     }
/// }
///
/// let lp = oneloop::Loop::new()?;
/// lp.set_default_executor(ThreadPerJob);
/// let name = lp.run_in_executor(|| std::thread::current().name().map(String::from))?;
/// assert_eq!(lp.run_until_complete(name)??.as_deref(), Some("job"));
/// # Ok::<(), oneloop::Error>(())
/// ```
pub trait Executor: Send + Sync + 'static {
    /// Run `job` on some other thread, soon.
    fn execute(&self, job: Box<dyn FnOnce() + Send>);
}

/// The default executor: the [`blocking`](https://docs.rs/blocking) crate's
/// thread pool (the one async-std and smol use: threads start on demand and
/// exit after a second idle), with a count of the jobs this executor has in
/// flight so that shutting it down can wait for them (EX-02).
pub struct DefaultExecutor {
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl fmt::Debug for DefaultExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultExecutor")
            .field("in_flight", &*lock(&self.in_flight))
            .finish()
    }
}

fn lock(in_flight: &(Mutex<usize>, Condvar)) -> std::sync::MutexGuard<'_, usize> {
    in_flight.0.lock().unwrap_or_else(|e| e.into_inner())
}

impl DefaultExecutor {
    /// An executor on the shared `blocking` pool.
    ///
    /// # Errors
    /// None today; kept fallible so that a pool of its own could be made.
    pub fn new() -> Result<DefaultExecutor> {
        Ok(DefaultExecutor {
            in_flight: Arc::new((Mutex::new(0), Condvar::new())),
        })
    }

    /// Block until every job handed to this executor has finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use oneloop::{DefaultExecutor, Executor};
    ///
    /// let pool = DefaultExecutor::new()?;
    /// let done = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..4 {
    ///     let done = done.clone();
    ///     pool.execute(Box::new(move || { done.fetch_add(1, Ordering::SeqCst); }));
    /// }
    /// pool.wait_idle();
    /// assert_eq!(done.load(Ordering::SeqCst), 4);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn wait_idle(&self) {
        let mut n = lock(&self.in_flight);
        while *n > 0 {
            n = self.in_flight.1.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Executor for DefaultExecutor {
    fn execute(&self, job: Box<dyn FnOnce() + Send>) {
        *lock(&self.in_flight) += 1;
        let in_flight = self.in_flight.clone();
        blocking::unblock(move || {
            // Counted down even if the job panics (the caller catches its
            // panics, but a custom wrapper might not).
            struct Done(Arc<(Mutex<usize>, Condvar)>);
            impl Drop for Done {
                fn drop(&mut self) {
                    let mut n = lock(&self.0);
                    *n -= 1;
                    if *n == 0 {
                        self.0.1.notify_all();
                    }
                }
            }
            let _done = Done(in_flight);
            job();
        })
        .detach();
    }
}

/// Which executor a loop uses.
#[derive(Default)]
pub(crate) enum ExecutorSlot {
    /// None yet: the default pool is made on first use.
    #[default]
    Unset,
    /// The default pool.
    Default(Arc<DefaultExecutor>),
    /// One set with `set_default_executor`.
    Custom(Arc<dyn Executor>),
    /// `shutdown_default_executor` was called.
    ShutDown,
}
