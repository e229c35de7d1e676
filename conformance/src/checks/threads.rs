//! `TH`: threads — `call_soon_threadsafe` wakes the loop, keeps FIFO order,
//! loses nothing, and answers `Closed` after close (PEP 3156 §Thread
//! interaction).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oneloop::ErrorKind;

use super::{ASLEEP_UNKNOWN, Signal, wait_for_loop_asleep};
use crate::{Env, Log};

/// TH-01 (MUST): `call_soon_threadsafe` from another thread wakes a loop
/// blocked in its poll with nothing else pending, and the callback runs on
/// the loop thread; a remote `stop()` (`call_soon_threadsafe(stop)`) ends
/// `run_forever`.
pub fn threadsafe_call_wakes_idle_loop(env: &Env) {
    let lp = env.lp();
    let ran_on = Signal::new();
    let remote = lp.remote();
    let tid = crate::support::current_tid();
    // The poster waits until the loop's thread is blocked in its poll.
    let poster = std::thread::spawn({
        let ran_on = ran_on.clone();
        move || {
            let known = wait_for_loop_asleep(tid);
            remote
                .call_soon_threadsafe(move || ran_on.set(std::thread::current().id()))
                .expect("call_soon_threadsafe from another thread");
            known
        }
    });
    // The awaited signal is set by the threadsafe callback itself, on the
    // loop thread: only a real wake-up of the loop completes this run.
    let id = env.run_until(ran_on);
    if !poster.join().unwrap() {
        env.skip_part(ASLEEP_UNKNOWN);
    }
    assert_eq!(
        id,
        std::thread::current().id(),
        "the callback must run on the loop thread"
    );

    if !env.is_attached() {
        let remote = lp.remote();
        let stopper = std::thread::spawn(move || {
            wait_for_loop_asleep(tid);
            remote.stop().expect("a remote stop()");
        });
        env.run_forever().expect("run_forever");
        stopper.join().unwrap();
    }
}

/// TH-02 (MUST): `call_soon_threadsafe` from the loop thread, even from a
/// timer callback after the iteration's ready queue was drained, runs
/// promptly: the wake-up is not skipped because the caller is on the loop
/// thread.
pub fn threadsafe_from_loop_thread_runs_promptly(env: &Env) {
    let lp = env.lp();
    let done: Signal<Duration> = Signal::new();
    let remote_done: Signal<Duration> = Signal::new();
    lp.call_later(Duration::from_millis(5), {
        let lp = lp.clone();
        let (done, remote_done) = (done.clone(), remote_done.clone());
        move || {
            let start = Instant::now();
            lp.call_soon_threadsafe(move || done.set(start.elapsed()))
                .unwrap();
            lp.remote()
                .call_soon_threadsafe(move || remote_done.set(start.elapsed()))
                .unwrap();
        }
    })
    .unwrap();
    let took = env.run_until(async { (done.await, remote_done.await) });
    let bound = Duration::from_secs(1);
    assert!(
        took.0 < bound && took.1 < bound,
        "threadsafe calls from the loop thread took {took:?} to run"
    );
}

/// TH-03 (SHOULD): ordering between `call_soon_threadsafe` and `call_soon`
/// from the loop thread is FIFO: one queue (D8), whether they are queued
/// from outside the loop's callbacks (before a run) or from inside one.
pub fn threadsafe_and_call_soon_share_one_fifo(env: &Env) {
    let lp = env.lp();
    let before = Log::new();
    for i in 0..3 {
        let l = before.clone();
        lp.call_soon(move || l.push(format!("soon {i}"))).unwrap();
        let l = before.clone();
        lp.call_soon_threadsafe(move || l.push(format!("threadsafe {i}")))
            .unwrap();
    }
    env.run_until_true(|| before.len() == 6);
    let want: Vec<String> = (0..3)
        .flat_map(|i| [format!("soon {i}"), format!("threadsafe {i}")])
        .collect();
    assert_eq!(
        before.get(),
        want,
        "queued on the loop thread outside a callback: call_soon and call_soon_threadsafe must share one FIFO"
    );

    let log = Log::new();
    lp.call_soon({
        let (lp, log) = (lp.clone(), log.clone());
        move || {
            for i in 0..4 {
                let l = log.clone();
                lp.call_soon(move || l.push(format!("soon {i}"))).unwrap();
                let l = log.clone();
                lp.call_soon_threadsafe(move || l.push(format!("threadsafe {i}")))
                    .unwrap();
            }
        }
    })
    .unwrap();
    env.run_until_true(|| log.len() == 8);
    let want: Vec<String> = (0..4)
        .flat_map(|i| [format!("soon {i}"), format!("threadsafe {i}")])
        .collect();
    assert_eq!(
        log.get(),
        want,
        "call_soon and call_soon_threadsafe must share one FIFO"
    );
}

/// TH-04 (SHOULD): N threads each posting M threadsafe callbacks: exactly
/// N·M callbacks run, with no crash and no loss.
pub fn many_threads_lose_nothing(env: &Env) {
    const THREADS: usize = 8;
    const EACH: usize = 1000;
    let lp = env.lp();
    let count = Arc::new(AtomicUsize::new(0));
    let all = Signal::new();
    let posters: Vec<_> = (0..THREADS)
        .map(|_| {
            let remote = lp.remote();
            let (count, all) = (count.clone(), all.clone());
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    let (count, all) = (count.clone(), all.clone());
                    remote
                        .call_soon_threadsafe(move || {
                            if count.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * EACH {
                                all.set(());
                            }
                        })
                        .expect("call_soon_threadsafe");
                }
            })
        })
        .collect();
    env.run_until(all);
    for p in posters {
        p.join().unwrap();
    }
    env.run_briefly();
    assert_eq!(
        count.load(Ordering::SeqCst),
        THREADS * EACH,
        "threadsafe callbacks lost or repeated"
    );
}

/// TH-05 (MUST): `call_soon_threadsafe` on a closed loop returns `Closed`
/// (no panic): this happens routinely during shutdown.
pub fn threadsafe_on_closed_loop_is_closed(env: &Env) {
    let lp = env.lp();
    let ran = Arc::new(AtomicUsize::new(0));
    let remote = lp.remote();
    {
        let ran = ran.clone();
        lp.call_soon_threadsafe(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    lp.close().expect("close");
    let kind = |r: oneloop::Result<()>| r.err().map(|e| e.kind());
    assert_eq!(
        kind(lp.call_soon_threadsafe(|| {})),
        Some(ErrorKind::Closed),
        "on the loop thread"
    );
    let from_thread = std::thread::spawn(move || {
        (
            kind(remote.call_soon_threadsafe(|| {})),
            kind(remote.stop()),
            remote.is_closed(),
        )
    })
    .join()
    .expect("call_soon_threadsafe on a closed loop panicked");
    assert_eq!(
        from_thread,
        (Some(ErrorKind::Closed), Some(ErrorKind::Closed), true),
        "from another thread: call_soon_threadsafe, stop, is_closed"
    );
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a threadsafe callback ran after close"
    );
}
