//! Panics and the exception handler on the default loop: ER-01…ER-04, D3.

mod util;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use oneloop::{ErrorKind, ExceptionContext, Loop, PanicPolicy};
use util::{Log, record_exceptions, run_once};

#[test]
fn er01_a_panicking_callback_is_reported_with_context_and_the_loop_goes_on() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let log = Log::new();
    lp.call_soon(|| panic!("boom")).unwrap();
    let l = log.clone();
    lp.call_soon(move || l.push("next callback")).unwrap();
    run_once(&lp);
    assert_eq!(log.get(), ["next callback"]);
    let r = &reports.get()[0];
    assert_eq!(r.panic_message(), Some("boom"));
    assert_eq!(r.error().map(|e| e.kind()), Some(ErrorKind::Panicked));
    assert!(
        r.location().unwrap().file().ends_with("errors.rs"),
        "the context names where it was scheduled"
    );
}

/// The batch runs under one unwind guard, set up again after each panic:
/// several panics in one batch, from every kind of item, are each reported
/// with their own call site, and everything else runs, in order.
#[test]
fn er01_several_panics_in_one_batch_each_report_their_own_call_site() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let log = Log::new();
    let push = |what: &'static str| {
        let l = log.clone();
        move || l.push(what)
    };
    lp.call_soon_detached(push("1")).unwrap();
    let detached_line = line!() + 1;
    lp.call_soon_detached(|| panic!("detached")).unwrap();
    lp.call_soon(push("2")).unwrap();
    let handle_line = line!() + 1;
    lp.call_soon(|| panic!("with a handle")).unwrap();
    let task_line = line!() + 1;
    let task = lp.spawn(async { panic!("task") }).unwrap();
    lp.call_soon_detached(push("3")).unwrap();
    run_once(&lp);
    assert_eq!(log.get(), ["1", "2", "3"]);
    let seen: Vec<(String, u32)> = reports
        .get()
        .iter()
        .map(|r| {
            let message = r.panic_message().unwrap_or_default().to_owned();
            let location = r.location().expect("a call site");
            assert!(location.file().ends_with("errors.rs"));
            (message, location.line())
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("detached".to_owned(), detached_line),
            ("with a handle".to_owned(), handle_line),
            ("task".to_owned(), task_line),
        ]
    );
    drop(task);
}

#[test]
fn er01_the_report_comes_during_the_run_not_at_close() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let t = lp.spawn(async { panic!("task failed") }).unwrap();
    lp.run_until_complete(oneloop::sleep(Duration::from_millis(100)))
        .unwrap()
        .unwrap();
    assert_eq!(
        reports.len(),
        1,
        "reported before the unrelated sleep returned"
    );
    assert_eq!(
        lp.run_until_complete(t).unwrap().unwrap_err().kind(),
        ErrorKind::Panicked
    );
}

#[test]
fn er01_panicking_fd_callbacks_are_reported_too() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &a, b"x").unwrap();
    let b = std::rc::Rc::new(b);
    let (lp2, b2) = (lp.clone(), b.clone());
    lp.add_reader(&*b, move || {
        lp2.remove_reader(&*b2);
        panic!("reader failed")
    })
    .unwrap();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_millis(10), move || lp2.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(reports.len(), 1);
}

#[test]
fn er02_set_get_and_call_the_exception_handler() {
    let lp = Loop::new().unwrap();
    assert!(!lp.has_exception_handler());
    let reports = record_exceptions(&lp);
    assert!(lp.has_exception_handler());
    lp.call_exception_handler(ExceptionContext::new("custom"));
    assert_eq!(reports.get()[0].message(), "custom");
    lp.set_exception_handler(None::<fn(&Loop, &ExceptionContext)>);
    assert!(!lp.has_exception_handler());
    // The default handler logs; it must not panic.
    lp.call_exception_handler(ExceptionContext::new("to the log"));
    assert_eq!(reports.len(), 1);
}

#[test]
fn er03_a_handler_that_panics_is_contained() {
    let lp = Loop::new().unwrap();
    lp.set_exception_handler(Some(|_: &Loop, _: &ExceptionContext| {
        panic!("broken handler")
    }));
    lp.call_soon(|| panic!("first")).unwrap();
    let log = Log::new();
    let l = log.clone();
    lp.call_soon(move || l.push("survived")).unwrap();
    run_once(&lp);
    assert_eq!(log.get(), ["survived"]);
}

#[test]
fn er04_d3_propagate_resumes_the_panic_out_of_run_and_keeps_the_loop_usable() {
    let lp = Loop::builder()
        .panic_policy(PanicPolicy::Propagate)
        .build()
        .unwrap();
    let reports = record_exceptions(&lp);
    let log = Log::new();
    lp.call_soon(|| std::panic::panic_any(42u32)).unwrap();
    let l = log.clone();
    lp.call_soon(move || l.push("after")).unwrap();
    let payload = catch_unwind(AssertUnwindSafe(|| lp.run_forever())).unwrap_err();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
    assert!(log.get().is_empty(), "the run stopped at the panic");
    assert!(!lp.is_closed() && !lp.is_running());
    run_once(&lp);
    assert_eq!(log.get(), ["after"], "nothing queued was lost");
    assert_eq!(reports.len(), 0, "a propagated panic is not also reported");
}

#[test]
fn debug_mode_warns_about_slow_callbacks_without_failing() {
    let lp = Loop::builder()
        .debug(true)
        .slow_callback_duration(Duration::from_millis(1))
        .build()
        .unwrap();
    assert!(lp.debug());
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(3)))
        .unwrap();
    run_once(&lp);
    lp.set_debug(false);
    assert!(!lp.debug());
}
