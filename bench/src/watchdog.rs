//! A watchdog for benchmark rounds that could hang on a broken loop: the
//! process exits with an error instead of hanging CI.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Ends the process with exit code 101 if not dropped within its limit.
///
/// ```
/// use std::time::Duration;
///
/// let guard = oneloop_bench::watchdog::Watchdog::arm("a quick round", Duration::from_secs(60));
/// // ... the round ...
/// drop(guard); // in time: nothing happens
/// ```
#[derive(Debug)]
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Start watching a round named `what` that must end within `limit`.
    pub fn arm(what: &str, limit: Duration) -> Watchdog {
        let (done, rx) = mpsc::channel::<()>();
        let what = what.to_owned();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!(
                    "watchdog: `{what}` did not finish within {limit:?}; aborting the benchmark"
                );
                std::process::exit(101);
            }
        });
        Watchdog {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread with `Disconnected`.
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
