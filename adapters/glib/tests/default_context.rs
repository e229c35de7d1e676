//! Which context an owned loop runs, and GLib-native code beside oneloop:
//! `new_default_loop` iterates `MainContext::default()`; `new_loop` a fresh
//! context, thread-default while it runs; `attach` rides a `MainLoop` that
//! iterates the default context.
//!
//! The checks share the process's one default context, so they run one at
//! a time (one loop per context while open, EM-10).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use glib::MainContext;
use oneloop::{ErrorKind, Loop};

static DEFAULT_CONTEXT: Mutex<()> = Mutex::new(());
const LIMIT: Duration = Duration::from_secs(10);

type Log = Rc<RefCell<Vec<&'static str>>>;

/// GLib-native work on the default context and oneloop work, each
/// recording itself; `done` resolves when all four have run.
fn glib_and_oneloop_side_by_side(lp: &Loop, log: &Log) -> oneloop::LoopFuture<()> {
    let done = lp.create_future::<()>();
    let mark = {
        let (log, done) = (log.clone(), done.clone());
        move |what: &'static str| {
            log.borrow_mut().push(what);
            if log.borrow().len() == 4 {
                let _ = done.set_result(());
            }
        }
    };
    let m = mark.clone();
    glib::timeout_add_local_once(Duration::from_millis(2), move || m("glib timeout"));
    let m = mark.clone();
    MainContext::default().spawn_local(async move { m("glib spawn_local") });
    let m = mark.clone();
    lp.call_soon(move || m("oneloop call_soon")).unwrap();
    lp.call_later(Duration::from_millis(2), move || mark("oneloop timer"))
        .unwrap();
    done
}

fn assert_all_ran(log: &Log) {
    let log = log.borrow();
    for what in [
        "glib timeout",
        "glib spawn_local",
        "oneloop call_soon",
        "oneloop timer",
    ] {
        assert!(log.contains(&what), "{what} never ran: {log:?}");
    }
}

#[test]
fn an_owned_loop_on_the_default_context_runs_glib_native_code() {
    let _one = DEFAULT_CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
    let lp = oneloop_glib::new_default_loop().unwrap();
    let _watchdog = oneloop_conformance::support::Watchdog::stop_loop(&lp, LIMIT);
    let log = Log::default();
    let done = glib_and_oneloop_side_by_side(&lp, &log);
    lp.run_until_complete(done).unwrap().unwrap();
    assert_all_ran(&log);
    // One loop per context while it is open (EM-10), then free again.
    let err = oneloop_glib::new_default_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    lp.close().unwrap();
    oneloop_glib::new_default_loop().unwrap().close().unwrap();
}

#[test]
fn an_attached_loop_on_the_default_context_rides_glibs_main_loop() {
    let _one = DEFAULT_CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = MainContext::default();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let main_loop = glib::MainLoop::new(Some(&ctx), false);
    let log = Log::default();
    let done = glib_and_oneloop_side_by_side(&lp, &log);
    let ml = main_loop.clone();
    done.add_done_callback(move |_| ml.quit());
    let ml = main_loop.clone();
    let guard = glib::timeout_add_local_once(LIMIT, move || ml.quit());
    main_loop.run();
    assert!(done.done(), "watchdog: the main loop ran past {LIMIT:?}");
    guard.remove();
    assert_all_ran(&log);
    lp.close().unwrap();
}

#[test]
fn an_owned_loop_on_a_fresh_context_is_thread_default_while_it_runs() {
    let _one = DEFAULT_CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
    let lp = oneloop_glib::new_loop().unwrap();
    let _watchdog = oneloop_conformance::support::Watchdog::stop_loop(&lp, LIMIT);
    // Awaited inside the run: the fresh context is thread-default, so
    // glib's thread-default sources attach there and run.
    let task = lp
        .spawn(async {
            glib::timeout_future(Duration::from_millis(1)).await;
            "glib timeout_future, in a task"
        })
        .unwrap();
    assert_eq!(
        lp.run_until_complete(task).unwrap().unwrap(),
        "glib timeout_future, in a task"
    );
    // Work on the global default context, which this loop does not
    // iterate: it does not run (the documented reason for
    // new_default_loop), and it is still there, ready.
    let ran = Rc::new(std::cell::Cell::new(false));
    let r = ran.clone();
    MainContext::default().spawn_local(async move { r.set(true) });
    let task = lp
        .spawn(async { oneloop::sleep(Duration::from_millis(1)).await })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap().unwrap();
    assert!(!ran.get(), "new_loop iterated the default context");
    assert!(
        MainContext::default().pending(),
        "the work waits on the default context"
    );
    lp.close().unwrap();
    // The work left on the default context must not leak into the next
    // check (on another thread): run it off here.
    while MainContext::default().iteration(false) {}
    assert!(ran.get());
}
