//! Helpers shared by the core's integration tests: condition waits with a
//! deadline (never a sleep that hopes), a watchdog, and a recording log.
//!
//! The conformance suite has the same helpers (`oneloop_conformance::
//! support`); the core cannot depend on it (the suite depends on the core),
//! so the few its tests need are here.
#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use oneloop::{ExceptionContext, Loop};

/// How long a test waits for one event before it fails: generous for a
/// loaded CI machine, short enough that a hang shows in seconds.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A log of events, shared by the callbacks of one test.
#[derive(Clone, Default)]
pub struct Log<T>(Rc<RefCell<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub fn new() -> Self {
        Log(Rc::new(RefCell::new(Vec::new())))
    }
    pub fn push(&self, v: T) {
        self.0.borrow_mut().push(v);
    }
    pub fn get(&self) -> Vec<T> {
        self.0.borrow().clone()
    }
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

/// Stops the loop from another thread once `limit` has passed, so that a
/// missed wake-up fails the test (the watchdog says it fired) instead of
/// hanging it. Dropping it disarms it at once (no polling) and joins its
/// thread.
pub struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    limit: Duration,
}

impl Watchdog {
    pub fn arm(lp: &Loop, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let remote = lp.remote();
        let f = fired.clone();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                f.store(true, Ordering::Release);
                let _ = remote.stop();
            }
        });
        Watchdog {
            cancel: Some(tx),
            fired,
            thread: Some(thread),
            limit,
        }
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Fail if the watchdog had to stop the loop.
    #[track_caller]
    pub fn assert_not_fired(&self, what: &str) {
        assert!(
            !self.fired(),
            "{what}: the watchdog stopped the loop after {:?} (a missed wake-up)",
            self.limit
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

/// Wait, off the loop's thread, until `cond()` holds or `deadline` passes;
/// returns whether it held. Checks at once, then with a backoff from 50 µs
/// to 5 ms between checks: the pauses are the polling of a condition, not
/// a wait for an event to have happened.
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
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// The kernel's ID of the calling thread.
pub fn current_tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// On a helper thread: wait until thread `tid` (a loop's thread, from
/// [`current_tid`]) is asleep in the kernel, which for a loop with nothing
/// to do means blocked in its poll, so that what the helper does next has
/// to wake it. Returns whether it saw that (false where `/proc` does not
/// tell, or after `LIMIT`).
pub fn wait_until_asleep(tid: i32) -> bool {
    let asleep = || -> Option<bool> {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        Some(stat.rsplit_once(')')?.1.split_whitespace().next()? == "S")
    };
    asleep().is_some() && wait_until(Instant::now() + LIMIT, || asleep() == Some(true))
}

/// Install an exception handler that records every report.
pub fn record_exceptions(lp: &Loop) -> Log<ExceptionContext> {
    let log = Log::new();
    let l = log.clone();
    lp.set_exception_handler(Some(move |_: &Loop, ctx: &ExceptionContext| {
        l.push(ctx.clone())
    }));
    log
}

/// Queue `stop` and run: one pass of everything already queued.
pub fn run_once(lp: &Loop) {
    let l = lp.clone();
    lp.call_soon(move || l.stop()).unwrap();
    lp.run_forever().unwrap();
}

/// A callback that stops `lp`.
pub fn stopper(lp: &Loop) -> impl FnOnce() + 'static {
    let lp = lp.clone();
    move || lp.stop()
}

/// A `tracing` subscriber that panics on every event of its level (as a CI
/// setup that fails a run on any error does), unless already panicking.
pub struct PanicOn(pub tracing::Level);

impl tracing::Subscriber for PanicOn {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        if *e.metadata().level() == self.0 && !std::thread::panicking() {
            panic!("a {} event was logged", self.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
