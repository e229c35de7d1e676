//! The glib guest's edges: sources attached outside a batch, a busy
//! context sharing the loop, the context iterated from inside (a nested
//! GLib loop, a oneloop callback iterating it), and panics on each side.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glib::thread_guard::ThreadGuard;
use glib::{ControlFlow, MainContext, Priority};
use oneloop::Loop;
use oneloop_conformance::support::{LIMIT, Tripwire, Watchdog};
use oneloop_glib::GuestContext;

/// Attach `f` to `ctx` as an idle source (a `!Send` closure: the test runs
/// on the context's thread).
fn idle_on(ctx: &MainContext, f: impl FnMut() -> ControlFlow + 'static) -> glib::Source {
    let mut f = ThreadGuard::new(f);
    let source = glib::idle_source_new(None, Priority::DEFAULT_IDLE, move || (f.get_mut())());
    source.attach(Some(ctx));
    source
}

/// Attach `f` to `ctx` as a timeout source.
fn timeout_on(
    ctx: &MainContext,
    after: Duration,
    f: impl FnMut() -> ControlFlow + 'static,
) -> glib::Source {
    let mut f = ThreadGuard::new(f);
    let source = glib::timeout_source_new(after, None, Priority::DEFAULT, move || (f.get_mut())());
    source.attach(Some(ctx));
    source
}

fn flag() -> Rc<Cell<bool>> {
    Rc::new(Cell::new(false))
}

#[test]
fn sources_attached_outside_the_loops_callbacks_are_seen() {
    // GLib signals its wakeup fd only when another thread attaches a
    // source; attached on the context's own thread outside the loop's
    // batches, nothing wakes the loop by itself.
    let lp = Loop::new().unwrap();
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let watchdog = Watchdog::stop_loop(&lp, LIMIT);

    // Between the guest's creation and the first run: the first run
    // starts by looking at the context.
    let ran = flag();
    let (r, l) = (ran.clone(), lp.clone());
    idle_on(&ctx, move || {
        r.set(true);
        l.stop();
        ControlFlow::Break
    });
    lp.run_forever().unwrap();
    watchdog.assert_not_fired("an idle attached before the first run");
    assert!(ran.get(), "the idle attached before the run never ran");

    // Between two runs: `MainContext::wakeup` tells the guest, as the
    // guest's docs say.
    let ran = flag();
    let (r, l) = (ran.clone(), lp.clone());
    idle_on(&ctx, move || {
        r.set(true);
        l.stop();
        ControlFlow::Break
    });
    ctx.wakeup();
    lp.run_forever().unwrap();
    watchdog.assert_not_fired("an idle attached between two runs, then a wakeup");
    assert!(ran.get(), "the idle attached between runs never ran");

    // From a oneloop callback: seen at the end of its batch.
    let ran = flag();
    let (r, l, c) = (ran.clone(), lp.clone(), ctx.clone());
    lp.call_soon(move || {
        idle_on(&c, move || {
            r.set(true);
            l.stop();
            ControlFlow::Break
        });
    })
    .unwrap();
    lp.run_forever().unwrap();
    watchdog.assert_not_fired("an idle attached from a oneloop callback");
    assert!(ran.get(), "the idle attached from a callback never ran");
    lp.close().unwrap();
}

#[test]
fn a_busy_context_shares_the_loop_within_its_budget() {
    // An idle that never stops being ready: each wake-up of the guest runs
    // several GLib iterations without going back to the loop (that is the
    // guest's throughput), but at most its budget, so the loop's other work
    // (here a chain of call_soon) still runs between them.
    const IDLES: u32 = 2_000;
    let lp = Loop::new().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let idles = Rc::new(Cell::new(0u32));
    let i = idles.clone();
    idle_on(&ctx, move || {
        i.set(i.get() + 1);
        if i.get() < IDLES {
            ControlFlow::Continue
        } else {
            ControlFlow::Break
        }
    });
    let seen = Rc::new(RefCell::new(Vec::new()));
    fn link(lp: Loop, idles: Rc<Cell<u32>>, seen: Rc<RefCell<Vec<u32>>>) {
        seen.borrow_mut().push(idles.get());
        if idles.get() >= IDLES {
            lp.stop();
            return;
        }
        let next = lp.clone();
        lp.call_soon(move || link(next, idles, seen)).unwrap();
    }
    let (l, i, s) = (lp.clone(), idles.clone(), seen.clone());
    lp.call_soon(move || link(l, i, s)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(idles.get(), IDLES);
    // Counted from the start: no idle had run before the loop did.
    let seen: Vec<u32> = std::iter::once(0)
        .chain(seen.borrow().iter().copied())
        .collect();
    let most = seen.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        most <= GuestContext::DISPATCH_BUDGET,
        "{most} GLib iterations ran between two loop iterations (budget {})",
        GuestContext::DISPATCH_BUDGET
    );
    assert!(
        most > 1,
        "one GLib iteration per loop iteration: the guest does not iterate again while the context is ready"
    );
    lp.close().unwrap();
}

#[test]
fn a_nested_glib_loop_in_a_glib_callback_runs_glib_sources_only() {
    // A GLib callback runs a nested GLib loop on the same context (a modal
    // dialog's `gtk_dialog_run`): GLib allows it, and its sources run in
    // it; the oneloop loop is inside that callback, so its callbacks and
    // timers wait until the nested loop returns. The guest then goes on.
    let lp = Loop::new().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let nested = flag();
    let idles_inside = Rc::new(Cell::new(0u32));
    let oneloop_inside = flag();

    let (n, inside, c) = (nested.clone(), idles_inside.clone(), ctx.clone());
    timeout_on(&ctx, Duration::from_millis(1), move || {
        let ml = glib::MainLoop::new(Some(&c), false);
        let quit = ml.clone();
        timeout_on(&c, Duration::from_millis(30), move || {
            quit.quit();
            ControlFlow::Break
        });
        let i = inside.clone();
        idle_on(&c, move || {
            i.set(i.get() + 1);
            ControlFlow::Break
        });
        n.set(true);
        ml.run();
        n.set(false);
        ControlFlow::Break
    });
    // Due while the nested loop runs.
    let (n, o) = (nested.clone(), oneloop_inside.clone());
    lp.call_later(Duration::from_millis(10), move || o.set(n.get()))
        .unwrap();
    let after = lp.create_future::<()>();
    let a = after.clone();
    let c = ctx.clone();
    let task = lp
        .spawn(async move {
            oneloop::sleep(Duration::from_millis(50)).await.unwrap();
            // A GLib source attached after the nested loop still runs.
            timeout_on(&c, Duration::from_millis(1), move || {
                let _ = a.set_result(());
                ControlFlow::Break
            });
            after.await.unwrap();
        })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    assert_eq!(
        idles_inside.get(),
        1,
        "GLib sources did not run in the nested loop"
    );
    assert!(
        !oneloop_inside.get(),
        "a oneloop timer ran inside a GLib callback's nested loop"
    );
    lp.close().unwrap();
}

#[test]
fn a_oneloop_callback_may_iterate_the_context_itself() {
    // A oneloop callback iterates the context (`g_main_context_iteration`,
    // as code written for GLib does to flush pending events): GLib runs
    // the ready sources right there. The guest checks the context afresh
    // at its next wake-up, so the poll set GLib changed meanwhile (a new
    // fd source, here) confuses nothing.
    let lp = Loop::new().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let (tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    let reads = Rc::new(Cell::new(0u32));
    let c = ctx.clone();
    let r = reads.clone();
    let task = lp
        .spawn(async move {
            let flushed = flag();
            let f = flushed.clone();
            idle_on(&c, move || {
                f.set(true);
                ControlFlow::Break
            });
            // The fd source is new to the context's poll set.
            let fd = std::os::fd::AsRawFd::as_raw_fd(&rx);
            let r2 = r.clone();
            let mut guard = ThreadGuard::new(move || {
                let mut buf = [0; 8];
                if std::io::Read::read(&mut &rx, &mut buf).is_ok() {
                    r2.set(r2.get() + 1);
                }
            });
            let source = glib_unix::fd_source_new(
                fd,
                glib::IOCondition::IN,
                None,
                Priority::DEFAULT,
                move |_, _| {
                    (guard.get_mut())();
                    ControlFlow::Continue
                },
            );
            source.attach(Some(&c));
            while c.iteration(false) {}
            assert!(flushed.get(), "iterating the context did not run its idle");
            std::io::Write::write_all(&mut &tx, b"x").unwrap();
            let start = Instant::now();
            while r.get() == 0 {
                assert!(start.elapsed() < LIMIT, "the fd source never ran");
                oneloop::sleep(Duration::from_millis(1)).await.unwrap();
            }
            source.destroy();
        })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    assert_eq!(reads.get(), 1);
    lp.close().unwrap();
}

#[test]
fn a_panic_in_a_spawn_local_future_is_caught_by_glib_and_the_guest_goes_on() {
    // glib-rs polls a `spawn_local` future inside `catch_unwind` and hands
    // the panic to its `JoinHandle`: nothing reaches the loop.
    let lp = Loop::new().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let tripwire = Tripwire::install(&lp);
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let handle = ctx.spawn_local(async { panic!("a glib future panicked") });
    let c = ctx.clone();
    let task = lp
        .spawn(async move {
            let err = handle.await.expect_err("the future panicked");
            assert!(err.is_panic());
            // The guest still runs the context.
            glib::timeout_future(Duration::from_millis(1)).await;
            let (tx, rx) = futures::channel::oneshot::channel();
            let mut tx = Some(tx);
            timeout_on(&c, Duration::from_millis(1), move || {
                let _ = tx.take().map(|t| t.send(()));
                ControlFlow::Break
            });
            rx.await.unwrap();
        })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    tripwire.assert_clean();
    lp.close().unwrap();
}

#[test]
fn a_panicking_oneloop_callback_is_reported_and_the_guest_goes_on() {
    let lp = Loop::new().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let tripwire = Tripwire::install(&lp);
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    lp.call_soon(|| panic!("a oneloop callback panicked"))
        .unwrap();
    let c = ctx.clone();
    let task = lp
        .spawn(async move {
            // Still the thread-default context in the loop's batches.
            assert_eq!(MainContext::thread_default().as_ref(), Some(&c));
            glib::timeout_future(Duration::from_millis(1)).await;
        })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    let reports = tripwire.take();
    assert!(
        reports.len() == 1 && reports[0].contains("a oneloop callback panicked"),
        "{reports:?}"
    );
    assert_ne!(
        MainContext::thread_default().as_ref(),
        Some(&ctx),
        "the guest's context stayed thread-default outside the loop"
    );
    lp.close().unwrap();
}

/// The child half of the next test: a GLib callback of a guest panics.
const PANIC_CHILD: &str = "ONELOOP_GUEST_PANIC_CHILD";

#[test]
fn a_panic_in_a_glib_callback_aborts_the_process() {
    if std::env::var_os(PANIC_CHILD).is_some() {
        let lp = Loop::new().unwrap();
        let ctx = MainContext::new();
        let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
        idle_on(&ctx, || panic!("a glib callback panicked"));
        let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
        lp.run_forever().unwrap();
        // Not reached: the process aborts inside the idle.
        std::process::exit(0);
    }
    // glib-rs calls source callbacks from `extern "C"` trampolines: a
    // panic cannot unwind through GLib's C frames, so Rust aborts the
    // process, on a guest exactly as on GLib's own loop. Checked in a
    // child process (this test, re-run).
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_panic_in_a_glib_callback_aborts_the_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PANIC_CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // SIGABRT is 6 on every Unix.
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(6),
        "the child did not abort: {:?}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("a glib callback panicked"), "{stderr}");
    assert!(stderr.contains("cannot unwind"), "{stderr}");
}
