//! Test support for adapters' own tests (and the suite's): the one
//! [`Watchdog`], so that a missed wake-up fails a test instead of hanging CI,
//! and [`wait_until`], which waits for a condition with a deadline instead
//! of sleeping and hoping.
//!
//! ```
//! use std::time::Duration;
//! use oneloop_conformance::support::Watchdog;
//!
//! let lp = oneloop::Loop::new()?;
//! let dog = Watchdog::stop_loop(&lp, Duration::from_secs(10));
//! lp.call_soon({
//!     let lp = lp.clone();
//!     move || lp.stop()
//! })?;
//! lp.run_forever()?;
//! dog.assert_not_fired("run_forever with a queued stop()");
//! # Ok::<(), oneloop::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oneloop::{Loop, RemoteLoop};

/// How long a test may wait for one event before it fails: generous, so a
/// loaded CI machine does not fail a healthy test, and short enough that a
/// hang is reported in seconds.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A thread that acts when a test runs past its deadline, unless the
/// watchdog is dropped first.
///
/// The usual action stops a loop from outside ([`stop_loop`](Watchdog::stop_loop):
/// `RemoteLoop::stop`, the thread-safe path), so that a run blocked on a
/// missed wake-up returns; the test then asserts the watchdog did not fire
/// ([`assert_not_fired`](Watchdog::assert_not_fired)) and fails with a clear
/// message instead of hanging. [`with_action`](Watchdog::with_action) runs
/// any other action instead (quit a host loop, wake a `MainContext`).
///
/// Dropping the watchdog cancels it at once (no polling), and waits for its
/// thread, so no action outlives the test that armed it.
pub struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    after: Duration,
}

impl fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdog")
            .field("after", &self.after)
            .field("fired", &self.fired())
            .finish()
    }
}

impl Watchdog {
    /// Stop `lp` from another thread once `after` has passed, and again
    /// every 100 ms until the watchdog is dropped (so that a test that runs
    /// the loop again after the deadline cannot hang either).
    pub fn stop_loop(lp: &Loop, after: Duration) -> Watchdog {
        Watchdog::stop_remote(lp.remote(), after)
    }

    /// [`stop_loop`](Watchdog::stop_loop) through a [`RemoteLoop`].
    pub fn stop_remote(remote: RemoteLoop, after: Duration) -> Watchdog {
        Watchdog::spawn(after, move |rx| {
            loop {
                let _ = remote.stop();
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return,
                }
            }
        })
    }

    /// Run `fire` once, on the watchdog's thread, once `after` has passed.
    pub fn with_action(after: Duration, fire: impl FnOnce() + Send + 'static) -> Watchdog {
        Watchdog::spawn(after, move |_| fire())
    }

    fn spawn(after: Duration, fire: impl FnOnce(&mpsc::Receiver<()>) + Send + 'static) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("oneloop-watchdog".into())
            .spawn({
                let fired = fired.clone();
                move || {
                    if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                        fired.store(true, Ordering::Release);
                        fire(&rx);
                    }
                }
            })
            .expect("spawn the watchdog thread");
        Watchdog {
            cancel: Some(tx),
            fired,
            thread: Some(thread),
            after,
        }
    }

    /// Whether the deadline passed and the action ran (or is running).
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// The deadline the watchdog was armed with.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// Fail the test if the watchdog fired, naming `what` was waited for.
    ///
    /// # Panics
    /// If the watchdog fired.
    #[track_caller]
    pub fn assert_not_fired(&self, what: &str) {
        assert!(
            !self.fired(),
            "{what}: the watchdog fired after {:?} (a missed wake-up, a lost stop or starvation)",
            self.after
        );
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.cancel.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wait until `cond()` holds or `deadline` passes; returns whether it held.
///
/// For waits *off* a loop's thread (a helper thread waiting for the loop to
/// do something, a test waiting for a child process or a socket): it checks
/// `cond` at once, then with a backoff from 50 µs up to 5 ms between
/// checks, so that it neither spins a core nor adds more than a few
/// milliseconds of latency. On the loop's thread, run the loop instead
/// (`Env::run_until_true` in a check): waiting there would block the very
/// events it waits for.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::{Duration, Instant};
/// use oneloop_conformance::support::wait_until;
///
/// let flag = Arc::new(AtomicBool::new(false));
/// let f = flag.clone();
/// std::thread::spawn(move || f.store(true, Ordering::SeqCst));
/// assert!(wait_until(Instant::now() + Duration::from_secs(5), || flag.load(Ordering::SeqCst)));
/// ```
pub fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    let mut pause = Duration::from_micros(50);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        // The pause between checks of a condition, not a wait for an event.
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Whether thread `tid` of this process is asleep in the kernel (state `S`
/// in `/proc/self/task/<tid>/stat`): for a loop thread with nothing to do,
/// blocked in its poll. `None` where the OS does not tell.
pub fn thread_is_sleeping(tid: i32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    Some(state == "S")
}

/// Wait until thread `tid` of this process is asleep in the kernel, or
/// `deadline` passes: for a helper thread that must act only once the
/// loop's thread (`tid`, from [`current_tid`] on that thread) is idle,
/// blocked in its poll, so that what it does next has to wake the loop.
///
/// `Some(true)` once it is asleep, `Some(false)` if the deadline passed
/// first, `None` at once where the OS does not tell (no `/proc`). A thread
/// asleep for another reason (a lock) makes a wake-up test weaker once,
/// never falsely failing.
///
/// ```
/// use std::time::{Duration, Instant};
/// use oneloop_conformance::support::{current_tid, wait_until_asleep};
///
/// let lp = oneloop::Loop::new()?;
/// let (remote, tid) = (lp.remote(), current_tid());
/// let poster = std::thread::spawn(move || {
///     let asleep = wait_until_asleep(tid, Instant::now() + Duration::from_secs(5));
///     remote.stop().unwrap(); // wakes the idle loop
///     asleep
/// });
/// lp.run_forever()?;
/// assert_ne!(poster.join().unwrap(), Some(false));
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn wait_until_asleep(tid: i32, deadline: Instant) -> Option<bool> {
    let mut known = true;
    let asleep = wait_until(deadline, || match thread_is_sleeping(tid) {
        Some(asleep) => asleep,
        None => {
            known = false;
            true
        }
    });
    known.then_some(asleep)
}

/// The kernel's ID of the calling thread, for [`thread_is_sleeping`].
pub fn current_tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// A panic payload whose drop panics too: reporting the first panic drops
/// it, and that second panic unwinds out of the loop's run (a test of what
/// the run leaves behind then, ER-04's hardest case). Raise it with
/// `std::panic::panic_any(PanicOnDrop)`.
#[derive(Debug)]
pub struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a panic payload's drop panicked");
    }
}

/// Records every report that reaches a loop's exception handler, and fails
/// the test if any is left: a panic inside a oneloop callback is caught at
/// the callback boundary and reported there (D3), so an assertion that
/// failed inside a callback would otherwise go unnoticed.
///
/// Checked when dropped (unless the test is already panicking), or earlier
/// with [`assert_clean`](Tripwire::assert_clean); a test that expects
/// reports takes them with [`take`](Tripwire::take).
///
/// ```
/// use oneloop_conformance::support::Tripwire;
///
/// let lp = oneloop::Loop::new()?;
/// let tw = Tripwire::install(&lp);
/// lp.call_soon(|| panic!("inside a callback"))?;
/// lp.call_soon({
///     let lp = lp.clone();
///     move || lp.stop()
/// })?;
/// lp.run_forever()?;
/// assert_eq!(tw.take().len(), 1);
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug)]
pub struct Tripwire(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

impl Tripwire {
    /// Replace `lp`'s exception handler with one that records reports.
    pub fn install(lp: &Loop) -> Tripwire {
        let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let r = reports.clone();
        lp.set_exception_handler(Some(move |_: &Loop, cx: &oneloop::ExceptionContext| {
            r.borrow_mut().push(cx.to_string());
        }));
        Tripwire(reports)
    }

    /// Take the reports so far (they no longer trip the wire).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// Fail the test if any report arrived.
    ///
    /// # Panics
    /// If the exception handler was called.
    #[track_caller]
    pub fn assert_clean(&self) {
        let reports = self.take();
        assert!(
            reports.is_empty(),
            "the loop's exception handler was called: {reports:?}"
        );
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_clean();
        }
    }
}

/// `run_until_complete(fut)` on an owned loop under a [`Watchdog`] armed for
/// `limit`: a missed wake-up fails the test instead of hanging it.
///
/// # Panics
/// If the watchdog had to stop the loop, or the run fails.
///
/// ```
/// use oneloop_conformance::support::{LIMIT, run_within};
///
/// let lp = oneloop::Loop::new()?;
/// assert_eq!(run_within(&lp, LIMIT, async { 7 }), 7);
/// # Ok::<(), oneloop::Error>(())
/// ```
#[track_caller]
pub fn run_within<F: std::future::Future>(lp: &Loop, limit: Duration, fut: F) -> F::Output {
    let dog = Watchdog::stop_loop(lp, limit);
    let out = lp.run_until_complete(fut);
    dog.assert_not_fired("run_until_complete");
    out.unwrap_or_else(|e| panic!("run_until_complete failed: {e}"))
}
