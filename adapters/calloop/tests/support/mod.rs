//! Helpers shared by the integration tests: a watchdog and a socket pair.

#![allow(dead_code, unreachable_pub)]

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Ends a test that would hang: after `limit`, `fire` runs on a thread
/// (stop the host, stop the loop) and [`Watchdog::fired`] turns true, which
/// the test then asserts is false.
pub struct Watchdog {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    pub fn new(limit: Duration, fire: impl FnOnce() + Send + 'static) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let (d, f) = (done.clone(), fired.clone());
        std::thread::spawn(move || {
            let step = Duration::from_millis(10);
            let mut waited = Duration::ZERO;
            while waited < limit {
                if d.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(step);
                waited += step;
            }
            f.store(true, Ordering::Release);
            fire();
        });
        Watchdog { done, fired }
    }

    /// Whether the watchdog had to end the test.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

/// A connected, non-blocking Unix socket pair.
pub fn socket_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Records every report to the loop's exception handler (a panic in a
/// callback is caught there, D3), so a test can assert there was none.
pub fn record_exceptions(lp: &oneloop::Loop) -> std::rc::Rc<std::cell::RefCell<Vec<String>>> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(Some(
        move |_: &oneloop::Loop, ctx: &oneloop::ExceptionContext| {
            s.borrow_mut().push(format!("{ctx:?}"));
        },
    ));
    seen
}
