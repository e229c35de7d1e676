//! Cross-thread calls on the default loop: TH-01…TH-05, D8.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use oneloop::{ErrorKind, Loop};
use util::{Log, Watchdog, run_once};

#[test]
fn th01_a_threadsafe_call_wakes_an_idle_loop_and_runs_on_the_loop_thread() {
    let lp = Loop::new().unwrap();
    let loop_thread = thread::current().id();
    let remote = lp.remote();
    let ran_on = Arc::new(std::sync::Mutex::new(None));
    let r = ran_on.clone();
    let worker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        remote
            .call_soon_threadsafe(move || *r.lock().unwrap() = Some(thread::current().id()))
            .unwrap();
        remote.stop().unwrap();
    });
    let dog = Watchdog::arm(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    worker.join().unwrap();
    assert!(!dog.fired(), "the loop was not woken");
    assert_eq!(*ran_on.lock().unwrap(), Some(loop_thread));
}

#[test]
fn th02_a_threadsafe_call_from_a_timer_on_the_loop_thread_runs_promptly() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_later(Duration::from_millis(1), move || {
        let lp3 = lp2.clone();
        let id = std::thread::current().id();
        let remote = lp2.remote();
        remote
            .call_soon_threadsafe(move || {
                assert_eq!(std::thread::current().id(), id);
            })
            .unwrap();
        l.push("timer");
        lp3.remote().stop().unwrap();
    })
    .unwrap();
    let dog = Watchdog::arm(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(log.get(), ["timer"]);
}

#[test]
fn th03_d8_threadsafe_and_call_soon_share_one_fifo_on_the_loop_thread() {
    let lp = Loop::new().unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    for i in 0..6 {
        let o = order.clone();
        if i % 2 == 0 {
            lp.call_soon(move || o.lock().unwrap().push(i)).unwrap();
        } else {
            lp.call_soon_threadsafe(move || o.lock().unwrap().push(i))
                .unwrap();
        }
    }
    run_once(&lp);
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn th04_n_threads_times_m_posts_all_run_exactly_once() {
    const N: usize = 8;
    const M: usize = 2_000;
    let lp = Loop::new().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..N)
        .map(|_| {
            let (remote, count) = (lp.remote(), count.clone());
            thread::spawn(move || {
                for _ in 0..M {
                    let c = count.clone();
                    remote
                        .call_soon_threadsafe(move || {
                            c.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    let remote = lp.remote();
    let counter = count.clone();
    let waiter = thread::spawn(move || {
        for w in workers {
            w.join().unwrap();
        }
        // Posted after every worker's posts: runs after all of them (FIFO).
        remote.call_soon_threadsafe(|| ()).unwrap();
        remote.stop().unwrap();
        counter
    });
    let dog = Watchdog::arm(&lp, Duration::from_secs(30));
    lp.run_forever().unwrap();
    let _ = waiter.join().unwrap();
    assert!(!dog.fired());
    assert_eq!(count.load(Ordering::Relaxed), N * M);
}

#[test]
fn th05_threadsafe_calls_on_a_closed_loop_answer_closed() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    lp.close().unwrap();
    let r = thread::spawn(move || remote.call_soon_threadsafe(|| ()).unwrap_err().kind())
        .join()
        .unwrap();
    assert_eq!(r, ErrorKind::Closed);
    assert!(lp.remote().is_closed());
}

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
