//! Tasks and cancellation on the default loop: TK-01…TK-05, CN-01…CN-05.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, Loop};
use util::{Log, run_once};

#[test]
fn tk02_spawn_queues_the_first_step() {
    let lp = Loop::new().unwrap();
    let started = Rc::new(Cell::new(false));
    let s = started.clone();
    let t = lp.spawn(async move { s.set(true) }).unwrap();
    assert!(!started.get() && !t.done());
    run_once(&lp);
    assert!(started.get() && t.done());
}

#[test]
fn tk03_a_task_is_a_future_of_its_output_with_done_callbacks() {
    let lp = Loop::new().unwrap();
    let t = lp.spawn(async { "out" }).unwrap();
    let log = Log::new();
    let l = log.clone();
    t.add_done_callback(move |f| l.push(f.result().unwrap()));
    let failing = lp
        .spawn(async { Err::<(), _>(oneloop::Error::from_kind(ErrorKind::Io)) })
        .unwrap();
    // Awaiting a clone of the result future leaves the output in place for
    // the done-callbacks (awaiting the Task itself moves it out).
    assert_eq!(
        lp.run_until_complete(t.as_future().clone())
            .unwrap()
            .unwrap(),
        "out"
    );
    run_once(&lp);
    assert_eq!(log.get(), ["out"]);
    assert_eq!(t.result().unwrap(), "out");
    assert_eq!(
        lp.run_until_complete(t).unwrap().unwrap(),
        "out",
        "the Task moves the output out"
    );
    assert_eq!(
        lp.run_until_complete(failing)
            .unwrap()
            .unwrap()
            .unwrap_err()
            .kind(),
        ErrorKind::Io
    );
}

#[test]
fn tk04_task_steps_never_nest() {
    let lp = Loop::new().unwrap();
    let depth = Rc::new(Cell::new(0));
    let max = Rc::new(Cell::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (d, m) = (depth.clone(), max.clone());
        tasks.push(
            lp.spawn(async move {
                for _ in 0..5 {
                    d.set(d.get() + 1);
                    m.set(m.get().max(d.get()));
                    d.set(d.get() - 1);
                    oneloop::sleep(Duration::ZERO).await.unwrap();
                }
            })
            .unwrap(),
        );
    }
    lp.run_until_complete(futures::future::join_all(tasks))
        .unwrap();
    assert_eq!(max.get(), 1);
}

#[test]
fn tk05_current_task_and_all_tasks() {
    let lp = Loop::new().unwrap();
    let lp2 = lp.clone();
    assert!(lp.current_task().is_none());
    let t = lp
        .spawn(async move {
            let me = lp2.current_task().expect("inside a task");
            let all = lp2.all_tasks();
            (me.id(), all.iter().map(|t| t.id()).collect::<Vec<_>>())
        })
        .unwrap();
    let id = t.id();
    let other = Loop::new().unwrap();
    let _foreign = other.spawn(async {}).unwrap();
    let (me, all) = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(me, id);
    assert_eq!(all, [id], "only this loop's pending tasks");
    let in_callback = Rc::new(Cell::new(true));
    let (c, lp2) = (in_callback.clone(), lp.clone());
    lp.call_soon(move || c.set(lp2.current_task().is_some()))
        .unwrap();
    run_once(&lp);
    assert!(!in_callback.get());
    assert!(lp.all_tasks().is_empty());
}

#[test]
fn cn01_cancel_is_delivered_at_the_next_await_and_cancelled_only_when_the_task_ends() {
    let lp = Loop::new().unwrap();
    let t = lp
        .spawn(async {
            oneloop::sleep(Duration::from_secs(100)).await?;
            Ok::<_, oneloop::Error>("never")
        })
        .unwrap();
    run_once(&lp);
    assert!(t.cancel());
    assert!(
        !t.cancelled(),
        "cancelled() becomes true only when the coroutine ends"
    );
    let start = Instant::now();
    lp.run_until_complete(wait_done(&t)).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the 100 s sleep was not cut short"
    );
    assert!(t.cancelled());
    assert!(!t.cancel(), "cancel() on a done task returns false");
}

#[test]
fn cn01_a_task_that_cancels_itself_has_its_next_await_cancelled_at_once() {
    let lp = Loop::new().unwrap();
    let lp2 = lp.clone();
    let t = lp
        .spawn(async move {
            lp2.current_task().unwrap().cancel();
            let start = Instant::now();
            let r = oneloop::sleep(Duration::from_secs(100)).await;
            (
                r.map_err(|e| e.kind()),
                start.elapsed() < Duration::from_secs(1),
            )
        })
        .unwrap();
    let (r, prompt) = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(r, Err(ErrorKind::Cancelled));
    assert!(prompt);
}

#[test]
fn cn02_cancelling_a_task_cancels_the_future_it_awaits() {
    let lp = Loop::new().unwrap();
    let inner = lp.create_future::<u8>();
    let i = inner.clone();
    let t = lp.spawn(i).unwrap();
    run_once(&lp);
    t.cancel();
    assert!(inner.cancelled());
    let r = lp.run_until_complete(t).unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Cancelled);
}

#[test]
fn cn03_a_coroutine_may_catch_cancelled_and_carry_on() {
    let lp = Loop::new().unwrap();
    let t = lp
        .spawn(async {
            let first = oneloop::sleep(Duration::from_secs(100)).await;
            assert_eq!(first.unwrap_err().kind(), ErrorKind::Cancelled);
            // Carry on after catching: further awaits work normally.
            oneloop::sleep(Duration::from_millis(1)).await.unwrap();
            "recovered"
        })
        .unwrap();
    run_once(&lp);
    t.cancel();
    lp.run_until_complete(wait_done(&t)).unwrap();
    assert!(!t.cancelled());
    assert_eq!(t.result().unwrap(), "recovered");
}

async fn wait_done<T: 'static>(t: &oneloop::Task<T>) {
    while !t.done() {
        oneloop::sleep(Duration::ZERO).await.unwrap();
    }
}

#[test]
fn cn04_cancelling_the_awaited_future_cancels_the_task_unless_it_catches() {
    let lp = Loop::new().unwrap();
    let inner = lp.create_future::<u8>();
    let i = inner.clone();
    let t = lp.spawn(i).unwrap();
    run_once(&lp);
    inner.cancel();
    let r = lp.run_until_complete(t).unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Cancelled);

    let both = lp.create_future::<u8>();
    let b = both.clone();
    let t = lp.spawn(b).unwrap();
    run_once(&lp);
    t.cancel();
    both.cancel();
    assert_eq!(
        lp.run_until_complete(t).unwrap().unwrap_err().kind(),
        ErrorKind::Cancelled
    );
}

#[test]
fn cn04_a_task_suspended_on_a_foreign_future_is_dropped_at_its_next_step() {
    let lp = Loop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let flag = Flag(dropped.clone());
    let t = lp
        .spawn(async move {
            let _flag = flag;
            futures::future::pending::<()>().await;
        })
        .unwrap();
    run_once(&lp);
    assert!(t.cancel());
    run_once(&lp);
    assert!(dropped.get(), "the future was dropped");
    assert!(t.cancelled());
}

#[test]
fn cn05_timeout_drops_the_inner_future_before_reporting() {
    let lp = Loop::new().unwrap();
    let cleaned = Rc::new(Cell::new(false));
    struct Cleanup(Rc<Cell<bool>>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let c = Cleanup(cleaned.clone());
    let seen = cleaned.clone();
    let r = lp
        .run_until_complete(async move {
            let r = oneloop::timeout(Duration::from_millis(5), async move {
                let _c = c;
                oneloop::sleep(Duration::from_secs(100)).await
            })
            .await;
            (r.map(|_| ()).map_err(|e| e.kind()), seen.get())
        })
        .unwrap();
    assert_eq!(r, (Err(ErrorKind::TimedOut), true));
}

#[test]
fn a_task_cancelled_before_it_starts_never_runs() {
    let lp = Loop::new().unwrap();
    let t = lp.spawn(async { panic!("must not start") }).unwrap();
    assert!(t.cancel());
    run_once(&lp);
    assert!(t.cancelled());
}

#[test]
fn cn01_a_cancel_that_arrives_after_the_awaited_result_is_still_delivered() {
    let lp = Loop::new().unwrap();
    let inner = lp.create_future::<u8>();
    let i = inner.clone();
    let t = lp
        .spawn(async move {
            let first = i.await;
            (
                first.map_err(|e| e.kind()),
                oneloop::sleep(Duration::from_millis(1)).await.is_ok(),
            )
        })
        .unwrap();
    run_once(&lp);
    // The result arrives, then the task is cancelled before its next step.
    inner.set_result(1).unwrap();
    t.cancel();
    lp.run_until_complete(wait_done(&t)).unwrap();
    let (first, carried_on) = t.result().unwrap();
    assert_eq!(
        first,
        Err(ErrorKind::Cancelled),
        "the cancellation was lost"
    );
    assert!(
        carried_on,
        "a caught cancellation lets the coroutine carry on"
    );
}
