//! [`BlockingPool`]: `run_in_executor` on the thread pool smol programs
//! already have.

use oneloop::Executor;

/// The `blocking` crate's thread pool (smol's `unblock`) as a oneloop
/// [`Executor`], so `run_in_executor` shares threads with the program's
/// `smol::unblock` calls instead of starting a second pool.
///
/// The pool is process-wide and grows and shrinks on its own; it has no
/// shutdown, so [`Loop::shutdown_default_executor`](oneloop::Loop::shutdown_default_executor)
/// has nothing to wait for once it is set.
///
/// # Examples
///
/// ```
/// use oneloop::Loop;
/// use oneloop_smol::{SmolBackend, BlockingPool};
///
/// let lp = Loop::with_backend(SmolBackend::new()?)?;
/// lp.set_default_executor(BlockingPool);
/// let fut = lp.run_in_executor(|| std::thread::current().name().map(String::from))?;
/// let name = lp.run_until_complete(fut)??;
/// assert!(name.is_some_and(|n| n.starts_with("blocking")));
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockingPool;

impl Executor for BlockingPool {
    fn execute(&self, job: Box<dyn FnOnce() + Send>) {
        blocking::unblock(job).detach();
    }
}
