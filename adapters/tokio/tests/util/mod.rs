//! Helpers shared by the integration tests: watchdogs and host builders.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use oneloop::Loop;

/// Generous: a hang fails the test after this, it never blocks CI.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Stops an owned loop from another thread if the test runs past `LIMIT`.
pub struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn new(lp: &Loop) -> Watchdog {
        let (cancel, rx) = mpsc::channel::<()>();
        let remote = lp.remote();
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LIMIT) {
                f.store(true, Ordering::SeqCst);
                let _ = remote.stop();
            }
        });
        Watchdog {
            cancel: Some(cancel),
            fired,
            thread: Some(thread),
        }
    }

    /// Panics if the watchdog had to stop the loop.
    pub fn check(&self, what: &str) {
        assert!(
            !self.fired.load(Ordering::SeqCst),
            "{what}: watchdog fired after {LIMIT:?} (missed wake-up or starvation)"
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

/// A current-thread runtime and a `LocalSet`, as a tokio program has.
pub fn tokio_host() -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (rt, tokio::task::LocalSet::new())
}

/// Run `fut` on a fresh tokio host, failing after `LIMIT`.
pub fn in_local_set<F: Future>(fut: F) -> F::Output {
    let (rt, local) = tokio_host();
    local.block_on(&rt, async {
        tokio::time::timeout(LIMIT, fut)
            .await
            .expect("watchdog: the test ran past its limit")
    })
}
