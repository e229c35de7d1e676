//! [`LoopExecutor`]: hyper's background futures as loop tasks.

use std::future::Future;

use oneloop::{Loop, Task};

/// hyper's [`Executor`](hyper::rt::Executor) on a oneloop loop: each future
/// hyper hands over (an http2 stream, a client connection's background
/// work) becomes a task of the loop and runs on its thread. The futures
/// need not be `Send`.
///
/// A future handed over after the loop closed is dropped (hyper then sees
/// its connection end) and a warning is logged: the loop runs nothing any
/// more. Closing the loop drops every task it still has, so nothing hyper
/// started outlives it.
#[derive(Debug, Clone)]
pub struct LoopExecutor {
    lp: Loop,
}

impl LoopExecutor {
    /// An executor that spawns on `lp`.
    pub fn new(lp: &Loop) -> LoopExecutor {
        LoopExecutor { lp: lp.clone() }
    }

    /// The loop it spawns on.
    pub fn get_loop(&self) -> &Loop {
        &self.lp
    }

    /// Spawn `fut` on the loop, as `Loop::spawn`: for serving a connection.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](oneloop::ErrorKind::Closed) once the loop is
    /// closed.
    pub fn spawn<F>(&self, fut: F) -> oneloop::Result<Task<F::Output>>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.lp.spawn(fut)
    }
}

impl<F> hyper::rt::Executor<F> for LoopExecutor
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        // The task is detached: dropping its handle does not cancel it.
        if let Err(e) = self.lp.spawn(async move {
            fut.await;
        }) {
            tracing::warn!(target: "oneloop_hyper", "hyper's future was dropped: {e}");
        }
    }
}
