//! `call_soon_threadsafe` on tokio: one eventfd write per empty → non-empty
//! transition of the inbox, wherever tokio parks, in both modes.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use oneloop::Loop;
use oneloop_tokio::TokioBackend;
use util::{Watchdog, in_local_set};

/// 1000 posts while the loop thread is busy cost one wake.
#[test]
fn threadsafe_wakes_are_coalesced() {
    let backend = TokioBackend::new().unwrap();
    let stats = backend.stats();
    let lp = Loop::with_backend(backend).unwrap();
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let ran = Arc::new(AtomicUsize::new(0));
    let wakes_before = Arc::new(AtomicUsize::new(usize::MAX));
    {
        let (remote, ran, stats2, before) = (
            lp.remote(),
            ran.clone(),
            stats.clone(),
            wakes_before.clone(),
        );
        lp.call_soon(move || {
            before.store(stats2.remote_wakes() as usize, Ordering::SeqCst);
            // The loop thread is busy here while another thread posts.
            thread::spawn(move || {
                for _ in 0..1000 {
                    let ran = ran.clone();
                    remote
                        .call_soon_threadsafe(move || {
                            ran.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                }
                remote.stop().unwrap();
            })
            .join()
            .unwrap();
        })
        .unwrap();
    }
    lp.run_forever().unwrap();
    dog.assert_not_fired("coalesced wakes");
    assert_eq!(ran.load(Ordering::Relaxed), 1000);
    let before = wakes_before.load(Ordering::SeqCst) as u64;
    assert_eq!(
        stats.remote_wakes() - before,
        1,
        "1001 posts to a non-draining loop must cost exactly one wake"
    );
}

/// N threads × M posts: exactly N·M callbacks run, on the loop thread,
/// with the loop attached to a `LocalSet` that parks in tokio's reactor.
#[test]
fn many_threads_post_to_an_attached_loop() {
    const N: usize = 4;
    const M: usize = 500;
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        let me = thread::current().id();
        let ran = Arc::new(AtomicUsize::new(0));
        let done = lp.create_future::<()>();
        // Resolved from the loop thread once every post ran.
        fn check(lp: Loop, ran: Arc<AtomicUsize>, done: oneloop::LoopFuture<()>) {
            if ran.load(Ordering::SeqCst) == N * M {
                let _ = done.set_result(());
            } else {
                let lp2 = lp.clone();
                let _ = lp.call_later(std::time::Duration::from_millis(1), move || {
                    check(lp2, ran, done)
                });
            }
        }
        check(lp.clone(), ran.clone(), done.clone());
        let posters: Vec<_> = (0..N)
            .map(|_| {
                let (remote, ran) = (lp.remote(), ran.clone());
                thread::spawn(move || {
                    for _ in 0..M {
                        let ran = ran.clone();
                        remote
                            .call_soon_threadsafe(move || {
                                assert_eq!(thread::current().id(), me);
                                ran.fetch_add(1, Ordering::SeqCst);
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        done.await.unwrap();
        for p in posters {
            p.join().unwrap();
        }
        assert_eq!(ran.load(Ordering::SeqCst), N * M);
        lp.close().unwrap();
    });
}
