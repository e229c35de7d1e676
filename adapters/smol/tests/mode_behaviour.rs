//! Owned and attached modes of the smol backend: who runs the loop, how
//! it wakes, how it shares the thread with executor tasks, how it ends.

mod support;

use std::cell::{Cell, RefCell};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use oneloop::{ErrorKind, Loop};
use oneloop_smol::SmolBackend;
use support::{Watchdog, host_run, run_owned};

#[test]
fn owned_loop_runs_callbacks_timers_tasks_and_stops() {
    let lp = Loop::with_backend(SmolBackend::new().unwrap()).unwrap();
    assert!(!lp.is_attached());
    assert!(!lp.is_running());
    assert_eq!(lp.backend_name(), "smol");
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        lp.call_soon(move || log.borrow_mut().push(i)).unwrap();
    }
    let when = lp.time() + Duration::from_millis(5);
    let late = Rc::new(Cell::new(None));
    lp.call_at(when, {
        let (lp, log, late) = (lp.clone(), log.clone(), late.clone());
        move || {
            late.set(Some(lp.time().checked_duration_since(when)));
            log.borrow_mut().push(99);
            lp.stop();
        }
    })
    .unwrap();
    let dog = Watchdog::stop_loop(&lp, support::LIMIT);
    lp.run_forever().unwrap();
    assert!(!dog.fired(), "run_forever missed the timer");
    assert_eq!(*log.borrow(), [0, 1, 2, 99]);
    assert!(
        late.get().unwrap().is_some(),
        "the timer fired before its deadline"
    );
    assert!(!lp.is_running());

    // A second run, ended by another thread.
    let remote = lp.remote();
    let t = std::thread::spawn(move || remote.stop());
    lp.run_forever().unwrap();
    t.join().unwrap().unwrap();
    drop(dog);

    let out = run_owned(&lp, async {
        Timer::after(Duration::from_millis(2)).await;
        oneloop::sleep(Duration::from_millis(2)).await.unwrap();
        5
    });
    assert_eq!(out, 5);
    lp.close().unwrap();
    assert_eq!(lp.call_soon(|| ()).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn attached_loop_counts_as_running_and_refuses_run() {
    let ex = LocalExecutor::new();
    let lp = Loop::with_backend(SmolBackend::attach(&ex).unwrap()).unwrap();
    assert!(lp.is_attached());
    assert!(lp.is_running());
    let e = lp.run_forever().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyRunning);
    assert!(e.to_string().contains("smol"), "{e}");
    let e = lp.run_until_complete(async {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyRunning);
    // Refused, not lost: the loop still works through its host.
    let fut = lp.create_future::<u8>();
    lp.call_soon({
        let fut = fut.clone();
        move || {
            let _ = fut.set_result(1);
        }
    })
    .unwrap();
    assert_eq!(host_run(&ex, fut).unwrap(), 1);
    lp.close().unwrap();
    assert!(!lp.is_running());
}

#[test]
fn work_created_by_a_host_task_wakes_an_idle_attached_loop() {
    let ex = LocalExecutor::new();
    let lp = Loop::with_backend(SmolBackend::attach(&ex).unwrap()).unwrap();
    let done = lp.create_future::<&str>();
    // The loop is idle: no timers, no fds. A host task (not a oneloop
    // callback) queues work after a host timer.
    ex.spawn({
        let (lp, done) = (lp.clone(), done.clone());
        async move {
            Timer::after(Duration::from_millis(3)).await;
            lp.call_soon(move || {
                let _ = done.set_result("ran");
            })
            .unwrap();
        }
    })
    .detach();
    assert_eq!(host_run(&ex, done).unwrap(), "ran");
    lp.close().unwrap();
}

#[test]
fn closing_an_attached_loop_ends_its_driver_task() {
    let ex = LocalExecutor::new();
    let lp = Loop::with_backend(SmolBackend::attach(&ex).unwrap()).unwrap();
    host_run(&ex, oneloop::sleep(Duration::from_millis(1))).unwrap();
    assert!(!ex.is_empty(), "the driver task lives on the host executor");
    lp.close().unwrap();
    host_run(&ex, async {
        while !ex.is_empty() {
            futures_lite::future::yield_now().await;
        }
    });
}

#[test]
fn dropping_an_attached_loop_ends_its_driver_task() {
    let ex = LocalExecutor::new();
    let (backend, driver) = SmolBackend::attached().unwrap();
    let task = ex.spawn(driver);
    let lp = Loop::with_backend(backend).unwrap();
    host_run(&ex, oneloop::sleep(Duration::from_millis(1))).unwrap();
    drop(lp);
    host_run(&ex, task);
}

#[test]
fn threads_wake_an_idle_loop_in_both_modes() {
    // Owned: blocked in the reactor with nothing armed.
    let lp = Loop::with_backend(SmolBackend::new().unwrap()).unwrap();
    let remote = lp.remote();
    let tid = support::current_tid();
    let t = std::thread::spawn(move || {
        // Once the loop is idle in the reactor: the post has to wake it.
        support::wait_until_asleep(tid, Instant::now() + support::LIMIT);
        remote.call_soon_threadsafe(|| ()).unwrap();
        remote.stop().unwrap();
    });
    let dog = Watchdog::stop_loop(&lp, support::LIMIT);
    lp.run_forever().unwrap();
    assert!(!dog.fired(), "call_soon_threadsafe did not wake the loop");
    t.join().unwrap();
    drop(dog);
    lp.close().unwrap();

    // Attached: the host executor is parked in the reactor; 100 posts, in
    // order, each on the loop thread.
    let ex = LocalExecutor::new();
    let lp = Loop::with_backend(SmolBackend::attach(&ex).unwrap()).unwrap();
    let loop_thread = std::thread::current().id();
    let remote = lp.remote();
    let (tx, rx) = futures::channel::oneshot::channel();
    let tid = support::current_tid();
    let t = std::thread::spawn(move || {
        // Once the host executor is parked in the reactor.
        support::wait_until_asleep(tid, Instant::now() + support::LIMIT);
        let seen = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            let seen = seen.clone();
            remote
                .call_soon_threadsafe(move || {
                    assert_eq!(std::thread::current().id(), loop_thread);
                    assert_eq!(seen.fetch_add(1, Ordering::SeqCst), i, "out of order");
                })
                .unwrap();
        }
        remote
            .call_soon_threadsafe(move || tx.send(()).unwrap())
            .unwrap();
        seen
    });
    host_run(&ex, rx).unwrap();
    let seen = t.join().unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 100);
    lp.close().unwrap();
}

#[test]
fn executor_tasks_and_oneloop_callbacks_interleave() {
    let ex = Rc::new(LocalExecutor::new());
    let lp = Loop::with_backend(SmolBackend::with_executor(ex.clone()).unwrap()).unwrap();
    let log = Rc::new(RefCell::new(String::new()));
    // A callback that re-queues itself, and an executor task that yields.
    fn again(lp: Loop, log: Rc<RefCell<String>>, n: u32) {
        log.borrow_mut().push('o');
        if n > 1 {
            let lp2 = lp.clone();
            lp.call_soon(move || again(lp2, log, n - 1)).unwrap();
        }
    }
    lp.call_soon({
        let (lp, log) = (lp.clone(), log.clone());
        move || again(lp, log, 20)
    })
    .unwrap();
    let task = ex.spawn({
        let log = log.clone();
        async move {
            for _ in 0..20 {
                log.borrow_mut().push('x');
                futures_lite::future::yield_now().await;
            }
        }
    });
    run_owned(&lp, task);
    let log = log.borrow();
    assert_eq!(log.matches('x').count(), 20);
    // Neither side runs more than a couple of steps while the other waits.
    let longest = log
        .as_bytes()
        .chunk_by(|a, b| a == b)
        .map(|run| run.len())
        .max()
        .unwrap();
    assert!(longest <= 3, "not interleaved: {log}");
    lp.close().unwrap();
}

#[test]
fn a_self_requeuing_callback_starves_neither_executor_tasks_nor_io() {
    let ex = Rc::new(LocalExecutor::new());
    let lp = Loop::with_backend(SmolBackend::with_executor(ex.clone()).unwrap()).unwrap();
    let spins = Rc::new(Cell::new(0u64));
    fn spin(lp: Loop, spins: Rc<Cell<u64>>) {
        spins.set(spins.get() + 1);
        let lp2 = lp.clone();
        lp.call_soon(move || spin(lp2, spins)).unwrap();
    }
    lp.call_soon({
        let (lp, spins) = (lp.clone(), spins.clone());
        move || spin(lp, spins)
    })
    .unwrap();
    // An executor task waiting on a socket and a timer (reactor events).
    let (a, b) = UnixStream::pair().unwrap();
    let task = ex.spawn(async move {
        let b = Async::new(b).unwrap();
        Timer::after(Duration::from_millis(2)).await;
        std::io::Write::write_all(&mut &a, b"!").unwrap();
        let mut byte = [0u8];
        futures_lite::AsyncReadExt::read_exact(&mut &b, &mut byte)
            .await
            .unwrap();
        byte[0]
    });
    assert_eq!(run_owned(&lp, task), b'!');
    assert!(spins.get() > 0);
    lp.close().unwrap();
}

#[cfg(feature = "async-std")] // `attach_async_std`
#[test]
fn attached_to_async_std_runtime() {
    let started = std::time::Instant::now();
    let out = async_std::task::block_on(async {
        let lp = Loop::with_backend(SmolBackend::attach_async_std().unwrap()).unwrap();
        assert!(lp.is_attached());
        let remote = lp.remote();
        let task = lp
            .spawn(async move {
                async_std::task::sleep(Duration::from_millis(3)).await;
                oneloop::sleep(Duration::from_millis(3)).await?;
                let fut = oneloop::get_running_loop()?.create_future::<u32>();
                let done = fut.clone();
                // A wake from another thread, through the host runtime.
                let lp = oneloop::get_running_loop()?;
                let id = std::thread::spawn(move || {
                    remote.call_soon_threadsafe(|| ()).unwrap();
                })
                .join();
                assert!(id.is_ok());
                lp.call_soon(move || {
                    let _ = done.set_result(9);
                })?;
                fut.await
            })
            .unwrap();
        let out = async_std::future::timeout(support::LIMIT, task)
            .await
            .expect("timed out");
        lp.close().unwrap();
        out
    });
    assert_eq!(out.unwrap().unwrap(), 9);
    assert!(started.elapsed() >= Duration::from_millis(6));
}

#[test]
fn a_dropped_loop_releases_its_fds_at_once() {
    let (a, _b) = UnixStream::pair().unwrap();
    let lp = Loop::with_backend(SmolBackend::new().unwrap()).unwrap();
    lp.add_reader(&a, || ()).unwrap();
    drop(lp);
    // One registration per fd in the reactor: a stale one would make this
    // fail with EEXIST.
    let a = Async::new(a).expect("the fd is still registered");
    drop(a);
}

#[test]
fn a_loop_is_reusable_after_run_until_complete_is_stopped() {
    let lp = Loop::with_backend(SmolBackend::new().unwrap()).unwrap();
    lp.call_later(Duration::from_millis(1), {
        let lp = lp.clone();
        move || lp.stop()
    })
    .unwrap();
    let e = lp
        .run_until_complete(std::future::pending::<()>())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Stopped);
    assert_eq!(run_owned(&lp, async { 3 }), 3);
    lp.close().unwrap();
}

#[test]
fn wakes_from_many_threads_are_never_lost() {
    // Many threads post at once, in both modes: every post runs once, and
    // the loop wakes for the last one (a lost wake would leave it asleep
    // with posts in its inbox, and the watchdog would fire).
    const THREADS: usize = 4;
    const POSTS: usize = 3000;
    for attached in [false, true] {
        let ex = LocalExecutor::new();
        let lp = if attached {
            Loop::with_backend(SmolBackend::attach(&ex).unwrap()).unwrap()
        } else {
            Loop::with_backend(SmolBackend::new().unwrap()).unwrap()
        };
        let count = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let posters: Vec<_> = (0..THREADS)
            .map(|t| {
                let (remote, count, tx) = (lp.remote(), count.clone(), tx.clone());
                std::thread::spawn(move || {
                    for i in 0..POSTS {
                        let (count, tx) = (count.clone(), tx.clone());
                        remote
                            .call_soon_threadsafe(move || {
                                if count.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * POSTS {
                                    let _ = tx.lock().unwrap().take().unwrap().send(());
                                }
                            })
                            .unwrap();
                        if (i + t) % 7 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        if attached {
            host_run(&ex, rx).unwrap();
        } else {
            run_owned(&lp, rx).unwrap();
        }
        for p in posters {
            p.join().unwrap();
        }
        assert_eq!(count.load(Ordering::SeqCst), THREADS * POSTS);
        lp.close().unwrap();
    }
}
