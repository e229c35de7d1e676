//! `EM-09`: guest mode — a loop hosted by a host that offers only a
//! thread-safe "run this soon on my thread" hook, written against
//! [`HostDriver`] and [`GuestDriver`] (Trio's guest mode, aioguest, CPython's
//! `asyncio-guest.rst`).
//!
//! [`HostDriver`]: crate::HostDriver
//! [`GuestDriver`]: crate::GuestDriver

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, Loop};

use super::Signal;
use crate::env::Log;
use crate::{Env, GuestEnd};

/// EM-09 (SHOULD): guest mode. The I/O wait runs on a helper thread and
/// every callback, timer, fd callback, task step and threadsafe callback
/// runs on the host thread; the host owns signals (SG-07); `stop()` is not
/// supported and says so (a report to the exception handler) while the
/// loop goes on; a guest run's done callback fires on the host thread
/// after full cleanup (loop closed, helper threads joined); a second guest
/// run on a host thread where a loop runs is refused.
pub fn guest_mode_runs_everything_on_the_host_thread(env: &Env) {
    let lp = env.lp();
    let host_thread = std::thread::current().id();
    let ran: Log<(&'static str, ThreadId)> = Log::new();

    // Every kind of callback, on the host thread; the fd and the
    // threadsafe call arrive while the host waits in its own wait.
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    theirs.set_nonblocking(true).expect("nonblocking");
    let reader_fd = theirs.try_clone().expect("dup");
    let read_done = lp.create_future::<()>();
    lp.add_reader(&reader_fd, {
        let (ran, read_done) = (ran.clone(), read_done.clone());
        move || {
            let mut buf = [0u8; 16];
            if matches!((&theirs).read(&mut buf), Ok(n) if n > 0) {
                ran.push(("fd", std::thread::current().id()));
                let _ = read_done.set_result(());
            }
        }
    })
    .expect("add_reader");
    let soon = lp.create_future::<()>();
    lp.call_soon({
        let (ran, soon) = (ran.clone(), soon.clone());
        move || {
            ran.push(("call_soon", std::thread::current().id()));
            let _ = soon.set_result(());
        }
    })
    .expect("call_soon");
    let timer = lp.create_future::<()>();
    lp.call_later(Duration::from_millis(5), {
        let (ran, timer) = (ran.clone(), timer.clone());
        move || {
            ran.push(("timer", std::thread::current().id()));
            let _ = timer.set_result(());
        }
    })
    .expect("call_later");
    let task = lp
        .spawn({
            let ran = ran.clone();
            async move {
                ran.push(("task step", std::thread::current().id()));
                oneloop::sleep(Duration::from_millis(2))
                    .await
                    .expect("sleep");
                ran.push(("task step", std::thread::current().id()));
            }
        })
        .expect("spawn");
    let remote = lp.remote();
    let ran2 = ran.clone();
    let tid = crate::support::current_tid();
    // Each arrives once the host thread is idle in its own wait, so that it
    // has to wake it.
    let other = std::thread::spawn(move || {
        let known = super::wait_for_loop_asleep(tid);
        remote
            .call_soon_threadsafe(move || ran2.push(("threadsafe", std::thread::current().id())))
            .expect("call_soon_threadsafe");
        let known = super::wait_for_loop_asleep(tid) && known;
        ours.write_all(b"x").expect("write");
        (ours, known)
    });
    env.run_until(async {
        let _ = (soon.await, timer.await, task.await, read_done.await);
    });
    let (_ours, known) = other.join().expect("the writer thread");
    if !known {
        env.skip_part(super::ASLEEP_UNKNOWN);
    }
    env.run_until_true(|| ran.get().iter().any(|(w, _)| *w == "threadsafe"));
    assert!(lp.remove_reader(&reader_fd));
    let ran = ran.get();
    assert_eq!(ran.len(), 6, "callbacks lost or doubled: {ran:?}");
    for (what, thread) in &ran {
        assert_eq!(
            *thread, host_thread,
            "the {what} callback ran off the host thread"
        );
    }

    // Signals belong to the host (SG-07).
    match lp.add_signal_handler(SIGUSR1, || {}) {
        Err(e) if e.kind() == ErrorKind::Unsupported => {}
        other => panic!("add_signal_handler in guest mode: expected Unsupported, got {other:?}"),
    }

    // stop() is not supported: it says so, and the loop goes on.
    lp.stop();
    let after_stop = lp.create_future::<()>();
    lp.call_soon({
        let f = after_stop.clone();
        move || {
            let _ = f.set_result(());
        }
    })
    .expect("call_soon after stop()");
    env.run_until(after_stop)
        .expect("the loop ran on after stop()");
    assert!(lp.is_running(), "stop() stopped a guest loop");
    let reports = env.take_reports();
    assert!(
        reports.len() == 1 && reports[0].contains("stop()"),
        "stop() in guest mode must be reported as unsupported, once: {reports:?}"
    );

    // A guest run, from start to the done callback.
    lp.close().expect("close the first guest loop");
    guest_run_lifecycle(env, host_thread);
}

/// The part of EM-09 about a guest run's lifecycle, on a host thread that
/// runs no loop any more.
fn guest_run_lifecycle(env: &Env, host_thread: ThreadId) {
    let host = env.shared_host().expect("a HostDriver");
    let guest = host.guest().unwrap_or_else(|| {
        panic!(
            "{} declares guest mode but its HostDriver has no GuestDriver",
            env.spec().name
        )
    });
    let main_ran = Rc::new(Cell::new(false));
    let asleep_known = Rc::new(Cell::new(true));
    let nested_start = Rc::new(RefCell::new(None));
    let ended: Rc<RefCell<Vec<(GuestEnd, ThreadId, bool)>>> = Rc::default();
    let run_loop: Rc<RefCell<Option<Loop>>> = Rc::default();
    let lp = guest
        .start_run(
            Box::new({
                let (main_ran, nested_start) = (main_ran.clone(), nested_start.clone());
                let asleep_known = asleep_known.clone();
                let host = host.clone();
                move |lp: Loop| {
                    Box::pin(async move {
                        // Work that needs the helper thread: a timer, and
                        // a wake from another thread.
                        oneloop::sleep(Duration::from_millis(2))
                            .await
                            .expect("sleep");
                        let woken = Signal::new();
                        let w = woken.clone();
                        let remote = lp.remote();
                        let tid = crate::support::current_tid();
                        let waker = std::thread::spawn(move || {
                            // Once the host thread waits, idle.
                            let known = super::wait_for_loop_asleep(tid);
                            remote
                                .call_soon_threadsafe(move || w.set(()))
                                .expect("call_soon_threadsafe");
                            known
                        });
                        woken.await;
                        asleep_known.set(waker.join().expect("the waking thread"));
                        // A second guest run while this one runs is refused.
                        *nested_start.borrow_mut() = Some(
                            host.guest()
                                .expect("the GuestDriver")
                                .start_run(Box::new(|_| Box::pin(async {})), Box::new(|_| {}))
                                .map(drop)
                                .map_err(|e| e.kind()),
                        );
                        main_ran.set(true);
                    })
                }
            }),
            Box::new({
                let (ended, run_loop) = (ended.clone(), run_loop.clone());
                move |end: GuestEnd| {
                    let closed = run_loop.borrow().as_ref().is_some_and(Loop::is_closed);
                    ended
                        .borrow_mut()
                        .push((end, std::thread::current().id(), closed));
                }
            }),
        )
        .expect("start a guest run");
    *run_loop.borrow_mut() = Some(lp.clone());
    // Another run on this thread while it runs: refused.
    match guest.start_run(Box::new(|_| Box::pin(async {})), Box::new(|_| {})) {
        Err(e) if e.kind() == ErrorKind::AlreadyRunning => {}
        other => panic!(
            "a second guest run on a host thread: expected AlreadyRunning, got {:?}",
            other.map(drop)
        ),
    }
    let deadline = Instant::now() + env.deadline();
    while ended.borrow().is_empty() && Instant::now() < deadline {
        host.iterate(true);
    }
    let ended = ended.borrow();
    assert_eq!(
        ended.len(),
        1,
        "the done callback did not fire (once) within {:?}",
        env.deadline()
    );
    let (end, thread, closed) = &ended[0];
    assert!(main_ran.get(), "the main future did not run to its end");
    if !asleep_known.get() {
        env.skip_part(super::ASLEEP_UNKNOWN);
    }
    assert_eq!(
        *nested_start.borrow(),
        Some(Err(ErrorKind::AlreadyRunning)),
        "guest mode asked from inside a running loop must fail with AlreadyRunning"
    );
    end.outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("the guest run ended with {e}"));
    assert_eq!(
        *thread, host_thread,
        "the done callback ran off the host thread"
    );
    assert!(
        *closed && end.cleaned_up,
        "the done callback fired before full cleanup (loop closed: {closed}, helper threads joined: {})",
        end.cleaned_up
    );
}

/// SIGUSR1 on Linux (any catchable signal would do).
const SIGUSR1: i32 = 10;
