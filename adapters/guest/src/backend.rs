//! [`GuestBuilder`] and the guest-mode [`Backend`]: an attached backend
//! whose host is reached only through a [`Host`] hook.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use oneloop::backend::{Backend, Driver, Interest, IntoBackend, NextDispatch, RemoteWake};
use oneloop::{Error, ErrorKind, ExceptionContext, Loop, LoopBuilder, RunContext};

use crate::host::Host;
use crate::io::{Io, Shared};
use crate::registry;

/// How to build a loop in guest mode on this thread, the host's: give it
/// to [`Loop::with_backend`] or [`LoopBuilder::build_with`] (it is an
/// [`IntoBackend`]), or use [`new_loop`](crate::new_loop), which does and
/// adds the guest's batch hook.
pub(crate) struct GuestBuilder {
    host: Box<dyn Host>,
    /// Where the built backend's shared half goes, for the caller.
    built: Rc<RefCell<Option<Rc<Inner>>>>,
}

impl fmt::Debug for GuestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestBuilder").finish_non_exhaustive()
    }
}

impl GuestBuilder {
    pub(crate) fn new(host: Box<dyn Host>) -> (GuestBuilder, Rc<RefCell<Option<Rc<Inner>>>>) {
        let built = Rc::new(RefCell::new(None));
        (
            GuestBuilder {
                host,
                built: built.clone(),
            },
            built,
        )
    }
}

impl IntoBackend for GuestBuilder {
    type Backend = GuestBackend;

    /// The host runs the loop: it counts as running from creation to close.
    fn attached(&self) -> bool {
        true
    }

    /// Start the I/O thread.
    ///
    /// # Errors
    /// If the poller or the thread cannot be created.
    fn into_backend(self, driver: Driver) -> io::Result<GuestBackend> {
        let id = registry::next_id();
        let shared = Shared::new(self.host, id)?;
        let io = Io::start(shared.clone())?;
        let inner = Rc::new(Inner {
            id,
            driver,
            shared,
            io: RefCell::new(io),
        });
        registry::insert(id, &inner);
        *self.built.borrow_mut() = Some(inner.clone());
        Ok(GuestBackend { inner })
    }
}

/// The backend of a loop in guest mode (see the [crate docs](crate)).
pub(crate) struct GuestBackend {
    inner: Rc<Inner>,
}

impl fmt::Debug for GuestBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestBackend")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// What the backend and the jobs of its host share, on the host thread.
pub(crate) struct Inner {
    id: u64,
    driver: Driver,
    pub(crate) shared: Arc<Shared>,
    io: RefCell<Io>,
}

impl Inner {
    /// A tick, on the host thread: hand the ready fds to the loop and
    /// dispatch it once.
    pub(crate) fn tick(&self) {
        let ready = self.shared.begin_tick();
        // The loop, upgraded once for the reports and the dispatch.
        let Some(lp) = self.driver.target() else {
            return;
        };
        for (fd, readiness) in ready {
            lp.fd_ready(fd, readiness);
        }
        lp.dispatch();
    }
}

impl Backend for GuestBackend {
    fn name(&self) -> &str {
        "guest"
    }

    fn arm(&self, next: NextDispatch) {
        let shared = &self.inner.shared;
        match next {
            // Straight to the host: this is the host thread.
            NextDispatch::Now => shared.post_tick(),
            NextDispatch::At(t) => shared.set_deadline(Some(t)),
            NextDispatch::OnEvent => shared.set_deadline(None),
        }
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        let shared = self.inner.shared.clone();
        Arc::new(move || shared.wake())
    }

    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.inner.io.borrow_mut().watch(fd, interest)
    }

    fn is_attached(&self) -> bool {
        true
    }

    fn clock_resolution(&self) -> Duration {
        // The I/O thread waits with polling: a timerfd on Linux and
        // Android, whole milliseconds (rounded up) elsewhere. The hop to
        // the host thread adds its latency, not rounding.
        if cfg!(any(target_os = "linux", target_os = "android")) {
            Duration::from_micros(1)
        } else {
            Duration::from_millis(1)
        }
    }

    /// `stop()` cannot stop a host it does not run: it is reported to the
    /// exception handler (EM-09), and the loop goes on.
    fn stop_requested(&self) {
        if let Ok(lp) = oneloop::get_running_loop() {
            lp.call_exception_handler(
                ExceptionContext::new(
                    "stop() is not supported in guest mode: the host runs the loop. \
                     End a guest run by letting its main future complete (or cancel it \
                     with GuestRun::cancel), or close the loop",
                )
                .with_error(Error::new(ErrorKind::Unsupported, "stop() in guest mode")),
            );
        }
    }

    fn close(&self) {
        self.inner.io.borrow_mut().stop();
        registry::remove(self.inner.id);
    }
}

impl Drop for GuestBackend {
    fn drop(&mut self) {
        registry::remove(self.inner.id);
    }
}

/// The guest's hook around every batch: the end of a batch acknowledges
/// the fds the I/O thread reported (their callbacks ran), so it waits
/// again. A tick that could not dispatch (nested) owes it until then.
pub(crate) struct Batches {
    pub(crate) inner: Weak<Inner>,
    pub(crate) depth: Cell<u32>,
}

impl RunContext for Batches {
    fn enter(&self, run: &mut dyn FnMut()) {
        self.depth.set(self.depth.get() + 1);
        // Also when a panic unwinds out of the batch (a panicking tracing
        // subscriber, a panic payload whose drop panics: the loop stays fit
        // for use, ER-04): a depth left raised would never acknowledge
        // again, and the I/O thread would stay parked for good. Ready fds
        // whose callbacks did not run are level-triggered: acknowledged,
        // they are reported again.
        let _end = BatchEnd(self);
        run();
    }

    fn name(&self) -> &str {
        "guest mode"
    }
}

/// The end of a batch, run by drop so that an unwinding batch ends too.
struct BatchEnd<'a>(&'a Batches);

impl Drop for BatchEnd<'_> {
    fn drop(&mut self) {
        let b = self.0;
        b.depth.set(b.depth.get() - 1);
        if b.depth.get() == 0
            && let Some(inner) = b.inner.upgrade()
        {
            inner.shared.ack();
        }
    }
}

/// A new loop in guest mode on this thread, whose host runs `host`'s jobs.
///
/// The loop is attached: it counts as running from now until
/// [`close`](Loop::close), `run_forever`/`run_until_complete` answer
/// [`ErrorKind::AlreadyRunning`], and it is this thread's running loop
/// ([`oneloop::get_running_loop`]). Closing it stops and joins the I/O
/// thread; nothing of the guest is left. For a guest that ends by itself
/// and says so, use [`start_guest_run`](crate::start_guest_run).
///
/// # Errors
/// [`ErrorKind::AlreadyRunning`] if a loop already runs on this thread
/// (a guest, an attached loop, or a `run_*` further up the stack: one
/// guest per host thread); [`ErrorKind::Io`] if the poller or the I/O
/// thread cannot be created.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::collections::VecDeque;
///
/// // A host: a queue this thread drains (a GUI loop would wake itself).
/// let queue = Arc::new(Mutex::new(VecDeque::<oneloop_guest::Job>::new()));
/// let q = queue.clone();
/// let lp = oneloop_guest::new_loop(move |job| q.lock().unwrap().push_back(job))?;
///
/// let fired = lp.create_future::<&str>();
/// let f = fired.clone();
/// lp.call_later(std::time::Duration::from_millis(1), move || { let _ = f.set_result("timer"); })?;
/// while !fired.done() {
///     let job = queue.lock().unwrap().pop_front();
///     match job {
///         Some(job) => job.run(),
///         None => std::thread::yield_now(),
///     }
/// }
/// assert_eq!(fired.result()?, "timer");
/// lp.close()?; // joins the I/O thread
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn new_loop(host: impl Host) -> oneloop::Result<Loop> {
    new_loop_with(LoopBuilder::new(), host)
}

/// [`new_loop`] with options (debug mode, panic policy, timer slack).
///
/// # Errors
/// As [`new_loop`].
pub fn new_loop_with(builder: LoopBuilder, host: impl Host) -> oneloop::Result<Loop> {
    let (make, built) = GuestBuilder::new(Box::new(host));
    let lp = builder.build_with(make)?;
    let inner = built.borrow_mut().take();
    let inner = inner
        .ok_or_else(|| Error::new(ErrorKind::InvalidState, "the guest backend was not built"))?;
    lp.add_run_context(Rc::new(Batches {
        inner: Rc::downgrade(&inner),
        depth: Cell::new(0),
    }))?;
    Ok(lp)
}

/// The shared half of the loop's backend, for [`GuestRun`](crate::GuestRun).
pub(crate) fn shared_of(lp: &Loop) -> Option<Arc<Shared>> {
    lp.run_context::<Batches>()
        .and_then(|b| b.inner.upgrade())
        .map(|inner| inner.shared.clone())
}
