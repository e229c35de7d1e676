//! Timers on GLib: never early despite millisecond poll timeouts (D7,
//! TM-03), far deadlines neither break nor spin (TM-07), sub-millisecond
//! sleeps do not busy-spin (TM-08).

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::iterate_until;
use glib::MainContext;
use oneloop_conformance::support::Watchdog;

const LIMIT: Duration = Duration::from_secs(5);

/// Fractional-millisecond delays (the 1.9 ms that glib-rs truncates to
/// 1 ms) fire at or after their deadline, by the loop's clock and by
/// `Instant`.
#[test]
fn fractional_ms_timers_are_never_early() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    // (when, seen by time(), wall deadline, seen by Instant), checked after
    // the run: a panic inside a callback would only reach the handler.
    let seen = Rc::new(RefCell::new(Vec::new()));
    for i in 0..20u64 {
        let delay = Duration::from_micros(100 + i * 190);
        let when = lp.time() + delay;
        let wall = Instant::now() + delay;
        let (s, lp2) = (seen.clone(), lp.clone());
        lp.call_at(when, move || {
            let now = lp2.time();
            s.borrow_mut().push((when, now, wall, Instant::now()));
        })
        .unwrap();
    }
    assert!(iterate_until(&ctx, LIMIT, || seen.borrow().len() == 20));
    for &(when, now, wall, wall_now) in seen.borrow().iter() {
        assert!(now >= when, "early by {:?}", when - now);
        // time() is GLib's clock truncated to µs: allow that much against
        // `Instant`, nothing more.
        assert!(
            wall_now + Duration::from_micros(2) >= wall,
            "early by the wall clock: {:?}",
            wall - wall_now
        );
    }
    lp.close().unwrap();
}

/// Timers 50 days and 10 years out stay pending without spinning; a near
/// one still fires.
#[test]
fn far_future_timers_neither_fire_nor_spin() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let far = Rc::new(RefCell::new(0));
    for d in [
        Duration::from_secs(50 * 86_400),
        Duration::from_secs(10 * 365 * 86_400),
    ] {
        let f = far.clone();
        lp.call_later(d, move || *f.borrow_mut() += 1).unwrap();
    }
    let near = Rc::new(RefCell::new(false));
    let n = near.clone();
    lp.call_later(Duration::from_millis(10), move || *n.borrow_mut() = true)
        .unwrap();
    assert!(iterate_until(&ctx, LIMIT, || *near.borrow()));
    // Idle now except for the far timers: the source is not ready, so a
    // non-blocking iteration dispatches nothing (no spin).
    for _ in 0..5 {
        assert!(
            !ctx.iteration(false),
            "the loop is ready while only far timers are pending"
        );
    }
    assert_eq!(*far.borrow(), 0);
    lp.close().unwrap();
}

/// Five sub-millisecond sleeps take a bounded number of host iterations.
#[test]
fn tiny_sleeps_do_not_busy_spin() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let task = lp
        .spawn(async {
            for exp in [2, 4, 6, 8, 10] {
                oneloop::sleep(Duration::from_secs_f64(10f64.powi(-exp))).await?;
            }
            Ok::<_, oneloop::Error>(())
        })
        .unwrap();
    // Watchdog: wakes the context if a wake-up is lost.
    let wd_ctx = ctx.clone();
    let _wd = Watchdog::with_action(LIMIT, move || wd_ctx.wakeup());
    let start = Instant::now();
    let mut iterations = 0;
    while !task.done() && start.elapsed() < LIMIT {
        ctx.iteration(true);
        iterations += 1;
    }
    assert!(task.done());
    assert!(
        iterations <= 20,
        "{iterations} iterations for five tiny sleeps"
    );
    lp.close().unwrap();
}
