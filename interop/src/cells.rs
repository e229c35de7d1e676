//! The columns of the matrix: one body each, run on every mode.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use oneloop::{ErrorKind, Loop};
use oneloop_conformance::Env;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::Guest;

/// The columns, in report order.
pub static GUESTS: &[Guest] = &[
    Guest {
        name: "oneloop callbacks, timers, tasks, streams",
        needs_host: false,
        run: oneloop_own,
    },
    Guest {
        name: "tokio libraries (bridge): net, time, sync, spawn_local",
        needs_host: false,
        run: tokio_libraries,
    },
    Guest {
        name: "tokio I/O in a cancelled task",
        needs_host: false,
        run: tokio_cancelled,
    },
    Guest {
        name: "host-native code side by side",
        needs_host: true,
        run: host_native,
    },
];

/// Spawn `body` as a oneloop task (so it runs inside the loop's batches,
/// whatever the mode) and drive the loop until it is done.
fn run_task<T: 'static>(env: &Env, body: impl Future<Output = T> + 'static) -> T {
    let task = env.lp().spawn(body).expect("spawn on a fresh loop");
    env.run_until(task).expect("the task failed")
}

fn oneloop_own(env: &Env) {
    let lp = env.lp().clone();
    let order = Rc::new(RefCell::new(Vec::new()));
    let push = |n| {
        let order = order.clone();
        move || order.borrow_mut().push(n)
    };
    lp.call_later(Duration::from_millis(2), push(3)).unwrap();
    lp.call_soon(push(1)).unwrap();
    lp.call_soon(push(2)).unwrap();
    let echoed = run_task(env, async move {
        let lp = oneloop::get_running_loop().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut a, mut b) = (
            lp.adopt_stream(a).await.unwrap(),
            lp.adopt_stream(b).await.unwrap(),
        );
        a.write_all(b"ping").await.unwrap();
        let mut got = [0; 4];
        b.read_exact(&mut got).await.unwrap();
        oneloop::sleep(Duration::from_millis(3)).await.unwrap();
        got
    });
    assert_eq!(&echoed, b"ping");
    assert_eq!(*order.borrow(), [1, 2, 3]);
}

/// tokio's I/O, timers, channels and `spawn_local`, inside oneloop tasks and
/// callbacks; every result is delivered on the loop's thread.
fn tokio_libraries(env: &Env) {
    let lp = env.lp().clone();
    oneloop_tokio::enable(&lp).unwrap();
    assert!(oneloop_tokio::is_enabled(&lp));
    let loop_thread = std::thread::current().id();
    // A callback (not a task) may spawn tokio local tasks too.
    let from_callback = Rc::new(Cell::new(false));
    lp.call_soon({
        let flag = from_callback.clone();
        move || {
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                flag.set(true);
            });
        }
    })
    .unwrap();
    let (threads, slept, echoed, from_thread) = run_task(env, async move {
        let mut threads: Vec<ThreadId> = Vec::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::task::spawn_local(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            std::thread::current().id()
        });
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        threads.push(std::thread::current().id());
        c.write_all(b"hello").await.unwrap();
        let mut back = vec![0; 5];
        c.read_exact(&mut back).await.unwrap();
        threads.push(std::thread::current().id());
        threads.push(server.await.unwrap());
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let slept = start.elapsed();
        threads.push(std::thread::current().id());
        // A value sent from another thread through a tokio channel.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        std::thread::spawn(move || tx.blocking_send(42).unwrap());
        let from_thread = rx.recv().await;
        threads.push(std::thread::current().id());
        (threads, slept, back, from_thread)
    });
    assert!(
        threads.iter().all(|t| *t == loop_thread),
        "a result was delivered off the loop thread"
    );
    assert!(
        slept >= Duration::from_millis(10),
        "tokio::time::sleep returned early: {slept:?}"
    );
    assert_eq!(echoed, b"hello");
    assert_eq!(from_thread, Some(42));
    env.run_until_true(|| from_callback.get());
}

/// A task cancelled while it awaits tokio I/O drops it: the listener it
/// owned is closed (connecting is refused) and the loop goes on.
fn tokio_cancelled(env: &Env) {
    let lp = env.lp().clone();
    oneloop_tokio::enable(&lp).unwrap();
    let addr = Rc::new(Cell::new(None));
    let task = lp
        .spawn({
            let addr = addr.clone();
            async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr.set(Some(listener.local_addr().unwrap()));
                let _ = listener.accept().await;
                unreachable!("nobody connects");
            }
        })
        .unwrap();
    env.run_until_true(|| addr.get().is_some());
    assert!(task.cancel());
    let err = env.run_until(task).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let addr = addr.get().unwrap();
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The bridge still works after the cancellation.
    let n = run_task(env, async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        7
    });
    assert_eq!(n, 7);
}

/// The host's own callbacks and timers interleave with oneloop's on one
/// thread.
fn host_native(env: &Env) {
    let host = env.host().expect("the mode has a host (Guest::needs_host)");
    let lp: Loop = env.lp().clone();
    let log = Rc::new(RefCell::new(Vec::new()));
    let thread = std::thread::current().id();
    let mark = |what: &'static str| {
        let log = log.clone();
        move || {
            assert_eq!(std::thread::current().id(), thread);
            log.borrow_mut().push(what)
        }
    };
    host.post(Box::new(mark("host post")));
    host.add_timeout(Duration::from_millis(2), Box::new(mark("host timer")));
    lp.call_soon(mark("oneloop call_soon")).unwrap();
    lp.call_later(Duration::from_millis(2), mark("oneloop timer"))
        .unwrap();
    env.run_until_true(|| log.borrow().len() == 4);
    let log = log.borrow();
    for what in [
        "host post",
        "host timer",
        "oneloop call_soon",
        "oneloop timer",
    ] {
        assert!(log.contains(&what), "{what} never ran: {log:?}");
    }
}
