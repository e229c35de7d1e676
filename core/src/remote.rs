//! [`RemoteLoop`]: the `Send + Sync` handle other threads use.

use std::fmt;
use std::future::Future as StdFuture;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::oneshot;

use crate::context;
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;
use crate::scheduler::Ready;
use crate::scheduler::inbox::{Remote, Shared};

/// The thread-safe handle of a loop, from [`Loop::remote`].
///
/// "Touch the loop from other threads only through `call_soon_threadsafe`"
/// (PEP 3156): this type is that rule in types. It is `Send + Sync` and
/// cheap to clone, and every method works from any thread, including the
/// loop's own.
///
/// ```
/// let lp = oneloop::Loop::new()?;
/// let remote = lp.remote();
/// let worker = std::thread::spawn(move || remote.call_soon_threadsafe(|| println!("on the loop")));
/// worker.join().unwrap()?;
/// let remote = lp.remote();
/// std::thread::spawn(move || remote.stop());
/// lp.run_forever()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Clone)]
pub struct RemoteLoop {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for RemoteLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteLoop")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl RemoteLoop {
    /// Schedule `f` on the loop's thread, waking the loop if it is blocked
    /// (TH-01). It joins the same FIFO as [`Loop::call_soon`] (D8): from the
    /// loop's own thread it is queued at once, from another thread at the
    /// loop's next iteration. Wakes are coalesced.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed (TH-05); never panics.
    #[track_caller]
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let location = Location::caller();
        if std::thread::current().id() == self.shared.thread
            && let Some(inner) = context::local_loop(self.shared.id)
        {
            return inner
                .sched
                .try_push_ready_with(|| Ready::Boxed(Box::new(f), location));
        }
        self.shared
            .post(Remote::Call(Box::new(f), location))
            .map_err(|_| Error::closed())
    }

    /// Stop the loop, from any thread (TH-01: `call_soon_threadsafe(stop)`).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed.
    pub fn stop(&self) -> Result<()> {
        let id = self.shared.id;
        self.call_soon_threadsafe(move || {
            if let Some(inner) = context::local_loop(id) {
                Loop::from_inner(inner).stop();
            }
        })
    }

    /// Run a `Send` future as a task on the loop; the returned handle
    /// gives its output to any thread.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] once the loop is closed.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Result<RemoteTask<F::Output>>
    where
        F: StdFuture + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let id = self.shared.id;
        self.call_soon_threadsafe(move || {
            let Some(inner) = context::local_loop(id) else {
                return;
            };
            let lp = Loop::from_inner(inner);
            if let Ok(task) = lp.spawn(future) {
                let _ = lp.spawn(async move {
                    let _ = tx.send(task.await);
                });
            }
        })?;
        Ok(RemoteTask { rx })
    }

    /// Whether the loop was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Wake the loop without scheduling anything (a dispatch with nothing to
    /// do). For adapters and tests; never needed by correct code.
    pub fn wake(&self) {
        self.shared.wake();
    }
}

/// The output of a task started with [`RemoteLoop::spawn`]; a `Send` future.
#[derive(Debug)]
pub struct RemoteTask<T> {
    rx: oneshot::Receiver<Result<T>>,
}

impl<T> StdFuture for RemoteTask<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::new(
                ErrorKind::Cancelled,
                "the loop was closed before the task finished",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Loop {
    /// A `Send + Sync` handle for other threads: `call_soon_threadsafe`,
    /// `spawn` of `Send` futures, `stop`.
    pub fn remote(&self) -> RemoteLoop {
        RemoteLoop {
            shared: self.inner.sched.shared().clone(),
        }
    }

    /// [`RemoteLoop::call_soon_threadsafe`] from the loop's own thread: the
    /// same FIFO as [`call_soon`](Loop::call_soon) (D8, TH-03).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close (TH-05).
    #[track_caller]
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) -> Result<()> {
        self.remote().call_soon_threadsafe(f)
    }
}
