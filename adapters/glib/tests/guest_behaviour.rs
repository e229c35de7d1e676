//! The glib guest: a GLib context run by a loop that is not glib's
//! (the default loop here; every mode is a column of the interop matrix).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glib::MainContext;
use oneloop::{ErrorKind, Loop};
use oneloop_conformance::support::{LIMIT, Watchdog};

fn timeout_on(
    ctx: &MainContext,
    after: Duration,
    f: impl FnOnce() + Send + 'static,
) -> glib::Source {
    let f = std::sync::Mutex::new(Some(f));
    let source = glib::timeout_source_new(after, None, glib::Priority::DEFAULT, move || {
        if let Some(f) = f.lock().unwrap().take() {
            f();
        }
        glib::ControlFlow::Break
    });
    source.attach(Some(ctx));
    source
}

#[test]
fn glib_sources_idles_and_futures_run_on_a_default_loop() {
    let lp = Loop::new().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let start = Instant::now();
    let fired_after = std::sync::Arc::new(std::sync::Mutex::new(None));
    let at = fired_after.clone();
    timeout_on(&ctx, Duration::from_millis(10), move || {
        *at.lock().unwrap() = Some(start.elapsed());
    });
    let l = log.clone();
    ctx.spawn_local(async move { l.borrow_mut().push("glib spawn_local") });
    let l = log.clone();
    let task = lp
        .spawn(async move {
            // Thread-default during the loop's batches: glib's futures attach
            // to the guest's context.
            glib::timeout_future(Duration::from_millis(1)).await;
            l.borrow_mut().push("glib future in a oneloop task");
            oneloop::sleep(Duration::from_millis(20)).await.unwrap();
        })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    let log = log.borrow();
    for what in ["glib spawn_local", "glib future in a oneloop task"] {
        assert!(log.contains(&what), "{what} never ran: {log:?}");
    }
    let fired_after = fired_after
        .lock()
        .unwrap()
        .expect("the glib timeout never fired");
    assert!(
        fired_after >= Duration::from_millis(10),
        "the glib timeout was early: {fired_after:?}"
    );
    lp.close().unwrap();
}

#[test]
fn a_source_added_from_another_thread_wakes_the_guest() {
    let lp = Loop::new().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let loop_thread = std::thread::current().id();
    let ran_on = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (other, r) = (ctx.clone(), ran_on.clone());
    // Attaching from another thread signals the context's wakeup fd, which
    // the guest watches; the source then runs on the loop's thread and
    // stops the loop. Nothing else would wake it.
    let adder = std::thread::spawn(move || {
        timeout_on(&other, Duration::ZERO, move || {
            *r.lock().unwrap() = Some(std::thread::current().id());
            oneloop::get_running_loop().unwrap().stop();
        });
    });
    lp.run_forever().unwrap();
    adder.join().unwrap();
    assert_eq!(
        *ran_on.lock().unwrap(),
        Some(loop_thread),
        "the source added from another thread never ran"
    );
    lp.close().unwrap();
}

#[test]
fn misuse_is_an_error_and_detach_releases_the_context() {
    let lp = Loop::new().unwrap();
    let ctx = MainContext::new();
    let guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    // A second guest on the same context, here or on another loop.
    let err = oneloop_glib::guest(&lp, &ctx).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    // The glib adapter's own loop cannot take a context a guest runs.
    assert!(oneloop_glib::attach(&ctx).is_err());
    // Another thread cannot own the context while the guest runs it.
    let other = ctx.clone();
    let owned_elsewhere = std::thread::spawn(move || other.acquire().is_ok())
        .join()
        .unwrap();
    assert!(!owned_elsewhere, "the guest does not hold the context");
    assert!(guest.detach());
    assert!(!guest.detach());
    assert!(!guest.is_attached());
    let other = ctx.clone();
    assert!(
        std::thread::spawn(move || other.acquire().is_ok())
            .join()
            .unwrap()
    );
    // Free again: a new guest may take it; a closed loop refuses.
    let again = oneloop_glib::guest(&lp, &ctx).unwrap();
    lp.close().unwrap();
    assert!(!again.is_attached(), "closing the loop ends the guest");
    assert_eq!(
        oneloop_glib::guest(&lp, &ctx).unwrap_err().kind(),
        ErrorKind::Closed
    );
    let lp2 = Loop::new().unwrap();
    oneloop_glib::guest(&lp2, &ctx).unwrap();
    lp2.close().unwrap();
}

#[test]
fn a_context_owned_by_another_thread_is_refused_by_name() {
    let ctx = MainContext::new();
    let (owned_tx, owned_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let other = ctx.clone();
    let owner = std::thread::spawn(move || {
        let _guard = other.acquire().unwrap();
        owned_tx.send(()).unwrap();
        release_rx.recv().unwrap();
    });
    owned_rx.recv().unwrap();
    let lp = Loop::new().unwrap();
    let err = oneloop_glib::guest(&lp, &ctx).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains("owned by another thread"), "{err}");
    release_tx.send(()).unwrap();
    owner.join().unwrap();
    lp.close().unwrap();
}

#[test]
fn an_idle_guest_leaves_the_loop_asleep() {
    // With only the guest's wakeup-fd watch, the loop has nothing due: it
    // waits on events alone (no timer, nothing ready), which is what an
    // idle 0 % CPU guest means.
    let lp = Loop::new().unwrap();
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let task = lp
        .spawn(async { oneloop::sleep(Duration::from_millis(1)).await })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap().unwrap();
    let stats = lp.stats();
    assert_eq!(stats.ready, 0, "a callback is queued: {stats:?}");
    assert!(
        stats.fds >= 1,
        "the context's wakeup fd is not watched: {stats:?}"
    );
    lp.close().unwrap();
}
