//! Helpers shared by the behaviour tests: watchdogs, so that a missed
//! wake-up fails a test instead of hanging CI.

#![allow(dead_code)] // each test crate uses a subset

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::FutureExt;
use oneloop::Loop;

/// How long any single test may wait for an event before it fails.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// Stops an owned loop from another thread if the test has not finished
/// within [`LIMIT`]; `fired()` then tells the test it was a timeout.
pub(crate) struct Watchdog {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn arm(lp: &Loop) -> Watchdog {
        let remote = lp.remote();
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let done = done.clone();
            let fired = fired.clone();
            move || {
                std::thread::park_timeout(LIMIT);
                while !done.load(Ordering::SeqCst) {
                    // Spurious unparks aside, this is the deadline.
                    fired.store(true, Ordering::SeqCst);
                    let _ = remote.stop();
                    std::thread::park_timeout(Duration::from_millis(100));
                }
            }
        });
        Watchdog {
            done,
            fired,
            thread: Some(thread),
        }
    }

    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Run `fut` on the host executor `ex` (as the host program would), giving
/// up after [`LIMIT`].
///
/// # Panics
/// On timeout.
pub(crate) fn host_run<T>(ex: &LocalExecutor<'_>, fut: impl Future<Output = T>) -> T {
    let limited = async { Some(fut.await) }.or(async {
        Timer::after(LIMIT).await;
        None
    });
    async_io::block_on(ex.run(limited)).expect("timed out: a wake-up was missed")
}

/// `run_until_complete` on an owned loop under a [`Watchdog`].
///
/// # Panics
/// On timeout or if the run fails.
pub(crate) fn run_owned<F: Future>(lp: &Loop, fut: F) -> F::Output {
    let dog = Watchdog::arm(lp);
    let out = lp.run_until_complete(fut);
    assert!(!dog.fired(), "timed out: a wake-up was missed");
    out.expect("run_until_complete failed")
}
