//! Attached mode: the loop lives inside a tokio program's `LocalSet` or
//! `LocalRuntime`; it never blocks, answers `AlreadyRunning` to `run_*`,
//! and detaches cleanly on close or drop while the host keeps running.

mod util;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use oneloop::ErrorKind;
use util::{Watchdog, in_local_set, tokio_host};

#[test]
fn lifecycle_attach_work_close_and_the_local_set_goes_on() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        assert!(lp.is_attached());
        assert!(lp.is_running());
        assert_eq!(lp.backend_name(), "tokio");
        assert_eq!(
            lp.run_forever().unwrap_err().kind(),
            ErrorKind::AlreadyRunning
        );
        assert_eq!(
            lp.run_until_complete(async {}).unwrap_err().kind(),
            ErrorKind::AlreadyRunning
        );
        assert_eq!(oneloop::get_running_loop().unwrap(), lp);

        // Work of every kind, awaited from tokio code.
        let log = Rc::new(RefCell::new(Vec::new()));
        let (l1, l2) = (log.clone(), log.clone());
        lp.call_soon(move || l1.borrow_mut().push("soon")).unwrap();
        let start = Instant::now();
        let timer = lp.create_future::<()>();
        {
            let timer = timer.clone();
            lp.call_later(Duration::from_millis(15), move || {
                l2.borrow_mut().push("timer");
                let _ = timer.set_result(());
            })
            .unwrap();
        }
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let b = Rc::new(b);
        let fd_seen = lp.create_future::<()>();
        {
            let (b2, seen, lp2) = (b.clone(), fd_seen.clone(), lp.clone());
            lp.add_reader(&*b, move || {
                let mut buf = [0u8; 4];
                let _ = (&*b2).read(&mut buf);
                lp2.remove_reader(&*b2);
                let _ = seen.set_result(());
            })
            .unwrap();
        }
        a.write_all(b"x").unwrap();
        let remote = lp.remote();
        let from_thread = lp.create_future::<u32>();
        let tx = from_thread.clone();
        let (ttx, trx) = std::sync::mpsc::channel();
        let tid = util::current_tid();
        thread::spawn(move || {
            // Arrive while the host is parked, not before it ran.
            util::wait_until_asleep(tid, Instant::now() + util::LIMIT);
            remote
                .call_soon_threadsafe(move || {
                    let _ = ttx.send(());
                })
                .unwrap();
        });
        {
            let lp2 = lp.clone();
            let tx = tx.clone();
            // The threadsafe callback above can't touch !Send futures; a
            // local callback polls for its arrival.
            fn poll_arrival(
                lp: oneloop::Loop,
                rx: std::sync::mpsc::Receiver<()>,
                tx: oneloop::LoopFuture<u32>,
            ) {
                if rx.try_recv().is_ok() {
                    let _ = tx.set_result(7);
                } else {
                    let lp2 = lp.clone();
                    let _ =
                        lp.call_later(Duration::from_millis(1), move || poll_arrival(lp2, rx, tx));
                }
            }
            poll_arrival(lp2, trx, tx);
        }
        let task = lp
            .spawn(async {
                oneloop::sleep(Duration::from_millis(2))
                    .await
                    .map(|_| "task")
            })
            .unwrap();
        assert_eq!(task.await.unwrap().unwrap(), "task");
        fd_seen.await.unwrap();
        timer.await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(15),
            "timer fired early"
        );
        assert_eq!(from_thread.await.unwrap(), 7);
        assert_eq!(*log.borrow(), ["soon", "timer"]);

        // Close: detaches; the loop refuses work; the LocalSet goes on.
        let late = Rc::new(Cell::new(false));
        {
            let late = late.clone();
            lp.call_later(Duration::from_millis(5), move || late.set(true))
                .unwrap();
        }
        lp.close().unwrap();
        assert!(lp.is_closed());
        assert!(!lp.is_running());
        assert_eq!(lp.call_soon(|| ()).unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(
            lp.remote().call_soon_threadsafe(|| ()).unwrap_err().kind(),
            ErrorKind::Closed
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!late.get(), "a callback ran after close");
        let still = tokio::task::spawn_local(async { "tokio goes on" })
            .await
            .unwrap();
        assert_eq!(still, "tokio goes on");

        // A new loop can attach to the same LocalSet.
        let again = oneloop_tokio::attach().unwrap();
        let t = again.spawn(async { 1 + 1 }).unwrap();
        assert_eq!(t.await.unwrap(), 2);
        again.close().unwrap();
    });
}

#[test]
fn dropping_an_attached_loop_detaches_it() {
    in_local_set(async {
        let ran = Rc::new(Cell::new(false));
        {
            let lp = oneloop_tokio::attach().unwrap();
            let r1 = ran.clone();
            lp.call_later(Duration::from_millis(5), move || r1.set(true))
                .unwrap();
            let (_a, b) = UnixStream::pair().unwrap();
            let r2 = ran.clone();
            lp.add_writer(&b, move || r2.set(true)).unwrap();
            // `lp` and `b` dropped here, in that order.
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!ran.get());
        // The thread is free for a new loop.
        let lp = oneloop_tokio::attach().unwrap();
        lp.close().unwrap();
    });
}

#[test]
fn second_loop_on_the_same_thread_is_refused() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        let err = oneloop_tokio::attach().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
        lp.close().unwrap();
    });
}

#[test]
fn works_on_a_local_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(Default::default())
        .unwrap();
    rt.block_on(async {
        let lp = oneloop_tokio::attach().unwrap();
        let t = lp
            .spawn(async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                oneloop::sleep(Duration::from_millis(2)).await.unwrap();
                "local runtime"
            })
            .unwrap();
        let out = tokio::time::timeout(util::LIMIT, t)
            .await
            .expect("watchdog");
        assert_eq!(out.unwrap(), "local runtime");
        lp.close().unwrap();
    });
}

#[test]
fn panics_in_callbacks_reach_the_exception_handler_not_tokio() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        let reports = Rc::new(RefCell::new(Vec::new()));
        {
            let reports = reports.clone();
            lp.set_exception_handler(Some(
                move |_: &oneloop::Loop, ctx: &oneloop::ExceptionContext| {
                    reports
                        .borrow_mut()
                        .push(ctx.panic_message().unwrap_or("").to_owned());
                },
            ));
        }
        lp.call_soon(|| panic!("boom")).unwrap();
        let after = lp.create_future::<()>();
        {
            let after = after.clone();
            lp.call_soon(move || {
                let _ = after.set_result(());
            })
            .unwrap();
        }
        after.await.unwrap();
        assert_eq!(*reports.borrow(), ["boom"]);
        // The driver survived: more work still runs.
        let t = lp.spawn(async { 3 }).unwrap();
        assert_eq!(t.await.unwrap(), 3);
        lp.close().unwrap();
    });
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    // No runtime at all.
    assert_eq!(
        oneloop_tokio::attach().unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    // A runtime but no LocalSet.
    let (rt, _local) = tokio_host();
    let err = rt.block_on(async { oneloop_tokio::attach().unwrap_err() });
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    // An owned loop run inside another runtime's async context.
    rt.block_on(async {
        let lp = oneloop_tokio::new_loop().unwrap();
        lp.call_soon(|| ()).unwrap();
        let err = lp.run_forever().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        // Dropped here, inside the runtime: must not panic either.
    });
}

#[test]
fn owned_threadsafe_call_wakes_an_idle_loop() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let remote = lp.remote();
    let tid = util::current_tid();
    let t = thread::spawn(move || {
        // Only once the loop is idle, parked in tokio with nothing to do.
        let asleep = util::wait_until_asleep(tid, Instant::now() + util::LIMIT);
        remote.stop().unwrap();
        asleep
    });
    lp.run_forever().unwrap();
    let asleep = t.join().unwrap();
    dog.assert_not_fired("threadsafe wake");
    assert_ne!(asleep, Some(false), "the loop never went idle");
}
