//! `run_in_executor`: blocking work on the executor, its result delivered
//! on the loop thread as a [`LoopFuture`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::channel::oneshot;

use super::{DefaultExecutor, Executor, ExecutorSlot};
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;
use crate::exception::panic_message;
use crate::future::LoopFuture;

impl Loop {
    /// Run `f` on the executor and get its result as a future on this loop
    /// (EX-01). The loop keeps running while `f` works. Cancelling the
    /// future before `f` started keeps `f` from running (FU-07).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close, or after
    /// [`shutdown_default_executor`](Loop::shutdown_default_executor) when no
    /// other executor was set. The future yields [`ErrorKind::Panicked`] if
    /// `f` panics.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// let fut = lp.run_in_executor(|| (1..=10u64).product::<u64>())?;
    /// assert_eq!(lp.run_until_complete(fut)??, 3_628_800);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn run_in_executor<T, F>(&self, f: F) -> Result<LoopFuture<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.inner.sched.check_open()?;
        let executor = self.executor()?;
        let fut = self.create_future::<T>();
        let (tx, rx) = oneshot::channel::<std::thread::Result<T>>();
        let skip = Arc::new(AtomicBool::new(false));
        // Cancelling must stop a job that has not started yet at once, not
        // from a done-callback one iteration later: the pool may pick the
        // job up in between (FU-07).
        let weak = std::rc::Rc::downgrade(&fut.inner);
        let flag = skip.clone();
        fut.set_canceller(Box::new(move || {
            flag.store(true, Ordering::Release);
            weak.upgrade()
                .is_some_and(|inner| LoopFuture { inner }.cancel_now())
        }));
        // The receiving side is a small helper task: the value crosses
        // threads in the channel, the `!Send` future is completed on the
        // loop thread. A helper, so that cancelling every task cannot drop
        // it and leave `fut` pending for ever.
        let done = fut.clone();
        self.spawn_helper(async move {
            match rx.await {
                Ok(Ok(v)) => {
                    let _ = done.set_result(v);
                }
                Ok(Err(payload)) => {
                    let _ = done
                        .set_exception(Error::new(ErrorKind::Panicked, panic_message(&*payload)));
                }
                Err(_) => {
                    done.cancel_now();
                }
            }
        })?;
        executor.execute(Box::new(move || {
            if skip.load(Ordering::Acquire) {
                return;
            }
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        }));
        Ok(fut)
    }

    /// Replace the executor of [`run_in_executor`](Loop::run_in_executor).
    pub fn set_default_executor(&self, executor: impl Executor) {
        *self.inner.executor.borrow_mut() = ExecutorSlot::Custom(Arc::new(executor));
    }

    /// Stop accepting work on the default executor and wait, without blocking
    /// the loop, until the jobs it runs have finished and its threads have
    /// ended (EX-02). Afterwards `run_in_executor` fails until another
    /// executor is set. (`close` lets the default executor go too, without
    /// waiting: its threads end once the jobs queued are done.)
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close.
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::ErrorKind;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let job = lp.run_in_executor(|| 1 + 1)?;
    /// let down = lp.shutdown_default_executor()?;
    /// lp.run_until_complete(down)??; // the running job finished first
    /// assert_eq!(job.result()?, 2);
    /// assert_eq!(lp.run_in_executor(|| ()).unwrap_err().kind(), ErrorKind::Closed);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn shutdown_default_executor(&self) -> Result<LoopFuture<()>> {
        self.inner.sched.check_open()?;
        let previous = std::mem::replace(
            &mut *self.inner.executor.borrow_mut(),
            ExecutorSlot::ShutDown,
        );
        let fut = self.create_future::<()>();
        let (tx, rx) = oneshot::channel::<()>();
        let done = fut.clone();
        self.spawn_helper(async move {
            let _ = rx.await;
            let _ = done.set_result(());
        })?;
        std::thread::Builder::new()
            .name("oneloop-executor-shutdown".into())
            .spawn(move || {
                if let ExecutorSlot::Default(pool) = previous {
                    pool.shutdown();
                }
                let _ = tx.send(());
            })
            .map_err(Error::from)?;
        Ok(fut)
    }

    fn executor(&self) -> Result<Arc<dyn Executor>> {
        let mut slot = self.inner.executor.borrow_mut();
        match &*slot {
            ExecutorSlot::Default(e) => Ok(e.clone()),
            ExecutorSlot::Custom(e) => Ok(e.clone()),
            ExecutorSlot::ShutDown => Err(Error::new(
                ErrorKind::Closed,
                "the default executor was shut down",
            )),
            ExecutorSlot::Unset => {
                let e = Arc::new(DefaultExecutor::new()?);
                *slot = ExecutorSlot::Default(e.clone());
                Ok(e)
            }
        }
    }
}
