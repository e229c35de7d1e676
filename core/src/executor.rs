//! `run_in_executor`: blocking work on a thread pool, its result delivered
//! on the loop thread as a [`Future`].

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use futures::channel::oneshot;
use futures::executor::ThreadPool;

use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;
use crate::exception::panic_message;
use crate::future::Future;

/// Runs jobs off the loop thread (PEP 3156's `concurrent.futures.Executor`).
pub trait Executor: Send + Sync + 'static {
    /// Run `job` on some other thread, soon.
    fn execute(&self, job: Box<dyn FnOnce() + Send>);
}

/// The default executor: a `futures` thread pool, with a count of the jobs
/// in flight so that shutting it down can wait for them (EX-02).
pub struct DefaultExecutor {
    pool: ThreadPool,
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl fmt::Debug for DefaultExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultExecutor")
            .field("in_flight", &*self.lock())
            .finish()
    }
}

impl DefaultExecutor {
    /// A pool with one thread per CPU (at least two).
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the threads cannot be started.
    pub fn new() -> Result<DefaultExecutor> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        let pool = ThreadPool::builder()
            .pool_size(threads)
            .name_prefix("oneloop-executor-")
            .create()?;
        Ok(DefaultExecutor {
            pool,
            in_flight: Arc::new((Mutex::new(0), Condvar::new())),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.in_flight.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block until every job handed to this executor has finished.
    pub fn wait_idle(&self) {
        let mut n = self.lock();
        while *n > 0 {
            n = self.in_flight.1.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Executor for DefaultExecutor {
    fn execute(&self, job: Box<dyn FnOnce() + Send>) {
        *self.lock() += 1;
        let in_flight = self.in_flight.clone();
        self.pool.spawn_ok(async move {
            job();
            let mut n = in_flight.0.lock().unwrap_or_else(|e| e.into_inner());
            *n -= 1;
            if *n == 0 {
                in_flight.1.notify_all();
            }
        });
    }
}

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
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// let fut = lp.run_in_executor(|| (1..=10u64).product::<u64>())?;
    /// assert_eq!(lp.run_until_complete(fut)??, 3_628_800);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    #[track_caller]
    pub fn run_in_executor<T, F>(&self, f: F) -> Result<Future<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.inner.check_open()?;
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
                .is_some_and(|inner| Future { inner }.cancel_now())
        }));
        // The receiving side is a small task: the value crosses threads in
        // the channel, the `!Send` future is completed on the loop thread.
        let done = fut.clone();
        self.spawn(async move {
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
    /// the loop, until the jobs it runs have finished (EX-02). Afterwards
    /// `run_in_executor` fails until another executor is set.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] after close.
    pub fn shutdown_default_executor(&self) -> Result<Future<()>> {
        self.inner.check_open()?;
        let previous = std::mem::replace(
            &mut *self.inner.executor.borrow_mut(),
            ExecutorSlot::ShutDown,
        );
        let fut = self.create_future::<()>();
        let (tx, rx) = oneshot::channel::<()>();
        let done = fut.clone();
        self.spawn(async move {
            let _ = rx.await;
            let _ = done.set_result(());
        })?;
        std::thread::Builder::new()
            .name("oneloop-executor-shutdown".into())
            .spawn(move || {
                if let ExecutorSlot::Default(pool) = previous {
                    pool.wait_idle();
                    // The last reference: the pool's threads exit.
                    drop(pool);
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
