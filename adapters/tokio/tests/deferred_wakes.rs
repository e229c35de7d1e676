//! The owned turn (`turn.rs`): wakes that tokio defers (a task that yields
//! to it, or spends its coop budget) must not be lost when a turn ends. Each
//! test hung before the turn yielded to tokio once more before returning
//! (found by review).

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use util::{LIMIT, Watchdog};

/// A task body that yields to tokio 2 000 times, then answers 2 000.
async fn yield_to_tokio_2000_times() -> u32 {
    for _ in 0..2_000 {
        tokio::task::yield_now().await;
    }
    2_000
}

/// Owned: a oneloop task that yields to tokio (`tokio::task::yield_now`,
/// as tokio's coop budget also does when spent) is woken again, even when
/// the dispatch that polled it also consumed a remote wake and so ended the
/// turn. tokio defers such a wake to its next reactor poll, in a list that
/// belongs to the `block_on` call: the turn's `block_on` returns, and the
/// list is dropped with the task's waker in it.
#[test]
fn a_task_yielding_to_tokio_is_woken_across_turns_owned() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let dog = Watchdog::stop_loop(&lp, LIMIT);
    // Remote wakes, all the time: most dispatches end their turn.
    let done = Arc::new(AtomicBool::new(false));
    let spammer = {
        let (remote, done) = (lp.remote(), done.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if remote.call_soon_threadsafe(|| {}).is_err() {
                    break;
                }
                thread::yield_now();
            }
        })
    };
    let task = lp.spawn(yield_to_tokio_2000_times()).unwrap();
    let out = lp.run_until_complete(task);
    done.store(true, Ordering::Relaxed);
    spammer.join().unwrap();
    dog.assert_not_fired("a oneloop task awaiting tokio::task::yield_now");
    assert_eq!(out.unwrap().unwrap(), 2_000);
}

/// The control: the same task with no remote wakes (no turn ends while it
/// yields) completes.
#[test]
fn a_task_yielding_to_tokio_completes_without_remote_wakes_owned() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let dog = Watchdog::stop_loop(&lp, LIMIT);
    let task = lp.spawn(yield_to_tokio_2000_times()).unwrap();
    let out = lp.run_until_complete(task);
    dog.assert_not_fired("the control");
    assert_eq!(out.unwrap().unwrap(), 2_000);
}

/// Owned, deterministic: a oneloop task that yields to tokio in the
/// iteration that calls `stop()` resumes when the loop runs again (as an
/// asyncio task pending across `stop()` does). The turn ends on the halt,
/// its `block_on` returns, and tokio drops the deferred wake with it.
#[test]
fn a_task_yielding_to_tokio_as_the_loop_stops_resumes_at_the_next_run_owned() {
    resumes_after_a_stop(
        async {
            tokio::task::yield_now().await;
        },
        "a task that yielded to tokio as the loop stopped",
    );
}

/// The same with no explicit yield: a oneloop task that spends tokio's
/// coop budget (128 units; `consume_budget` stands for reads of a busy
/// tokio channel or socket) is made to yield by tokio, which defers its
/// wake the same way.
#[test]
fn a_task_that_spends_the_coop_budget_as_the_loop_stops_resumes_owned() {
    resumes_after_a_stop(
        async {
            for _ in 0..1_000 {
                tokio::task::consume_budget().await;
            }
        },
        "a task that spent tokio's budget as the loop stopped",
    );
}

/// Spawn `body` on an owned loop and run one iteration that also calls
/// `stop()`: the task's first step runs in it. The task must then complete
/// when the loop runs again.
fn resumes_after_a_stop(body: impl std::future::Future<Output = ()> + 'static, what: &str) {
    let lp = oneloop_tokio::new_loop().unwrap();
    let task = lp
        .spawn(async move {
            body.await;
            1
        })
        .unwrap();
    let lp2 = lp.clone();
    lp.call_soon(move || lp2.stop()).unwrap();
    lp.run_forever().unwrap();
    let dog = Watchdog::stop_loop(&lp, LIMIT);
    let out = lp.run_until_complete(task);
    dog.assert_not_fired(what);
    assert_eq!(out.unwrap().unwrap(), 1);
}
