//! fds through `g_source_add_unix_fd`: level-triggered readiness (FD-01),
//! hang-up reported as readable and writable (FD-07, asyncio-glib #5), and
//! removal stops the source from polling (FD-05).

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use common::iterate_until;
use glib::MainContext;

const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn reader_sees_data_then_eof_on_hangup() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let eof = Rc::new(Cell::new(false));
    let a = Rc::new(a);
    {
        let (got, eof, a2, lp2) = (got.clone(), eof.clone(), a.clone(), lp.clone());
        lp.add_reader(&*a, move || {
            let mut buf = [0u8; 64];
            match (&*a2).read(&mut buf) {
                Ok(0) => {
                    eof.set(true);
                    lp2.remove_reader(&*a2);
                }
                Ok(n) => got.borrow_mut().extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        })
        .unwrap();
    }
    b.write_all(b"hello").unwrap();
    assert!(iterate_until(&ctx, LIMIT, || got.borrow().len() == 5));
    drop(b);
    assert!(iterate_until(&ctx, LIMIT, || eof.get()));
    assert_eq!(&*got.borrow(), b"hello");
    // Removed: nothing is polled any more, the context is idle.
    assert!(!ctx.iteration(false));
    lp.close().unwrap();
}

/// A writer on a socket whose peer is gone is called (hang-up/error maps to
/// writable), so its write sees the error instead of waiting forever.
#[test]
fn writer_is_called_on_peer_hangup() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    // Fill the socket buffer so the fd is not writable.
    let chunk = [0u8; 65536];
    while (&a).write(&chunk).is_ok() {}
    let error = Rc::new(RefCell::new(None));
    let a = Rc::new(a);
    {
        let (error, a2, lp2) = (error.clone(), a.clone(), lp.clone());
        lp.add_writer(&*a, move || match (&*a2).write(b"x") {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                *error.borrow_mut() = Some(e.kind());
                lp2.remove_writer(&*a2);
            }
        })
        .unwrap();
    }
    assert!(!ctx.iteration(false), "a full socket must not be writable");
    drop(b);
    assert!(iterate_until(&ctx, LIMIT, || error.borrow().is_some()));
    assert_eq!(*error.borrow(), Some(std::io::ErrorKind::BrokenPipe));
    lp.close().unwrap();
}

/// Level-triggered: a reader that reads one byte per call is called again
/// while data remains, with no new event.
#[test]
fn readiness_is_level_triggered() {
    let ctx = MainContext::new();
    let lp = oneloop_glib::attach(&ctx).unwrap();
    let _tw = common::tripwire(&lp);
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.write_all(b"abc").unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let a = Rc::new(a);
    {
        let (got, a2) = (got.clone(), a.clone());
        lp.add_reader(&*a, move || {
            let mut one = [0u8; 1];
            if let Ok(1) = (&*a2).read(&mut one) {
                got.borrow_mut().push(one[0]);
            }
        })
        .unwrap();
    }
    assert!(iterate_until(&ctx, LIMIT, || got.borrow().len() == 3));
    assert_eq!(&*got.borrow(), b"abc");
    assert!(lp.remove_reader(&*a));
    lp.close().unwrap();
}

/// EM-06 with an fd: an owned loop that is not running (before its first
/// run, between two), with a reader on an fd that stays readable, must not
/// keep its context busy. The host's own pending-events flush
/// (`while ctx.pending() { ctx.iteration(false) }`) must end, and the
/// reader runs only once the loop runs.
#[test]
fn ready_fd_does_not_keep_the_context_busy_between_runs() {
    use oneloop::Loop;
    use oneloop_glib::GlibBackend;

    fn flush(ctx: &MainContext) -> usize {
        let mut n = 0;
        while ctx.pending() && n < 100 {
            ctx.iteration(false);
            n += 1;
        }
        n
    }

    let ctx = MainContext::new();
    let lp = Loop::with_backend(GlibBackend::owned(&ctx)).unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let calls = Rc::new(Cell::new(0));
    let a = Rc::new(a);
    {
        let (calls, a2, lp2) = (calls.clone(), a.clone(), lp.clone());
        lp.add_reader(&*a, move || {
            calls.set(calls.get() + 1);
            let mut one = [0u8; 1];
            let _ = (&*a2).read(&mut one);
            lp2.stop();
        })
        .unwrap();
    }
    for round in 1..=2 {
        // Before the first run, then between the two: the fd is readable
        // and registered.
        b.write_all(b"x").unwrap();
        assert!(
            flush(&ctx) < 100,
            "a ready fd of a loop that is not running keeps its context busy (round {round})"
        );
        assert_eq!(
            calls.get(),
            round - 1,
            "host iteration outside a run ran a reader"
        );
        // The next run serves it.
        lp.run_forever().unwrap();
        assert_eq!(calls.get(), round);
    }
    assert!(lp.remove_reader(&*a));
    lp.close().unwrap();
}
