//! async-std and smol code on a oneloop thread: their network and timer
//! futures awaited from oneloop tasks, and an async-std TCP echo server
//! running beside a oneloop fd reader, on one thread.

mod support;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use futures_lite::future::zip;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use oneloop::Loop;
use oneloop_smol::SmolBackend;
use support::run_owned;

fn owned() -> (Loop, Rc<LocalExecutor<'static>>) {
    let ex = Rc::new(LocalExecutor::new());
    let lp = Loop::with_backend(SmolBackend::with_executor(ex.clone()).unwrap()).unwrap();
    (lp, ex)
}

#[test]
fn smol_net_and_timers_inside_a_oneloop_task() {
    let (lp, _ex) = owned();
    let started = Instant::now();
    let task = lp
        .spawn(async {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let server = async {
                let (mut s, _) = listener.accept().await?;
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await?;
                smol::Timer::after(Duration::from_millis(3)).await;
                s.write_all(&buf).await?;
                Ok::<_, std::io::Error>(())
            };
            let client = async {
                let mut c = smol::net::TcpStream::connect(addr).await?;
                c.write_all(b"hello").await?;
                let mut back = Vec::new();
                c.read_to_end(&mut back).await?;
                Ok::<_, std::io::Error>(back)
            };
            // The server closes its end when it drops, ending read_to_end.
            let (s, c) = zip(server, client).await;
            s?;
            c
        })
        .unwrap();
    let back = run_owned(&lp, task).unwrap().unwrap();
    assert_eq!(back, b"hello");
    assert!(started.elapsed() >= Duration::from_millis(3));
    lp.close().unwrap();
}

#[test]
fn async_std_net_and_sleep_inside_a_oneloop_task() {
    let (lp, _ex) = owned();
    let task = lp
        .spawn(async {
            let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let accept = async {
                let (mut s, _) = listener.accept().await?;
                async_std::task::sleep(Duration::from_millis(2)).await;
                s.write_all(b"from async-std").await?;
                Ok::<_, std::io::Error>(())
            };
            let connect = async {
                let mut c = async_std::net::TcpStream::connect(addr).await?;
                let mut got = String::new();
                c.read_to_string(&mut got).await?;
                Ok::<_, std::io::Error>(got)
            };
            let (a, c) = zip(accept, connect).await;
            a?;
            // oneloop's own timer in the same task, after async-std's.
            oneloop::sleep(Duration::from_millis(1))
                .await
                .map_err(std::io::Error::other)?;
            c
        })
        .unwrap();
    assert_eq!(run_owned(&lp, task).unwrap().unwrap(), "from async-std");
    lp.close().unwrap();
}

/// An async-std TCP echo client against `addr`, as a oneloop task's body,
/// while a oneloop reader collects what a thread writes into a socket pair.
/// Returns (what came back from the echo, what the reader read).
async fn echo_beside_a_reader(lp: Loop, addr: SocketAddr) -> (Vec<u8>, Vec<u8>) {
    let thread = std::thread::current().id();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    let rx = Rc::new(rx);
    let lines = Rc::new(RefCell::new(Vec::<u8>::new()));
    let eof = lp.create_future::<()>();
    // How many bytes the reader took, for the feeder on its thread.
    let taken = Arc::new(AtomicUsize::new(0));
    lp.add_reader(&*rx, {
        let (lp, rx, lines, eof) = (lp.clone(), rx.clone(), lines.clone(), eof.clone());
        let taken = taken.clone();
        move || {
            assert_eq!(std::thread::current().id(), thread);
            let mut buf = [0u8; 64];
            while let Ok(n) = (&*rx).read(&mut buf) {
                if n == 0 {
                    lp.remove_reader(&*rx);
                    let _ = eof.set_result(());
                    break;
                }
                lines.borrow_mut().extend_from_slice(&buf[..n]);
                taken.fetch_add(n, Ordering::SeqCst);
            }
        }
    })
    .unwrap();
    // A thread feeds the oneloop reader while the echo runs, one byte per
    // wake-up of the reader: the next byte once the last one was taken.
    let feeder = std::thread::spawn(move || {
        for i in 0..20u8 {
            tx.write_all(&[b'a' + i]).unwrap();
            support::wait_until(Instant::now() + support::LIMIT, || {
                taken.load(Ordering::SeqCst) > usize::from(i)
            });
        }
    });
    let mut c = async_std::net::TcpStream::connect(addr).await.unwrap();
    let mut echoed = Vec::new();
    for round in 0..20u8 {
        c.write_all(&[round; 100]).await.unwrap();
        let mut back = [0u8; 100];
        c.read_exact(&mut back).await.unwrap();
        echoed.extend_from_slice(&back);
    }
    drop(c);
    // The feeder's end closes when it finishes: the reader then sees EOF.
    eof.await.unwrap();
    feeder.join().unwrap();
    let lines = lines.borrow().clone();
    (echoed, lines)
}

fn check(echoed: &[u8], lines: &[u8]) {
    assert_eq!(echoed.len(), 2000);
    for (i, chunk) in echoed.chunks(100).enumerate() {
        assert!(chunk.iter().all(|&b| b == i as u8), "round {i} garbled");
    }
    assert_eq!(lines, b"abcdefghijklmnopqrst");
}

async fn echo(listener: async_std::net::TcpListener) {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = [0u8; 256];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await.unwrap();
    }
}

#[test]
fn async_std_echo_and_a_oneloop_reader_share_one_thread_owned() {
    let (lp, ex) = owned();
    let listener = async_io::block_on(async_std::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    // The echo server is an executor task; the client, a oneloop task.
    let server = ex.spawn(echo(listener));
    let client = lp.spawn(echo_beside_a_reader(lp.clone(), addr)).unwrap();
    let (echoed, lines) = run_owned(&lp, client).unwrap();
    check(&echoed, &lines);
    run_owned(&lp, server);
    lp.close().unwrap();
}

#[cfg(feature = "async-std")] // `attach_async_std`
#[test]
fn async_std_echo_and_a_oneloop_reader_share_one_thread_attached() {
    let (echoed, lines) = async_std::task::block_on(async {
        let lp = Loop::with_backend(SmolBackend::attach_async_std().unwrap()).unwrap();
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        // The echo server is an async-std task on this thread.
        let server = async_std::task::spawn_local(echo(listener));
        let client = lp.spawn(echo_beside_a_reader(lp.clone(), addr)).unwrap();
        let out = async_std::future::timeout(support::LIMIT, client)
            .await
            .expect("timed out")
            .unwrap();
        async_std::future::timeout(support::LIMIT, server)
            .await
            .expect("timed out");
        lp.close().unwrap();
        out
    });
    check(&echoed, &lines);
}
