//! fd watching on the smol backend: level-triggered callbacks over
//! async-io's oneshot registrations, one registration per fd, the user's
//! blocking mode left alone, synchronous deregistration.

mod support;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::Async;
use oneloop::Loop;
use oneloop_smol::SmolBackend;
use rustix::fs::{OFlags, fcntl_getfl};
use support::{host_run, run_owned};

fn owned() -> Loop {
    Loop::with_backend(SmolBackend::new().unwrap()).unwrap()
}

/// Run an owned loop until `pred` holds, re-checking after every iteration.
fn run_until(lp: &Loop, pred: impl Fn() -> bool) {
    run_owned(
        lp,
        std::future::poll_fn(|cx| {
            if pred() {
                std::task::Poll::Ready(())
            } else {
                let w = cx.waker().clone();
                lp.call_soon(move || w.wake()).unwrap();
                std::task::Poll::Pending
            }
        }),
    );
}

#[test]
fn a_reader_that_does_not_read_is_called_again_and_again() {
    let lp = owned();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"x").unwrap();
    let calls = Rc::new(Cell::new(0));
    lp.add_reader(&b, {
        let calls = calls.clone();
        move || calls.set(calls.get() + 1)
    })
    .unwrap();
    run_until(&lp, || calls.get() >= 5);
    assert!(lp.remove_reader(&b));
    let seen = calls.get();
    // With the reader removed, the still-readable fd calls nothing.
    lp.run_until_complete(oneloop::sleep(Duration::from_millis(5)))
        .unwrap()
        .unwrap();
    assert_eq!(calls.get(), seen);
    lp.close().unwrap();
}

#[test]
fn a_reader_that_drains_is_called_once_per_write() {
    let lp = owned();
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let got = Rc::new(RefCell::new(Vec::new()));
    let calls = Rc::new(Cell::new(0));
    lp.add_reader(&*b, {
        let (got, calls, b) = (got.clone(), calls.clone(), b.clone());
        move || {
            calls.set(calls.get() + 1);
            let mut buf = [0u8; 16];
            while let Ok(n) = (&*b).read(&mut buf) {
                got.borrow_mut().extend_from_slice(&buf[..n]);
            }
        }
    })
    .unwrap();
    a.write_all(b"one").unwrap();
    run_until(&lp, || got.borrow().len() == 3);
    // Drained: nothing more until the next write.
    lp.run_until_complete(oneloop::sleep(Duration::from_millis(5)))
        .unwrap()
        .unwrap();
    assert_eq!(calls.get(), 1);
    a.write_all(b"two").unwrap();
    run_until(&lp, || got.borrow().len() == 6);
    assert_eq!(&*got.borrow(), b"onetwo");
    assert_eq!(calls.get(), 2);
    lp.close().unwrap();
}

#[test]
fn the_users_fd_keeps_its_blocking_mode() {
    let lp = owned();
    let (a, b) = UnixStream::pair().unwrap();
    assert!(!fcntl_getfl(&b).unwrap().contains(OFlags::NONBLOCK));
    lp.add_reader(&b, || ()).unwrap();
    lp.add_writer(&b, || ()).unwrap();
    assert!(
        !fcntl_getfl(&b).unwrap().contains(OFlags::NONBLOCK),
        "watching the fd made it non-blocking"
    );
    lp.remove_reader(&b);
    lp.remove_writer(&b);
    // And a non-blocking one stays non-blocking.
    a.set_nonblocking(true).unwrap();
    lp.add_reader(&a, || ()).unwrap();
    assert!(fcntl_getfl(&a).unwrap().contains(OFlags::NONBLOCK));
    lp.close().unwrap();
}

#[test]
fn reader_and_writer_can_swap_inside_their_callbacks() {
    let lp = owned();
    let (mut a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    let log = Rc::new(RefCell::new(Vec::new()));
    // The writer fires at once (a fresh socket is writable) and hands over
    // to a reader, which hands back to the writer: the TLS-handshake dance.
    lp.add_writer(&*b, {
        let (lp, log, b2) = (lp.clone(), log.clone(), b.clone());
        move || {
            log.borrow_mut().push("w");
            lp.remove_writer(&*b2);
            let (lp2, log, b3) = (lp.clone(), log.clone(), b2.clone());
            lp.add_reader(&*b2, move || {
                log.borrow_mut().push("r");
                let mut byte = [0u8];
                (&*b3).read_exact(&mut byte).unwrap();
                lp2.remove_reader(&*b3);
            })
            .unwrap();
        }
    })
    .unwrap();
    run_until(&lp, || log.borrow().len() == 1);
    a.write_all(b"!").unwrap();
    run_until(&lp, || log.borrow().len() == 2);
    assert_eq!(*log.borrow(), ["w", "r"]);
    assert_eq!(lp.stats().fds, 0);
    lp.close().unwrap();
}

#[test]
fn a_watched_fd_leaves_the_reactor_to_host_code() {
    let lp = owned();
    let (a, b) = UnixStream::pair().unwrap();
    let hits = Rc::new(Cell::new(0));
    lp.add_reader(&b, {
        let hits = hits.clone();
        move || hits.set(hits.get() + 1)
    })
    .unwrap();
    // oneloop watches its fds in its own selector, not in async-io's
    // reactor (which holds one registration per fd), so async-io code of
    // the host can still register the same fd...
    let host = Async::new_nonblocking(b.as_fd());
    assert!(
        host.is_ok(),
        "the loop took the reactor's registration of the fd"
    );
    // ...and both see it.
    (&a).write_all(b"!").unwrap();
    run_until(&lp, || hits.get() > 0);
    let polled = futures_lite::future::block_on(host.unwrap().readable());
    assert!(polled.is_ok());
    assert!(lp.remove_reader(&b));
    assert_eq!(lp.stats().fds, 0);
    lp.close().unwrap();
}

#[test]
fn peer_hang_up_reaches_the_reader_as_eof() {
    let lp = owned();
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let eof = Rc::new(Cell::new(false));
    lp.add_reader(&*b, {
        let (eof, lp, b2) = (eof.clone(), lp.clone(), b.clone());
        move || {
            let mut buf = [0u8; 8];
            if let Ok(0) = (&*b2).read(&mut buf) {
                eof.set(true);
                lp.remove_reader(&*b2);
            }
        }
    })
    .unwrap();
    drop(a);
    run_until(&lp, || eof.get());
    lp.close().unwrap();
}

#[test]
fn attached_loop_watches_fds_through_the_host() {
    let ex = LocalExecutor::new();
    let lp = Loop::with_backend(SmolBackend::attach(&ex).unwrap()).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let fut = lp.create_future::<Vec<u8>>();
    lp.add_reader(&*b, {
        let (fut, lp, b2) = (fut.clone(), lp.clone(), b.clone());
        move || {
            let mut buf = [0u8; 8];
            let n = (&*b2).read(&mut buf).unwrap();
            lp.remove_reader(&*b2);
            let _ = fut.set_result(buf[..n].to_vec());
        }
    })
    .unwrap();
    a.write_all(b"hey").unwrap();
    assert_eq!(host_run(&ex, fut).unwrap(), b"hey");
    lp.close().unwrap();
}
