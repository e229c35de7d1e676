//! oneloop and tokio on one thread: tokio I/O next to oneloop fds and timers,
//! oneloop tasks awaiting tokio futures, and fairness between the two.

mod util;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oneloop::Loop;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::{Watchdog, in_local_set};

/// A tokio `TcpListener` echo, a oneloop fd reader and a oneloop timer, all
/// on the loop's thread, all completing.
fn echo_reader_and_timer(lp: &Loop) -> impl std::future::Future<Output = Vec<String>> + 'static {
    let log = Rc::new(RefCell::new(Vec::<String>::new()));
    let me = thread::current().id();

    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let reader_done = lp.create_future::<()>();
    {
        let (log, lp2, b2, done) = (log.clone(), lp.clone(), b.clone(), reader_done.clone());
        lp.add_reader(&*b, move || {
            let mut buf = [0u8; 16];
            let n = (&*b2).read(&mut buf).unwrap();
            assert_eq!(thread::current().id(), me);
            log.borrow_mut()
                .push(format!("fd {}", String::from_utf8_lossy(&buf[..n])));
            assert!(lp2.remove_reader(&*b2));
            let _ = done.set_result(());
        })
        .unwrap();
    }
    let timer_done = lp.create_future::<()>();
    {
        let (log, done) = (log.clone(), timer_done.clone());
        lp.call_later(Duration::from_millis(5), move || {
            assert_eq!(thread::current().id(), me);
            log.borrow_mut().push("timer".into());
            let _ = done.set_result(());
        })
        .unwrap();
    }
    let echo = lp
        .spawn(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::task::spawn_local(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
                thread::current().id()
            });
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(server.await.unwrap(), me);
            String::from_utf8(buf.to_vec()).unwrap()
        })
        .unwrap();
    a.write_all(b"ping").unwrap();
    async move {
        let echoed = echo.await.unwrap();
        reader_done.await.unwrap();
        timer_done.await.unwrap();
        drop(b);
        let mut log = log.take();
        log.sort();
        log.push(format!("echo {echoed}"));
        log
    }
}

const EXPECTED: [&str; 3] = ["fd ping", "timer", "echo hello"];

#[test]
fn owned_tcp_echo_fd_reader_and_timer_on_one_thread() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let work = lp.spawn(echo_reader_and_timer(&lp)).unwrap();
    let log = lp.run_until_complete(work);
    dog.assert_not_fired("owned echo");
    assert_eq!(log.unwrap().unwrap(), EXPECTED);
    lp.close().unwrap();
}

#[test]
fn attached_tcp_echo_fd_reader_and_timer_on_one_thread() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        let log = echo_reader_and_timer(&lp).await;
        assert_eq!(log, EXPECTED);
        lp.close().unwrap();
    });
}

#[test]
fn oneloop_task_awaits_tokio_futures() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let task = lp
        .spawn(async {
            // tokio::time: never early.
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            assert!(
                tokio::time::timeout(Duration::from_millis(5), std::future::pending::<()>())
                    .await
                    .is_err()
            );
            // tokio::sync, woken from another thread.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let tid = util::current_tid();
            let t = thread::spawn(move || {
                // Sent once the loop is parked on `rx`: the send must wake it.
                util::wait_until_asleep(tid, Instant::now() + util::LIMIT);
                tx.send(5).unwrap();
            });
            let five = rx.await.unwrap();
            t.join().unwrap();
            let (mtx, mut mrx) = tokio::sync::mpsc::unbounded_channel();
            for i in 0..3 {
                mtx.send(i).unwrap();
            }
            drop(mtx);
            let mut sum = 0;
            while let Some(i) = mrx.recv().await {
                sum += i;
            }
            // tokio::process.
            let status = tokio::process::Command::new("sh")
                .args(["-c", "exit 3"])
                .status()
                .await
                .unwrap();
            // a tokio task on the same LocalSet.
            let local = tokio::task::spawn_local(async { 10 }).await.unwrap();
            five + sum + status.code().unwrap() + local
        })
        .unwrap();
    let out = lp.run_until_complete(task);
    dog.assert_not_fired("tokio futures");
    assert_eq!(out.unwrap().unwrap(), 5 + 3 + 3 + 10);
}

/// A oneloop callback that re-queues itself forever, and a tokio task that
/// yields forever: each must keep making progress while the other runs.
async fn both_progress(lp: Loop) -> (u64, u64) {
    let soon = Rc::new(Cell::new(0u64));
    let tok = Rc::new(Cell::new(0u64));
    fn again(lp: Loop, n: Rc<Cell<u64>>) {
        n.set(n.get() + 1);
        let lp2 = lp.clone();
        let _ = lp.call_soon(move || again(lp2, n));
    }
    {
        let (lp2, soon) = (lp.clone(), soon.clone());
        lp.call_soon(move || again(lp2, soon)).unwrap();
    }
    let spinner = {
        let tok = tok.clone();
        tokio::task::spawn_local(async move {
            loop {
                tok.set(tok.get() + 1);
                tokio::task::yield_now().await;
            }
        })
    };
    // Wait (in tokio) until the oneloop side did 2000 batches.
    while soon.get() < 2000 {
        tokio::task::yield_now().await;
    }
    let at_soon = tok.get();
    // And until the tokio side did 2000 more yields.
    let target = tok.get() + 2000;
    let before = soon.get();
    while tok.get() < target {
        tokio::task::yield_now().await;
    }
    spinner.abort();
    (at_soon, soon.get() - before)
}

#[test]
fn tokio_tasks_and_oneloop_callbacks_interleave_attached() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        let (tokio_while_oneloop, oneloop_while_tokio) = both_progress(lp.clone()).await;
        // One oneloop batch per driver poll, FIFO with tokio tasks: the two
        // advance about in step; a tenth is a generous lower bound.
        assert!(
            tokio_while_oneloop >= 200,
            "tokio starved: {tokio_while_oneloop}"
        );
        assert!(
            oneloop_while_tokio >= 200,
            "oneloop starved: {oneloop_while_tokio}"
        );
        lp.close().unwrap();
    });
}

#[test]
fn tokio_tasks_and_oneloop_callbacks_interleave_owned() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let task = lp.spawn(both_progress(lp.clone())).unwrap();
    let (tokio_while_oneloop, oneloop_while_tokio) = lp.run_until_complete(task).unwrap().unwrap();
    dog.assert_not_fired("fairness");
    assert!(
        tokio_while_oneloop >= 200,
        "tokio starved: {tokio_while_oneloop}"
    );
    assert!(
        oneloop_while_tokio >= 200,
        "oneloop starved: {oneloop_while_tokio}"
    );
}

/// A oneloop callback storm does not starve tokio's reactor: tokio I/O and
/// a cross-thread oneloop callback still arrive.
#[test]
fn callback_storm_does_not_starve_tokio_io() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        let stop = Rc::new(Cell::new(false));
        let spins = Arc::new(AtomicUsize::new(0));
        fn again(lp: Loop, stop: Rc<Cell<bool>>, spins: Arc<AtomicUsize>) {
            if !stop.get() {
                spins.fetch_add(1, Ordering::Relaxed);
                let lp2 = lp.clone();
                let _ = lp.call_soon(move || again(lp2, stop, spins));
            }
        }
        {
            let (lp2, stop, spins) = (lp.clone(), stop.clone(), spins.clone());
            lp.call_soon(move || again(lp2, stop, spins)).unwrap();
        }
        // tokio I/O, with the data arriving from another thread mid-storm:
        // once the storm has been going for a thousand callbacks.
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut b = tokio::net::UnixStream::from_std(b).unwrap();
        let t = thread::spawn(move || {
            let storming = util::wait_until(Instant::now() + util::LIMIT, || {
                spins.load(Ordering::Relaxed) >= 1000
            });
            a.write_all(b"x").unwrap();
            storming
        });
        let mut buf = [0u8; 1];
        b.read_exact(&mut buf).await.unwrap();
        assert!(t.join().unwrap(), "the callback storm never got going");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let remote = lp.remote();
        thread::spawn(move || {
            remote
                .call_soon_threadsafe(move || tx.send(()).unwrap())
                .unwrap()
        });
        rx.await.unwrap();
        stop.set(true);
        tokio::task::yield_now().await;
        lp.close().unwrap();
    });
}

/// `run_in_executor` on tokio's blocking pool: off the loop thread, result
/// delivered on it.
#[test]
fn run_in_executor_on_tokio_blocking_pool() {
    let backend = oneloop_tokio::TokioBackend::new().unwrap();
    let pool = oneloop_tokio::BlockingExecutor::new(backend.runtime_handle());
    let lp = Loop::with_backend(backend).unwrap();
    lp.set_default_executor(pool);
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let me = thread::current().id();
    let fut = lp
        .run_in_executor(move || {
            assert_ne!(thread::current().id(), me);
            // On a tokio blocking thread, the runtime's context is set.
            tokio::runtime::Handle::try_current().is_ok()
        })
        .unwrap();
    let in_tokio = lp.run_until_complete(fut);
    dog.assert_not_fired("blocking pool");
    assert!(in_tokio.unwrap().unwrap());
}

#[test]
fn run_until_complete_awaits_tokio_futures_directly_in_owned_mode() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let out = lp
        .run_until_complete(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let local = tokio::task::spawn_local(async { 5 });
            local.await.unwrap()
        })
        .unwrap();
    assert_eq!(out, 5);
}

/// Owned: the turn polls the driver only when the driver was woken. A tokio
/// task that yields 200 times wakes the turn 200 times; the driver, which
/// nothing woke, is polled a handful of times (each poll of it is a
/// readiness poll of tokio's and a look at the scheduler).
#[test]
fn local_task_wakes_do_not_poll_the_driver_owned() {
    let backend = oneloop_tokio::TokioBackend::new().unwrap();
    let stats = backend.stats();
    let lp = Loop::with_backend(backend).unwrap();
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let yields = lp
        .run_until_complete(async {
            let task = tokio::task::spawn_local(async {
                for _ in 0..200 {
                    tokio::task::yield_now().await;
                }
                200
            });
            task.await.unwrap()
        })
        .unwrap();
    dog.assert_not_fired("yields");
    assert_eq!(yields, 200);
    assert!(
        stats.polls() < 20,
        "{} driver polls for 200 wakes of a local task",
        stats.polls()
    );
}
