//! [`BlockingExecutor`]: `run_in_executor` on tokio's blocking thread pool.

use oneloop::Executor;
use tokio::runtime::Handle;

/// An [`Executor`] on tokio's blocking pool (`spawn_blocking`), for
/// [`Loop::set_default_executor`](oneloop::Loop::set_default_executor):
/// `run_in_executor` then shares the runtime's blocking threads instead of
/// starting oneloop's own pool.
///
/// `shutdown_default_executor` does not wait for the jobs of an executor set
/// this way; the runtime's shutdown does.
///
/// # Examples
///
/// ```
/// use oneloop_tokio::{BlockingExecutor, TokioBackend};
///
/// let backend = TokioBackend::new()?;
/// let pool = BlockingExecutor::new(backend.runtime_handle());
/// let lp = oneloop::Loop::with_backend(backend)?;
/// lp.set_default_executor(pool);
/// let sum = lp.run_in_executor(|| (1..=100u32).sum::<u32>())?;
/// assert_eq!(lp.run_until_complete(sum)??, 5050);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BlockingExecutor {
    handle: Handle,
}

impl BlockingExecutor {
    /// An executor on the blocking pool of the runtime behind `handle`.
    pub fn new(handle: Handle) -> BlockingExecutor {
        BlockingExecutor { handle }
    }
}

impl Executor for BlockingExecutor {
    fn execute(&self, job: Box<dyn FnOnce() + Send>) {
        // Nobody joins it: the result travels through `run_in_executor`'s
        // own channel, and a job refused by a shut-down runtime is dropped,
        // which cancels its future.
        drop(self.handle.spawn_blocking(job));
    }
}
