//! Cross-thread calls on the default loop, beyond the conformance suite's
//! TH checks: `RemoteLoop::spawn` and the deferral of wake-ups (internal).

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use oneloop::Loop;
use util::{Watchdog, run_once};

/// `RemoteLoop::spawn` is oneloop's own API (no PEP counterpart).
#[test]
fn remote_spawn_runs_a_send_future_on_the_loop() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let worker = thread::spawn(move || {
        let task = remote.spawn(async { 21 * 2 }).unwrap();
        let out = futures::executor::block_on(task).unwrap();
        remote.stop().unwrap();
        out
    });
    lp.run_forever().unwrap();
    assert_eq!(worker.join().unwrap(), 42);
}

/// The default backend, counting the cross-thread wakes it is sent.
struct CountingWakes(oneloop::native::NativeBackend, Arc<AtomicUsize>);

impl oneloop::backend::Backend for CountingWakes {
    fn name(&self) -> &str {
        "counting-wakes"
    }
    fn arm(&self, next: oneloop::backend::NextDispatch) {
        self.0.arm(next)
    }
    fn remote_waker(&self) -> Arc<dyn oneloop::backend::RemoteWake> {
        let inner = self.0.remote_waker();
        let count = self.1.clone();
        Arc::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
            inner.wake();
        })
    }
    fn turn(&self) -> std::io::Result<()> {
        self.0.turn()
    }
}

fn counting_loop() -> (Loop, Arc<AtomicUsize>) {
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    let lp = Loop::with_backend(move |driver| {
        Ok(CountingWakes(
            oneloop::native::NativeBackend::new(driver)?,
            w,
        ))
    })
    .unwrap();
    (lp, wakes)
}

/// Internal: counts the wakes a backend is sent (`defer_wakes`).
#[test]
fn deferred_wakes_reach_each_loop_once_when_the_outermost_scope_ends() {
    let (a, wakes_a) = counting_loop();
    let (b, wakes_b) = counting_loop();
    let (remote_a, remote_b) = (a.remote(), b.remote());
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = log.clone();
    let (wa, wb) = (wakes_a.clone(), wakes_b.clone());
    thread::spawn(move || {
        let outer = oneloop::defer_wakes();
        {
            let _inner = oneloop::defer_wakes();
            for i in 0..3 {
                let l = l.clone();
                remote_a
                    .call_soon_threadsafe(move || l.lock().unwrap().push(i))
                    .unwrap();
            }
            remote_b.stop().unwrap();
        }
        // The inner scope ended: nothing is sent until the outer one does.
        remote_a.stop().unwrap();
        assert_eq!(
            (wa.load(Ordering::SeqCst), wb.load(Ordering::SeqCst)),
            (0, 0),
            "a wake left while its scope was open"
        );
        drop(outer);
        assert_eq!(
            (wa.load(Ordering::SeqCst), wb.load(Ordering::SeqCst)),
            (1, 1),
            "each loop is woken exactly once at the end"
        );
    })
    .join()
    .unwrap();
    let dog_a = Watchdog::arm(&a, Duration::from_secs(10));
    a.run_forever().unwrap();
    assert!(!dog_a.fired());
    let dog_b = Watchdog::arm(&b, Duration::from_secs(10));
    b.run_forever().unwrap();
    assert!(!dog_b.fired());
    assert_eq!(
        *log.lock().unwrap(),
        [0, 1, 2],
        "posts are queued at once, in order"
    );
}

/// Internal: counts the wakes a backend is sent.
#[test]
fn without_a_scope_the_first_post_wakes_the_loop_at_once() {
    let (lp, wakes) = counting_loop();
    let remote = lp.remote();
    let w = wakes.clone();
    thread::spawn(move || {
        remote.call_soon_threadsafe(|| {}).unwrap();
        assert_eq!(w.load(Ordering::SeqCst), 1);
        remote.call_soon_threadsafe(|| {}).unwrap();
        assert_eq!(w.load(Ordering::SeqCst), 1, "wakes are coalesced");
    })
    .join()
    .unwrap();
    run_once(&lp);
}
