//! The executor behind `run_in_executor` (PEP 3156's
//! `concurrent.futures.Executor`): the [`Executor`] trait, the default one on
//! its own threads (`pool.rs`), and the loop's executor slot.
//!
//! Nothing here knows a loop; `run.rs` adds the `Loop` methods.

mod pool;
mod run;

use std::fmt;
use std::sync::Arc;

use crate::error::Result;
use pool::Pool;

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

/// The default executor: a pool of threads of its own, started on demand
/// (up to asyncio's `min(32, cpus + 4)`) and ended after a second without
/// work, with a count of the jobs in flight so that shutting it down can
/// wait for them (EX-02). Dropping it lets its threads end once the jobs
/// queued are done, so none outlives the loop that owned it.
pub struct DefaultExecutor {
    pool: Pool,
}

impl fmt::Debug for DefaultExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultExecutor")
            .field("in_flight", &self.pool.in_flight())
            .finish()
    }
}

impl DefaultExecutor {
    /// An executor with no thread yet.
    ///
    /// # Errors
    /// None today; kept fallible for a pool that starts threads up front.
    pub fn new() -> Result<DefaultExecutor> {
        Ok(DefaultExecutor { pool: Pool::new() })
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
        self.pool.wait_idle();
    }

    /// Finish the jobs handed so far and end the threads, waiting for both.
    pub(crate) fn shutdown(&self) {
        self.pool.shutdown();
    }
}

impl Executor for DefaultExecutor {
    fn execute(&self, job: Box<dyn FnOnce() + Send>) {
        self.pool.execute(job);
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
