//! EM-07: a oneloop callback storm does not starve GTK's idle and redraw
//! work, and a burst of host sources does not starve oneloop (pitfall 13,
//! gbulb #44).

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::{add_timeout, iterate_until, post};
use glib::{MainContext, Priority};
use oneloop::Loop;

const LIMIT: Duration = Duration::from_secs(10);

/// A callback that re-queues itself until `left` runs out.
fn storm(lp: &Loop, left: Rc<Cell<u32>>, ran: Rc<Cell<u32>>) {
    let lp2 = lp.clone();
    lp.call_soon(move || {
        ran.set(ran.get() + 1);
        if left.get() > 0 {
            left.set(left.get() - 1);
            storm(&lp2, left, ran);
        }
    })
    .unwrap();
}

/// A host idle (DEFAULT_IDLE) and a redraw-priority idle (HIGH_IDLE + 20,
/// GDK's frame clock) posted during a 10 000-callback storm run after at
/// most one more oneloop batch, not after the storm.
#[test]
fn callback_storm_does_not_starve_host_idle_or_redraw() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let left = Rc::new(Cell::new(10_000));
    let ran = Rc::new(Cell::new(0));
    storm(&lp, left.clone(), ran.clone());
    // Let the storm start.
    assert!(iterate_until(&ctx, LIMIT, || ran.get() >= 10));
    let idle_at = Rc::new(Cell::new(None));
    let redraw_at = Rc::new(Cell::new(None));
    let posted_at = ran.get();
    {
        let (r, at) = (ran.clone(), idle_at.clone());
        post(&ctx, Priority::DEFAULT_IDLE, move || at.set(Some(r.get())));
        let (r, at) = (ran.clone(), redraw_at.clone());
        post(&ctx, redraw_priority(), move || at.set(Some(r.get())));
    }
    assert!(iterate_until(&ctx, LIMIT, || idle_at.get().is_some()
        && redraw_at.get().is_some()));
    // Each batch of this storm is one callback: at most one batch between
    // posting and running, far from the 10 000 of the storm.
    assert!(
        idle_at.get().unwrap() <= posted_at + 1,
        "idle waited {:?} - {posted_at}",
        idle_at.get()
    );
    assert!(
        redraw_at.get().unwrap() <= posted_at + 1,
        "redraw waited {:?} - {posted_at}",
        redraw_at.get()
    );
    assert!(
        left.get() > 0,
        "the storm finished before the host ran: not a starvation test"
    );
    assert!(iterate_until(&ctx, LIMIT, || left.get() == 0));
    lp.close().unwrap();
}

/// A burst of 2 000 host timeouts at DEFAULT priority, all due together,
/// delays oneloop work at most until the burst is over; a oneloop timer
/// due during the burst still fires.
#[test]
fn host_timer_burst_does_not_starve_oneloop() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let host_done = Rc::new(Cell::new(0u32));
    for _ in 0..2_000 {
        let d = host_done.clone();
        add_timeout(&ctx, Duration::from_millis(5), move || d.set(d.get() + 1));
    }
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    lp.call_later(Duration::from_millis(5), move || f.set(true))
        .unwrap();
    let soon = Rc::new(Cell::new(false));
    let s = soon.clone();
    lp.call_soon(move || s.set(true)).unwrap();
    assert!(iterate_until(&ctx, LIMIT, || fired.get() && soon.get()));
    assert!(iterate_until(&ctx, LIMIT, || host_done.get() == 2_000));
    lp.close().unwrap();
}

/// The priority is configurable: a loop at LOW priority yields to a
/// DEFAULT host idle storm's siblings, and at HIGH runs before them.
#[test]
fn configured_priority_orders_against_host_sources() {
    for (priority, oneloop_first) in [(Priority::HIGH, true), (Priority::LOW, false)] {
        let ctx = MainContext::new();
        let lp =
            oneloop::Loop::with_backend(oneloop_glib::GlibBackend::attach(&ctx).priority(priority))
                .unwrap();
        ctx.iteration(false);
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        let o = order.clone();
        post(&ctx, Priority::DEFAULT, move || o.borrow_mut().push("host"));
        let o = order.clone();
        lp.call_soon(move || o.borrow_mut().push("oneloop"))
            .unwrap();
        assert!(iterate_until(&ctx, LIMIT, || order.borrow().len() == 2));
        let expected = if oneloop_first {
            ["oneloop", "host"]
        } else {
            ["host", "oneloop"]
        };
        assert_eq!(*order.borrow(), expected, "priority {priority:?}");
        lp.close().unwrap();
    }
}

/// GDK's redraw priority, `G_PRIORITY_HIGH_IDLE + 20`.
fn redraw_priority() -> Priority {
    Priority::from(glib::translate::IntoGlib::into_glib(Priority::HIGH_IDLE) + 20)
}
