//! The tokio bridge: tokio libraries inside the tasks and callbacks of a
//! loop on any host (glib, calloop, smol, the default loop).
//!
//! tokio's I/O types, timers and `spawn_local` find their runtime through
//! thread-locals. [`enable`] installs a [`RunContext`] that sets them
//! around every batch the loop runs:
//!
//! - **the runtime context**: a tokio current-thread runtime whose I/O
//!   driver and timer wheel run on one helper thread
//!   (`oneloop-tokio-bridge`), parked in `epoll_wait` while nothing is due.
//!   A tokio socket made in a oneloop task registers with that reactor;
//!   when it is ready the reactor wakes the task's waker, which is
//!   thread-safe, and the task runs again **on the loop's thread**: the
//!   helper thread never runs user code of the loop. The wakes of one
//!   reactor turn reach the loop as one ([`oneloop::defer_wakes`]), so a
//!   burst of ready sockets costs one loop wake-up; and on Linux the
//!   thread is `SCHED_BATCH`, so its wake-ups do not preempt the loop's
//!   thread on a shared CPU (its share of the CPU is unchanged).
//!   `tokio::spawn`ed
//!   (`Send`) tasks run on the helper thread, as on any tokio runtime.
//! - **a `LocalSet`**, entered too, so `tokio::task::spawn_local` works;
//!   its tasks run on the loop's thread, driven by one oneloop task.
//!
//! Closing the loop drops its tasks (and the tokio resources they hold),
//! then the `LocalSet`, then stops the runtime and joins the helper thread:
//! nothing is left running. tokio work on `spawn_blocking` threads that
//! outlives a one-second grace period is abandoned, as
//! `Runtime::shutdown_timeout` does.
//!
//! On the tokio adapter itself the loop already runs inside its runtime and
//! `LocalSet`; [`enable`] then installs nothing.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use oneloop::{Error, ErrorKind, Loop, Result, RunContext};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::LocalSet;

/// How long closing the loop waits for the bridge runtime's blocking
/// threads.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Run tokio libraries on `lp`, whatever its host: after this call,
/// `tokio::net`, `tokio::time`, `tokio::sync`, `tokio::task::spawn_local`
/// and tokio-based crates (hyper-util's client, reqwest, tonic clients)
/// work inside every task and callback of `lp`, in owned and attached
/// mode, with results delivered on the loop's thread. See the
/// [module docs](self) for how.
///
/// # Errors
/// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::InvalidState`] if
/// tokio support is already enabled on `lp`; [`ErrorKind::Io`] if the
/// runtime or its thread cannot be made. On the tokio adapter it succeeds
/// without installing anything, every time: the loop runs inside tokio.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop::Loop::new()?; // the default loop: no tokio inside
/// oneloop_tokio::enable(&lp)?;
/// let task = lp.spawn(async {
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?;
///     let client = tokio::task::spawn_local(tokio::net::TcpStream::connect(addr));
///     let (_server_side, _) = listener.accept().await?;
///     client.await.unwrap()?;
///     tokio::time::sleep(Duration::from_millis(1)).await;
///     Ok::<_, std::io::Error>("connected")
/// })?;
/// assert_eq!(lp.run_until_complete(task)???, "connected");
/// lp.close()?; // stops the bridge's runtime and joins its thread
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn enable(lp: &Loop) -> Result<()> {
    if lp.is_closed() {
        return Err(Error::new(ErrorKind::Closed, "the event loop is closed"));
    }
    if lp.backend_name() == crate::backend::NAME {
        return Ok(());
    }
    if lp.run_context::<TokioContext>().is_some() {
        return Err(Error::new(
            ErrorKind::InvalidState,
            "tokio support is already enabled on this loop",
        ));
    }
    let ctx = Rc::new(TokioContext::start()?);
    // The LocalSet's tasks run in one oneloop task; it ends when the loop
    // closes (or never: `run_until` a future that never completes).
    let local = ctx.local.clone();
    lp.spawn(async move { local.run_until(std::future::pending::<()>()).await })?;
    lp.add_run_context(ctx)?;
    Ok(())
}

/// Whether tokio libraries can run on `lp`: the loop is on the tokio
/// adapter, or [`enable`] was called on it.
///
/// # Examples
///
/// A library that needs tokio enables it once, whoever made the loop:
///
/// ```
/// fn ensure_tokio(lp: &oneloop::Loop) -> oneloop::Result<()> {
///     if !oneloop_tokio::is_enabled(lp) {
///         oneloop_tokio::enable(lp)?; // a second `enable` would be an error
///     }
///     Ok(())
/// }
///
/// let lp = oneloop::Loop::new()?;
/// ensure_tokio(&lp)?;
/// ensure_tokio(&lp)?;
/// assert!(oneloop_tokio::is_enabled(&lp));
/// assert!(oneloop_tokio::is_enabled(&oneloop_tokio::new_loop()?)); // tokio's own loop
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn is_enabled(lp: &Loop) -> bool {
    lp.backend_name() == crate::backend::NAME || lp.run_context::<TokioContext>().is_some()
}

thread_local! {
    /// On the bridge's runtime thread, while it is parked (its reactor and
    /// timers dispatching): the loop wakes held back until it unparks.
    static HELD: RefCell<Option<oneloop::DeferredWakes>> = const { RefCell::new(None) };
}

/// The bridge: the runtime's handle and thread, the `LocalSet`.
struct TokioContext {
    handle: Handle,
    /// Shared with the oneloop task that drives it.
    local: Rc<LocalSet>,
    stop: RefCell<Option<oneshot::Sender<()>>>,
    thread: RefCell<Option<JoinHandle<()>>>,
}

impl fmt::Debug for TokioContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioContext").finish_non_exhaustive()
    }
}

impl TokioContext {
    /// Build the runtime on its own thread and wait for its handle.
    fn start() -> Result<TokioContext> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("oneloop-tokio-bridge".into())
            .spawn(move || {
                crate::sched::batch_this_thread();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("oneloop-tokio-bridge-blocking")
                    // The reactor wakes loop tasks while parked: one loop
                    // wake per turn, not one per ready socket.
                    .on_thread_park(|| {
                        HELD.with(|h| *h.borrow_mut() = Some(oneloop::defer_wakes()))
                    })
                    .on_thread_unpark(|| drop(HELD.with(|h| h.borrow_mut().take())))
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Drives the reactor, the timers and `tokio::spawn`ed tasks
                // until the loop closes (or the bridge is dropped: the
                // sender goes, `stop_rx` resolves).
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                rt.shutdown_timeout(SHUTDOWN_GRACE);
            })
            .map_err(Error::from)?;
        let handle = match handle_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(Error::from(e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::new(
                    ErrorKind::Io,
                    "the tokio bridge thread ended before its runtime started",
                ));
            }
        };
        Ok(TokioContext {
            handle,
            local: Rc::new(LocalSet::new()),
            stop: RefCell::new(Some(stop_tx)),
            thread: RefCell::new(Some(thread)),
        })
    }
}

impl RunContext for TokioContext {
    fn enter(&self, run: &mut dyn FnMut()) {
        let _rt = self.handle.enter();
        let _local = self.local.enter();
        run()
    }

    fn name(&self) -> &str {
        "tokio bridge"
    }
}

impl Drop for TokioContext {
    /// The loop closed, after dropping its tasks (the `LocalSet`'s driver
    /// among them): drop what runs on the loop thread first, then stop the
    /// runtime and join its thread.
    fn drop(&mut self) {
        {
            // The LocalSet's tasks may hold tokio resources, which
            // deregister from the reactor as they drop.
            let _rt = self.handle.enter();
            let local = std::mem::replace(&mut self.local, Rc::new(LocalSet::new()));
            drop(local);
        }
        drop(self.stop.get_mut().take());
        if let Some(thread) = self.thread.get_mut().take() {
            let _ = thread.join();
        }
    }
}
