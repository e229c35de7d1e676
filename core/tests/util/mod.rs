//! Helpers shared by the core's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use oneloop::{ExceptionContext, Loop};

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

/// Stops the loop from another thread after `limit`, so that a missing
/// wake-up fails the test (the flag says the watchdog fired) instead of
/// hanging it. Dropping the guard disarms it.
pub struct Watchdog {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    pub fn arm(lp: &Loop, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let remote = lp.remote();
        let (d, f) = (done.clone(), fired.clone());
        thread::spawn(move || {
            let step = Duration::from_millis(5);
            let mut waited = Duration::ZERO;
            while waited < limit {
                if d.load(Ordering::Acquire) {
                    return;
                }
                thread::sleep(step);
                waited += step;
            }
            f.store(true, Ordering::Release);
            let _ = remote.stop();
        });
        Watchdog { done, fired }
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
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
