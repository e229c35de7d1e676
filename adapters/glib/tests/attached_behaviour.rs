//! Attached mode: the loop inside a context someone else iterates (EM-01,
//! EM-02, EM-06, EM-10).

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{add_timeout, counter, iterate_until, post};
use glib::{MainContext, Priority};
use oneloop::ErrorKind;

const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn attached_loop_is_running_and_refuses_run() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    assert!(lp.is_attached());
    assert!(lp.is_running());
    assert_eq!(
        lp.run_forever().unwrap_err().kind(),
        ErrorKind::AlreadyRunning
    );
    let err = lp.run_until_complete(async {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    lp.close().unwrap();
    assert!(!lp.is_running());
}

#[test]
fn one_loop_per_context_until_closed() {
    let ctx = MainContext::new();
    let first = oneloop_glib::attach(&ctx).unwrap();
    assert!(oneloop_glib::attach(&ctx).is_err());
    first.close().unwrap();
    let second = oneloop_glib::attach(&ctx).unwrap();
    second.close().unwrap();
    drop(second);
    // Dropping without close also releases the context.
    let third = oneloop_glib::attach(&ctx).unwrap();
    drop(third);
    oneloop_glib::attach(&ctx).unwrap().close().unwrap();
}

#[test]
fn context_owned_by_another_thread_is_refused() {
    let ctx = MainContext::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let c2 = ctx.clone();
    let t = std::thread::spawn(move || {
        let _guard = c2.acquire().unwrap();
        tx.send(()).unwrap();
        done_rx.recv().unwrap();
    });
    rx.recv().unwrap();
    assert!(oneloop_glib::attach(&ctx).is_err());
    done_tx.send(()).unwrap();
    t.join().unwrap();
    oneloop_glib::attach(&ctx).unwrap().close().unwrap();
}

/// Pitfall 3 (asyncio-glib #1, #3): work created from a host-native
/// callback must run without any other event arriving.
#[test]
fn work_from_host_callbacks_wakes_the_loop() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    // Let the loop go idle in the host's poll first.
    ctx.iteration(false);
    let log = Rc::new(RefCell::new(Vec::new()));
    let fut = lp.create_future::<u32>();
    {
        let (lp, log, fut) = (lp.clone(), log.clone(), fut.clone());
        post(&ctx, Priority::DEFAULT_IDLE, move || {
            let l = log.clone();
            lp.call_soon(move || l.borrow_mut().push("call_soon"))
                .unwrap();
            let l = log.clone();
            lp.call_later(Duration::ZERO, move || l.borrow_mut().push("call_later(0)"))
                .unwrap();
            let l = log.clone();
            lp.spawn(async move { l.borrow_mut().push("task") })
                .unwrap();
            let l = log.clone();
            fut.add_done_callback(move |_| l.borrow_mut().push("future done"));
            fut.set_result(7).unwrap();
        });
    }
    assert!(
        iterate_until(&ctx, LIMIT, || log.borrow().len() == 4),
        "host-posted work did not run: {:?}",
        log.borrow()
    );
    assert_eq!(fut.result().unwrap(), 7);
    lp.close().unwrap();
}

/// A timer created from a host timeout callback wakes the host at its
/// deadline, not at the next unrelated event.
#[test]
fn timer_from_host_timeout_rearms_the_host() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let fired = counter();
    let (l, f) = (lp.clone(), fired.clone());
    add_timeout(&ctx, Duration::from_millis(1), move || {
        let f = f.clone();
        l.call_later(Duration::from_millis(20), move || f.set(f.get() + 1))
            .unwrap();
    });
    // No tick: iterate blocking; only the oneloop source can wake us.
    let start = std::time::Instant::now();
    while fired.get() == 0 && start.elapsed() < LIMIT {
        ctx.iteration(true);
    }
    assert_eq!(fired.get(), 1);
    lp.close().unwrap();
}

/// EM-06 is about loops that are not running; an attached loop runs until
/// closed, and after close iterating the context runs nothing.
#[test]
fn closed_loop_leaves_nothing_in_the_context() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let ran = counter();
    let r = ran.clone();
    lp.call_soon(move || r.set(1)).unwrap();
    let r = ran.clone();
    lp.call_later(Duration::from_millis(1), move || r.set(2))
        .unwrap();
    lp.close().unwrap();
    for _ in 0..10 {
        ctx.iteration(false);
    }
    assert_eq!(ran.get(), 0);
    assert!(!ctx.pending(), "the closed loop left a source ready");
}
