//! `CN`: cancellation — delivered at the next suspension point, propagated
//! to and from awaited futures, catchable (PEP 3156 §Tasks, `Task.cancel`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{Error, ErrorKind};

use crate::Env;

/// CN-01 (MUST): `task.cancel()` on a pending task returns true; `Cancelled`
/// is delivered at the coroutine's next suspension point, not at once, and
/// `cancelled()` becomes true only when the coroutine ends; `cancel()` on a
/// done task returns false; a task that cancels itself has its next await
/// cancelled at once.
pub fn cancel_is_delivered_at_next_suspension(env: &Env) {
    let lp = env.lp();
    let task = lp
        .spawn(async {
            oneloop::sleep(Duration::from_secs(100)).await?;
            Ok::<_, Error>(())
        })
        .unwrap();
    env.run_briefly();
    assert!(task.cancel(), "cancel() on a pending task must return true");
    assert!(
        !task.cancelled(),
        "cancelled() must wait until the coroutine ends"
    );
    env.run_until_true(|| task.done());
    assert!(task.cancelled(), "the task must end cancelled");
    assert!(!task.cancel(), "cancel() on a done task must return false");

    let after_cancel = Rc::new(Cell::new(false));
    let start = Instant::now();
    let selfish = lp
        .spawn({
            let (lp, after_cancel) = (lp.clone(), after_cancel.clone());
            async move {
                let me = lp.current_task().expect("current_task");
                assert!(me.cancel());
                // Still running: cancellation waits for the next await.
                after_cancel.set(true);
                oneloop::sleep(Duration::from_secs(100)).await?;
                Ok::<_, Error>(())
            }
        })
        .unwrap();
    env.run_until_true(|| selfish.done());
    assert!(
        after_cancel.get(),
        "the code between cancel() and the next await must still run"
    );
    assert!(
        selfish.cancelled(),
        "a self-cancelled task must end cancelled"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the self-cancelled sleep was not cancelled at once"
    );

    // Cancelled before its first step: the body never starts.
    let started = Rc::new(Cell::new(false));
    let unstarted = lp
        .spawn({
            let started = started.clone();
            async move { started.set(true) }
        })
        .unwrap();
    assert!(unstarted.cancel(), "cancel() before the first step");
    env.run_until_true(|| unstarted.done());
    assert!(
        unstarted.cancelled() && !started.get(),
        "a task cancelled before its first step ran its body"
    );

    // The awaited result arrives, then the task is cancelled before its
    // next step: the cancellation is still delivered at that await, and a
    // coroutine that catches it carries on.
    let inner = lp.create_future::<u32>();
    let late = lp
        .spawn({
            let inner = inner.clone();
            async move {
                let first = inner.await.map_err(|e| e.kind());
                let then = oneloop::sleep(Duration::from_millis(1)).await.is_ok();
                (first, then)
            }
        })
        .unwrap();
    env.run_briefly();
    inner.set_result(1).unwrap();
    assert!(late.cancel());
    env.run_until_true(|| late.done());
    assert_eq!(
        late.result().map_err(|e| e.kind()),
        Ok((Err(ErrorKind::Cancelled), true)),
        "a cancel() that came after the awaited result was lost, or the coroutine could not carry on"
    );

    // Suspended on a future that is not oneloop's (it can deliver no
    // Cancelled): the task is dropped at its next step, and ends cancelled.
    struct Dropped(Rc<Cell<bool>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let foreign = lp
        .spawn({
            let guard = Dropped(dropped.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            }
        })
        .unwrap();
    env.run_briefly();
    assert!(
        foreign.cancel(),
        "cancel() on a task awaiting a foreign future"
    );
    env.run_until_true(|| foreign.done());
    assert!(
        foreign.cancelled() && dropped.get(),
        "a task suspended on a foreign future was not dropped and cancelled"
    );
}

/// CN-02 (MUST): cancelling a task that awaits a future cancels that future.
pub fn cancel_cancels_awaited_future(env: &Env) {
    let lp = env.lp();
    let inner = lp.create_future::<u32>();
    let task = lp.spawn(inner.clone()).unwrap();
    env.run_briefly();
    assert!(task.cancel());
    assert!(
        inner.cancelled(),
        "task.cancel() must cancel the future the task awaits at once, as asyncio's does"
    );
    env.run_until_true(|| task.done());
    assert!(task.cancelled());
}

/// CN-03 (MUST): a coroutine may catch `Cancelled` and carry on (later
/// awaits work) and return a value; the task then ends normally and
/// `cancelled()` is false.
pub fn task_may_catch_cancellation(env: &Env) {
    let lp = env.lp();
    let inner = lp.create_future::<u32>();
    let task = lp
        .spawn({
            let inner = inner.clone();
            async move {
                match inner.await {
                    // Caught: later awaits work as usual.
                    Err(e) if e.kind() == ErrorKind::Cancelled => {
                        match oneloop::sleep(Duration::from_millis(1)).await {
                            Ok(()) => 7u32,
                            Err(_) => 1,
                        }
                    }
                    _ => 0,
                }
            }
        })
        .unwrap();
    env.run_briefly();
    assert!(task.cancel());
    env.run_until_true(|| task.done());
    assert!(
        !task.cancelled(),
        "a task that caught Cancelled must end normally"
    );
    assert_eq!(task.result().map_err(|e| e.kind()), Ok(7));
}

/// CN-04 (MUST): cancelling the inner future a task awaits cancels the
/// task; cancelling both the task and the inner future yields one clean
/// cancellation.
pub fn cancelling_awaited_future_cancels_task(env: &Env) {
    let lp = env.lp();
    for both in [false, true] {
        let inner = lp.create_future::<u32>();
        let task = lp.spawn(inner.clone()).unwrap();
        env.run_briefly();
        if both {
            assert!(task.cancel());
        }
        inner.cancel();
        env.run_until_true(|| task.done());
        assert!(
            task.cancelled(),
            "the task must end cancelled (task cancelled too: {both})"
        );
        assert_eq!(
            task.result().err().map(|e| e.kind()),
            Some(ErrorKind::Cancelled)
        );
    }
}

/// CN-05 (SHOULD): a timeout cancels the inner work and waits for its
/// cleanup to finish before reporting the timeout.
pub fn timeout_cleans_up_before_reporting(env: &Env) {
    struct Cleanup(Rc<Cell<bool>>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let cleaned = Rc::new(Cell::new(false));
    let (r, cleaned_at_report) = env.run_until({
        let cleaned = cleaned.clone();
        async move {
            let r = oneloop::timeout(Duration::from_millis(10), {
                let cleaned = cleaned.clone();
                async move {
                    let _cleanup = Cleanup(cleaned);
                    oneloop::sleep(Duration::from_secs(100)).await
                }
            })
            .await;
            (r.map(|_| ()).map_err(|e| e.kind()), cleaned.get())
        }
    });
    assert_eq!(r, Err(ErrorKind::TimedOut));
    assert!(
        cleaned_at_report,
        "the inner work's cleanup must finish before the timeout is reported"
    );
}
