//! Threads: `call_soon_threadsafe` wakes a context idle in its poll (TH-01,
//! pitfall 10), and a loop on a non-main thread uses its own context.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::counter;
use glib::MainContext;
use oneloop_conformance::support::Watchdog;

const LIMIT: Duration = Duration::from_secs(5);

/// An attached context blocked in `iteration(true)` with nothing else to
/// do is woken by another thread, with no tick source to rescue it.
#[test]
fn threadsafe_call_wakes_an_idle_attached_context() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let ran = counter();
    let remote = lp.remote();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let tid = oneloop_conformance::support::current_tid();
    let t = std::thread::spawn(move || {
        // Once this thread is blocked in `iteration(true)`: nothing else
        // can wake it but the remote call.
        oneloop_conformance::support::wait_until_asleep(tid, Instant::now() + LIMIT);
        remote
            .call_soon_threadsafe(move || {
                d.store(1, Ordering::SeqCst);
            })
            .unwrap();
    });
    // Watchdog: wakes the context (without running anything) if the remote
    // wake is lost, so the test fails instead of hanging.
    let wd_ctx = ctx.clone();
    let _wd = Watchdog::with_action(LIMIT, move || wd_ctx.wakeup());
    let start = Instant::now();
    while done.load(Ordering::SeqCst) == 0 && start.elapsed() < LIMIT {
        ctx.iteration(true);
    }
    assert!(start.elapsed() < LIMIT, "the remote wake was lost");
    assert_eq!(done.load(Ordering::SeqCst), 1);
    t.join().unwrap();
    drop(ran);
    lp.close().unwrap();
}

/// Owned loops on worker threads, each with its own fresh context, run
/// concurrently with an attached loop on this thread; many threads posting
/// many callbacks lose none (TH-04).
#[test]
fn loops_on_worker_threads_with_their_own_context() {
    let total = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let total = total.clone();
            std::thread::spawn(move || {
                let lp = oneloop_glib::new_loop().unwrap();
                let _tw = common::tripwire(&lp);
                let remote = lp.remote();
                let posters: Vec<_> = (0..4)
                    .map(|_| {
                        let (remote, total) = (remote.clone(), total.clone());
                        std::thread::spawn(move || {
                            for _ in 0..500 {
                                let t = total.clone();
                                remote
                                    .call_soon_threadsafe(move || {
                                        t.fetch_add(1, Ordering::SeqCst);
                                    })
                                    .unwrap();
                            }
                        })
                    })
                    .collect();
                let _wd = Watchdog::stop_remote(remote.clone(), LIMIT);
                let lp2 = lp.clone();
                let task = lp
                    .spawn(async move {
                        for p in posters {
                            // Join off the loop thread: never block the loop.
                            lp2.run_in_executor(move || p.join().unwrap())
                                .unwrap()
                                .await?;
                        }
                        Ok::<_, oneloop::Error>(())
                    })
                    .unwrap();
                lp.run_until_complete(task).unwrap().unwrap().unwrap();
                // Callbacks posted before the joins returned are all queued:
                // one more run drains them.
                let l = lp.clone();
                lp.call_soon(move || l.stop()).unwrap();
                lp.run_forever().unwrap();
                lp.close().unwrap();
            })
        })
        .collect();
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(total.load(Ordering::SeqCst), 2 * 4 * 500);
    lp.close().unwrap();
}

/// The GTK pattern on a worker thread: the thread's own context, pushed as
/// its thread-default, run by a `MainLoop`; oneloop attached to it quits
/// that `MainLoop` from a timer. The main thread's default context is never
/// touched.
#[test]
fn attached_loop_on_a_worker_thread_with_its_own_main_loop() {
    let t = std::thread::spawn(|| {
        let ctx = MainContext::new();
        ctx.with_thread_default(|| {
            let lp = oneloop_glib::attach(&ctx).unwrap();
            let _tw = common::tripwire(&lp);
            let ml = glib::MainLoop::new(Some(&ctx), false);
            let ticks = counter();
            let (m, tk) = (ml.clone(), ticks.clone());
            let task = lp
                .spawn(async move {
                    for _ in 0..3 {
                        oneloop::sleep(Duration::from_millis(2)).await?;
                        glib::timeout_future(Duration::from_millis(2)).await;
                        tk.set(tk.get() + 1);
                    }
                    m.quit();
                    Ok::<_, oneloop::Error>(())
                })
                .unwrap();
            // Watchdog: quits the MainLoop if a wake-up is lost.
            let remote_ctx = ctx.clone();
            let wd = glib::timeout_source_new(LIMIT, None, glib::Priority::DEFAULT, {
                let ml = glib::thread_guard::ThreadGuard::new(ml.clone());
                move || {
                    ml.get_ref().quit();
                    glib::ControlFlow::Break
                }
            });
            wd.attach(Some(&remote_ctx));
            ml.run();
            wd.destroy();
            assert_eq!(ticks.get(), 3);
            assert!(task.done());
            lp.close().unwrap();
        })
        .unwrap();
    });
    t.join().unwrap();
    assert!(!MainContext::default().is_owner());
}

/// A loop attached on a worker thread to a context that nobody owned yet,
/// which another thread then iterates (a GTK app whose main thread starts
/// `Application::run` after a worker attached to the default context): its
/// callbacks, which need not be `Send`, must never run on that other
/// thread. Before the fix the source ran them there.
#[test]
fn a_context_iterated_by_another_thread_never_runs_the_loops_callbacks() {
    use std::sync::{Mutex, mpsc};
    use std::thread::{self, ThreadId};

    let ctx = MainContext::new();
    let ran_on: Arc<Mutex<Vec<ThreadId>>> = Arc::default();
    let (attached_tx, attached_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let worker = {
        let (ctx, ran_on) = (ctx.clone(), ran_on.clone());
        thread::spawn(move || {
            let lp = oneloop_glib::attach(&ctx).unwrap();
            let r = ran_on.clone();
            lp.call_soon(move || r.lock().unwrap().push(thread::current().id()))
                .unwrap();
            attached_tx.send(()).unwrap();
            // The loop stays open while the other thread iterates.
            done_rx.recv().unwrap();
            lp.close().unwrap();
        })
    };
    attached_rx.recv().unwrap();
    for _ in 0..10 {
        ctx.iteration(false);
    }
    done_tx.send(()).unwrap();
    worker.join().unwrap();
    assert!(
        !ran_on.lock().unwrap().contains(&thread::current().id()),
        "a oneloop callback ran on a thread that is not its loop's"
    );
}

/// A `call_soon_threadsafe` made while an owned loop is not running, whose
/// wake a host's iteration of the context consumed meanwhile (EM-06: that
/// iteration runs nothing), still runs as soon as the next run starts: the
/// wake is not lost with it.
#[test]
fn a_threadsafe_call_between_runs_survives_a_host_iteration() {
    use oneloop::Loop;
    use oneloop_glib::GlibBackend;

    let ctx = MainContext::new();
    let lp = Loop::with_backend(GlibBackend::owned(&ctx)).unwrap();
    let remote = lp.remote();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    std::thread::spawn(move || {
        remote
            .call_soon_threadsafe(move || {
                r.store(1, Ordering::SeqCst);
                // The only thing that ends the run but the rescue below.
                oneloop::get_running_loop().unwrap().stop();
            })
            .unwrap();
    })
    .join()
    .unwrap();
    // The host's own pending-events flush, between runs.
    let mut flushed = 0;
    while ctx.pending() && flushed < 100 {
        ctx.iteration(false);
        flushed += 1;
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "host iteration ran a callback"
    );
    // Nothing else wakes the run: a rescue timer ends it if the wake was
    // lost.
    let rescued = Arc::new(AtomicUsize::new(0));
    let (rs, lp2) = (rescued.clone(), lp.clone());
    let rescue = lp
        .call_later(LIMIT, move || {
            rs.store(1, Ordering::SeqCst);
            lp2.stop();
        })
        .unwrap();
    lp.run_forever().unwrap();
    rescue.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(
        rescued.load(Ordering::SeqCst),
        0,
        "the threadsafe call waited for the rescue timer: its wake was lost"
    );
    lp.close().unwrap();
}
