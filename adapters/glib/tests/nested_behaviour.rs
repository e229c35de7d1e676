//! Nested main loops from a oneloop callback (a modal dialog): D4, EM-03,
//! pitfall 2 of GUARANTEES.md §3.

mod common;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{add_timeout, iterate_until, post};
use glib::{MainContext, MainLoop, Priority};
use oneloop_conformance::support::Watchdog;

const LIMIT: Duration = Duration::from_secs(5);

static IN_MODAL: AtomicBool = AtomicBool::new(false);

/// Run a nested `MainLoop` on `ctx` for `ms` milliseconds, as
/// `gtk_dialog_run` does.
fn modal(ctx: &MainContext, ms: u64) {
    let ml = MainLoop::new(Some(ctx), false);
    let m = ml.clone();
    add_timeout(ctx, Duration::from_millis(ms), move || m.quit());
    ml.run();
}

/// oneloop is suspended while a callback runs a nested main loop: no
/// oneloop callback, timer, task step or thread callback runs inside it,
/// host sources keep running, and afterwards everything runs in order.
#[test]
fn nested_loop_suspends_oneloop_and_resumes_in_order() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let log = Rc::new(RefCell::new(Vec::<String>::new()));
    let in_modal = Rc::new(Cell::new(false));
    let host_ticks = Rc::new(Cell::new(0u32));
    let threadsafe_seen = Arc::new(Mutex::new(None));
    {
        let threadsafe_seen = threadsafe_seen.clone();
        let (lp2, log, in_modal, ctx2, host_ticks) = (
            lp.clone(),
            log.clone(),
            in_modal.clone(),
            ctx.clone(),
            host_ticks.clone(),
        );
        lp.call_soon(move || {
            // Work that becomes ready while the dialog is open.
            for i in 0..3 {
                let (log, m) = (log.clone(), in_modal.clone());
                lp2.call_soon(move || {
                    log.borrow_mut()
                        .push(format!("soon {i} nested={}", m.get()))
                })
                .unwrap();
            }
            let (l, m) = (log.clone(), in_modal.clone());
            lp2.call_later(Duration::from_millis(10), move || {
                l.borrow_mut().push(format!("timer nested={}", m.get()))
            })
            .unwrap();
            let (l, m) = (log.clone(), in_modal.clone());
            lp2.spawn(async move { l.borrow_mut().push(format!("task nested={}", m.get())) })
                .unwrap();
            let remote = lp2.remote();
            let seen = threadsafe_seen.clone();
            std::thread::spawn(move || {
                remote
                    .call_soon_threadsafe(move || {
                        *seen.lock().unwrap() = Some(IN_MODAL.load(Ordering::SeqCst));
                    })
                    .unwrap();
            })
            .join()
            .unwrap();
            let lp3 = lp2.clone();
            let l3 = log.clone();
            let m3 = in_modal.clone();
            // Host-native work during the modal: runs (it is the host's).
            let t = host_ticks.clone();
            post(&ctx2, Priority::DEFAULT_IDLE, move || {
                t.set(t.get() + 1);
                // And oneloop work created from inside the nested loop.
                lp3.call_soon(move || {
                    l3.borrow_mut()
                        .push(format!("from host nested={}", m3.get()))
                })
                .unwrap();
            });
            in_modal.set(true);
            IN_MODAL.store(true, Ordering::SeqCst);
            modal(&ctx2, 50);
            IN_MODAL.store(false, Ordering::SeqCst);
            in_modal.set(false);
            log.borrow_mut().push("modal closed".into());
        })
        .unwrap();
    }
    assert!(iterate_until(&ctx, LIMIT, || log.borrow().len() >= 7
        && threadsafe_seen.lock().unwrap().is_some()));
    assert_eq!(*threadsafe_seen.lock().unwrap(), Some(false));
    let log = log.borrow();
    assert_eq!(
        host_ticks.get(),
        1,
        "host sources must run during the modal"
    );
    assert_eq!(
        log[0], "modal closed",
        "oneloop ran inside the nested loop: {log:?}"
    );
    assert!(log.iter().all(|l| !l.contains("nested=true")), "{log:?}");
    // FIFO after the modal: the three call_soon first, in order.
    assert_eq!(
        &log[1..4],
        [
            "soon 0 nested=false",
            "soon 1 nested=false",
            "soon 2 nested=false"
        ]
    );
    assert!(log.contains(&"timer nested=false".to_string()));
    assert!(log.contains(&"task nested=false".to_string()));
    assert!(log.contains(&"from host nested=false".to_string()));
    lp.close().unwrap();
}

/// The same from an owned loop: `run_forever` keeps going after the modal
/// and `stop()` from a host callback inside the modal ends the run once the
/// modal returns.
#[test]
fn owned_loop_nested_modal_then_stop() {
    let backend = oneloop_glib::GlibBackend::new();
    let ctx = backend.main_context().clone();
    let lp = oneloop::Loop::with_backend(backend).unwrap();
    let _tw = common::tripwire(&lp);
    let after = Rc::new(Cell::new(0));
    {
        let (lp2, ctx2, after) = (lp.clone(), ctx.clone(), after.clone());
        lp.call_soon(move || {
            let a = after.clone();
            lp2.call_soon(move || a.set(a.get() + 1)).unwrap();
            let lp3 = lp2.clone();
            post(&ctx2, Priority::DEFAULT_IDLE, move || lp3.stop());
            modal(&ctx2, 20);
        })
        .unwrap();
    }
    let wd = Watchdog::stop_loop(&lp, LIMIT);
    let start = Instant::now();
    lp.run_forever().unwrap();
    assert!(start.elapsed() < LIMIT, "stop() inside the modal was lost");
    // LC-03/LC-04: the stop took effect at the end of the batch (the modal
    // callback); the work it queued waits for the next run, not lost.
    assert_eq!(after.get(), 0);
    let lp2 = lp.clone();
    lp.call_soon(move || lp2.stop()).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(after.get(), 1);
    lp.close().unwrap();
    drop(wd);
}

/// Pitfall 1 (gbulb #19): a host-native callback that runs while the loop
/// runs and calls `run_until_complete` fails at once with `AlreadyRunning`
/// instead of nesting or deadlocking.
#[test]
fn run_from_a_host_callback_fails_at_once() {
    let backend = oneloop_glib::GlibBackend::new();
    let ctx = backend.main_context().clone();
    let lp = oneloop::Loop::with_backend(backend).unwrap();
    let _tw = common::tripwire(&lp);
    let kind = Rc::new(Cell::new(None));
    {
        let (lp2, kind) = (lp.clone(), kind.clone());
        post(&ctx, Priority::DEFAULT, move || {
            let r = lp2.run_until_complete(async {});
            kind.set(r.err().map(|e| e.kind()));
            lp2.stop();
        });
    }
    let _wd = Watchdog::stop_loop(&lp, LIMIT);
    lp.run_forever().unwrap();
    assert_eq!(kind.get(), Some(oneloop::ErrorKind::AlreadyRunning));
    lp.close().unwrap();
}

/// While a oneloop callback runs a nested iteration, oneloop's source is
/// neither polled nor ready, whatever it has pending: a watched fd that
/// stays readable, queued callbacks and a thread's wake-up. Otherwise every
/// nested iteration would find it ready and return at once (a modal dialog
/// spinning a core), or dispatch it re-entrantly. Afterwards all of it runs.
#[test]
fn a_suspended_loop_leaves_the_nested_context_idle() {
    let backend = oneloop_glib::GlibBackend::new();
    let ctx = backend.main_context().clone();
    let lp = oneloop::Loop::with_backend(backend).unwrap();
    let _tw = common::tripwire(&lp);
    let (readable, mut peer) = UnixStream::pair().unwrap();
    peer.write_all(b"x").unwrap();
    let reader_calls = Rc::new(Cell::new(0u32));
    {
        let calls = reader_calls.clone();
        // Never reads: the fd stays readable (level-triggered).
        lp.add_reader(&readable, move || calls.set(calls.get() + 1))
            .unwrap();
    }
    let nested = Rc::new(Cell::new(None));
    let (queued_ran, threadsafe_ran) = (lp.create_future::<()>(), lp.create_future::<()>());
    {
        let (lp2, nested, queued_ran) = (lp.clone(), nested.clone(), queued_ran.clone());
        let remote = lp.remote();
        let threadsafe_ran = threadsafe_ran.clone();
        lp.call_soon(move || {
            lp2.call_soon(move || drop(queued_ran.set_result(())))
                .unwrap();
            // Run on this thread, where the guarded future lives.
            let fut = glib::thread_guard::ThreadGuard::new(threadsafe_ran.clone());
            remote
                .call_soon_threadsafe(move || drop(fut.get_ref().set_result(())))
                .unwrap();
            // The nested loop's view: nothing to do, nothing dispatched.
            nested.set(Some((ctx.pending(), ctx.iteration(false))));
        })
        .unwrap();
    }
    lp.run_until_complete(oneloop::timeout(LIMIT, async move {
        queued_ran.await.unwrap();
        threadsafe_ran.await.unwrap();
    }))
    .unwrap()
    .expect("the work deferred past the nested iteration ran");
    assert_eq!(
        nested.get(),
        Some((false, false)),
        "(pending, dispatched) inside the nested iteration"
    );
    assert!(reader_calls.get() > 0, "the reader ran after the nesting");
    lp.close().unwrap();
}
