//! Panics never cross the C boundary (GUARANTEES.md §3 pitfall 17, D3,
//! ER-01, ER-04): caught at dispatch, reported or propagated, never an abort.

mod common;

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

use common::{counter, iterate_until};
use glib::MainContext;
use oneloop::{Loop, PanicPolicy};

const LIMIT: Duration = Duration::from_secs(5);

/// Attached: a panicking callback, timer, task and fd callback reach the
/// exception handler while the host keeps iterating; later work runs.
#[test]
fn attached_panics_reach_the_exception_handler() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let reports = Rc::new(RefCell::new(Vec::<String>::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &Loop, cx: &oneloop::ExceptionContext| {
        r.borrow_mut().push(cx.message().to_string());
    }));
    lp.call_soon(|| panic!("boom in call_soon")).unwrap();
    lp.call_later(Duration::from_millis(1), || panic!("boom in a timer"))
        .unwrap();
    let after = counter();
    let a = after.clone();
    lp.call_later(Duration::from_millis(2), move || a.set(1))
        .unwrap();
    assert!(iterate_until(&ctx, LIMIT, || after.get() == 1));
    assert_eq!(reports.borrow().len(), 2, "{:?}", reports.borrow());
    lp.close().unwrap();
}

/// Attached loops have no run to propagate out of: even under
/// `Propagate` the panic is reported, and the host survives.
#[test]
fn attached_propagate_policy_still_reports() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    lp.set_panic_policy(PanicPolicy::Propagate);
    let reports = counter();
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &Loop, _: &oneloop::ExceptionContext| {
        r.set(r.get() + 1)
    }));
    lp.call_soon(|| panic!("boom")).unwrap();
    let after = counter();
    let a = after.clone();
    lp.call_soon(move || a.set(1)).unwrap();
    assert!(iterate_until(&ctx, LIMIT, || after.get() == 1));
    assert_eq!(reports.get(), 1);
    lp.close().unwrap();
}

/// Owned, `Propagate`: the panic resumes out of `run_forever` (through Rust
/// code only: the GLib iteration returned first), the loop stays usable and
/// the rest of the batch runs on the next run (ER-04).
#[test]
fn owned_propagate_resumes_out_of_run_and_loop_is_reusable() {
    let lp = oneloop_glib::new_loop().unwrap();
    lp.set_panic_policy(PanicPolicy::Propagate);
    lp.call_soon(|| panic!("fatal")).unwrap();
    let after = counter();
    let (a, l) = (after.clone(), lp.clone());
    lp.call_soon(move || {
        a.set(1);
        l.stop();
    })
    .unwrap();
    let err = catch_unwind(AssertUnwindSafe(|| lp.run_forever())).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"fatal"));
    assert_eq!(after.get(), 0);
    assert!(!lp.is_running() && !lp.is_closed());
    lp.run_forever().unwrap();
    assert_eq!(after.get(), 1);
    lp.close().unwrap();
}

/// A panic in the exception handler itself is contained too (ER-03).
#[test]
fn panicking_exception_handler_does_not_abort() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    lp.set_exception_handler(Some(|_: &Loop, _: &oneloop::ExceptionContext| {
        panic!("handler broke")
    }));
    lp.call_soon(|| panic!("boom")).unwrap();
    let after = counter();
    let a = after.clone();
    lp.call_soon(move || a.set(1)).unwrap();
    assert!(iterate_until(&ctx, LIMIT, || after.get() == 1));
    lp.close().unwrap();
}
