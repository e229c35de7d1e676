//! Regression tests for the reliability issue's cancellation bugs: whether a
//! task's own code caught its cancellation must not depend on clones of the
//! error (CN-03), and a cancel request still pending when the body returns
//! ends the task cancelled (asyncio's `test_cancel_at_end`).
//!
//! Kept in core as regressions of those bugs (the suite's CN checks hold
//! the guarantees).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use oneloop::{Error, ErrorKind, Loop};

/// Run `lp` until `task` is done, under a deadline.
fn finish<T: 'static>(lp: &Loop, task: &oneloop::Task<T>) {
    let task_ref = task.as_ref();
    lp.run_until_complete(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !task_ref.done() {
            assert!(
                std::time::Instant::now() < deadline,
                "the task never finished"
            );
            oneloop::sleep(Duration::from_millis(1)).await?;
        }
        Ok::<_, Error>(())
    })
    .unwrap()
    .unwrap();
}

/// Cancel `task` from a callback, once it has started.
fn cancel_soon<T: 'static>(lp: &Loop, task: &oneloop::Task<T>) {
    let t = task.as_ref();
    lp.call_soon(move || assert!(t.cancel())).unwrap();
}

/// A body that sleeps long and propagates a cancellation with `?`.
async fn sleeper() -> Result<u32, Error> {
    oneloop::sleep(Duration::from_secs(100)).await?;
    Ok(1)
}

#[test]
fn catch_clone_store_and_return_a_value_ends_with_the_value() {
    let lp = Loop::new().unwrap();
    let log: Rc<RefCell<Vec<Error>>> = Rc::default();
    let task = lp
        .spawn({
            let log = log.clone();
            async move {
                if let Err(e) = oneloop::sleep(Duration::from_secs(100)).await {
                    log.borrow_mut().push(e.clone()); // the clone outlives the task
                }
                5
            }
        })
        .unwrap();
    cancel_soon(&lp, &task);
    finish(&lp, &task);
    assert!(!task.cancelled(), "CN-03: the task caught its cancellation");
    assert_eq!(task.result().unwrap(), 5);
    assert_eq!(log.borrow()[0].kind(), ErrorKind::Cancelled);
}

#[test]
fn catch_and_reraise_ends_cancelled() {
    let lp = Loop::new().unwrap();
    let task = lp
        .spawn(async {
            match oneloop::sleep(Duration::from_secs(100)).await {
                Err(e) => {
                    let _seen = e.clone();
                    Err::<u32, _>(e)
                }
                Ok(()) => Ok(1),
            }
        })
        .unwrap();
    cancel_soon(&lp, &task);
    finish(&lp, &task);
    assert!(
        task.cancelled(),
        "CN-04: the cancellation escaped with the error"
    );
}

#[test]
fn propagating_with_the_question_mark_ends_cancelled() {
    let lp = Loop::new().unwrap();
    let task = lp.spawn(sleeper()).unwrap();
    cancel_soon(&lp, &task);
    finish(&lp, &task);
    assert!(task.cancelled());
}

#[test]
fn cancel_twice_is_one_clean_cancellation() {
    let lp = Loop::new().unwrap();
    let task = lp.spawn(sleeper()).unwrap();
    lp.call_soon({
        let t = task.as_ref();
        move || {
            assert!(t.cancel());
            assert!(t.cancel(), "still pending: the second request is taken too");
        }
    })
    .unwrap();
    finish(&lp, &task);
    assert!(task.cancelled());
    assert!(!task.cancel(), "a done task refuses cancel()");
}

#[test]
fn a_task_that_catches_twice_and_returns_ends_with_its_value() {
    let lp = Loop::new().unwrap();
    let task = lp
        .spawn(async {
            let mut caught = 0;
            for _ in 0..2 {
                if oneloop::sleep(Duration::from_secs(100)).await.is_err() {
                    caught += 1;
                }
            }
            caught
        })
        .unwrap();
    let t = task.as_ref();
    lp.call_soon({
        let t = t.clone();
        move || assert!(t.cancel())
    })
    .unwrap();
    lp.call_later(Duration::from_millis(5), move || assert!(t.cancel()))
        .unwrap();
    finish(&lp, &task);
    assert!(!task.cancelled());
    assert_eq!(task.result().unwrap(), 2);
}

#[test]
fn cancelled_while_awaiting_a_cancelled_inner_task() {
    let lp = Loop::new().unwrap();
    let inner = lp.spawn(sleeper()).unwrap();
    let inner_ref = inner.as_ref();
    let outer = lp.spawn(async move { inner.await? }).unwrap();
    lp.call_soon({
        let outer = outer.as_ref();
        move || {
            assert!(inner_ref.cancel());
            assert!(outer.cancel());
        }
    })
    .unwrap();
    finish(&lp, &outer);
    assert!(
        outer.cancelled(),
        "CN-04: both cancelled, one clean cancellation"
    );
}

#[test]
fn a_task_that_cancels_itself_then_returns_ends_cancelled() {
    let lp = Loop::new().unwrap();
    let task = lp
        .spawn(async {
            let lp = oneloop::get_running_loop().unwrap();
            assert!(lp.current_task().unwrap().cancel());
            7
        })
        .unwrap();
    finish(&lp, &task);
    assert!(
        task.cancelled(),
        "the request was pending when the body returned"
    );
}
