//! A complete oneloop backend in 80 lines: a condition variable as the
//! host. It has no fd watching (so it declares no `fd` capability), and
//! passes every other check of the suite.

use std::cell::Cell;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use oneloop::backend::{Backend, Driver, NextDispatch, RemoteWake};
use oneloop_conformance::{AdapterSpec, Caps, Setup};

/// The wake flag other threads set, and the condition variable the loop
/// waits on. (A mutex is not async-signal-safe; a backend that must take
/// wakes from signal handlers uses an eventfd or a pipe, D6.)
#[derive(Default)]
struct Wake {
    woken: Mutex<bool>,
    cv: Condvar,
}

/// The backend: it only has to wait and wake. The scheduler in `oneloop`
/// decides what runs and in which order.
pub(crate) struct CondvarBackend {
    driver: Driver,
    armed: Cell<Option<NextDispatch>>,
    wake: Arc<Wake>,
}

impl Backend for CondvarBackend {
    fn name(&self) -> &str {
        "condvar"
    }

    fn arm(&self, next: NextDispatch) {
        self.armed.set(Some(next));
    }

    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        let wake = self.wake.clone();
        Arc::new(move || {
            *wake.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
            wake.cv.notify_one();
        })
    }

    fn turn(&self) -> io::Result<()> {
        let driver = &self.driver;
        let next = self.armed.get().unwrap_or(NextDispatch::OnEvent);
        // Rounds up, so the wait never ends before a timer's deadline (D7).
        let timeout = next.timeout(Instant::now(), Duration::from_nanos(1));
        let woken = self.wake.woken.lock().unwrap_or_else(|e| e.into_inner());
        let mut woken = match timeout {
            None => self
                .wake
                .cv
                .wait_while(woken, |w| !*w)
                .unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let waited = self.wake.cv.wait_timeout_while(woken, d, |w| !*w);
                waited.unwrap_or_else(|e| e.into_inner()).0
            }
        };
        *woken = false;
        drop(woken);
        driver.dispatch();
        Ok(())
    }
}

fn setup() -> oneloop::Result<Setup> {
    // The backend is built with the loop's driver, its handle back in.
    Ok(Setup::new(oneloop::Loop::with_backend(|driver| {
        Ok(CondvarBackend {
            driver,
            armed: Cell::new(None),
            wake: Arc::default(),
        })
    })?))
}

/// What the backend declares to the conformance suite.
pub(crate) fn spec() -> AdapterSpec {
    AdapterSpec {
        name: "condvar",
        setup,
        caps: Caps::THREADS.union(Caps::EXECUTOR),
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    }
}
