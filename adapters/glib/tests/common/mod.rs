//! Helpers shared by the behaviour tests: iterate a context with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glib::{ControlFlow, MainContext, Priority};

/// Iterate `ctx` (blocking, with a 5 ms tick so the deadline is checked)
/// until `done()` or `limit`; returns whether `done()` became true.
pub fn iterate_until(ctx: &MainContext, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let tick = glib::timeout_source_new(
        Duration::from_millis(5),
        Some("test tick"),
        Priority::DEFAULT,
        || ControlFlow::Continue,
    );
    tick.attach(Some(ctx));
    let start = Instant::now();
    let ok = loop {
        if done() {
            break true;
        }
        if start.elapsed() > limit {
            break false;
        }
        ctx.iteration(true);
    };
    tick.destroy();
    ok
}

/// Post `f` as a host-native idle callback on `ctx` (g_idle_add-like).
pub fn post(ctx: &MainContext, priority: Priority, f: impl FnOnce() + 'static) {
    let mut f = glib::thread_guard::ThreadGuard::new(Some(f));
    let src = glib::idle_source_new(Some("test post"), priority, move || {
        if let Some(f) = f.get_mut().take() {
            f();
        }
        ControlFlow::Break
    });
    src.attach(Some(ctx));
}

/// A shared counter.
pub fn counter() -> Rc<Cell<usize>> {
    Rc::new(Cell::new(0))
}

/// Add a host-native timeout calling `f` once after `after` on `ctx`.
pub fn add_timeout(ctx: &MainContext, after: Duration, f: impl FnOnce() + 'static) {
    let mut f = glib::thread_guard::ThreadGuard::new(Some(f));
    let src = glib::timeout_source_new(after, Some("test timeout"), Priority::DEFAULT, move || {
        if let Some(f) = f.get_mut().take() {
            f();
        }
        ControlFlow::Break
    });
    src.attach(Some(ctx));
}

/// Fails the test (when dropped) if the loop's exception handler was
/// called: the suite's [`Tripwire`](oneloop_conformance::support::Tripwire).
pub fn tripwire(lp: &oneloop::Loop) -> oneloop_conformance::support::Tripwire {
    oneloop_conformance::support::Tripwire::install(lp)
}
