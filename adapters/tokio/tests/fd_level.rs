//! asyncio's level-triggered `add_reader`/`add_writer` on tokio's
//! edge-triggered `AsyncFd`: partial reads are reported again, a drained fd
//! is not, and a new edge after a clear is never lost. Both modes.

mod util;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use oneloop::Loop;
use util::{Watchdog, in_local_set};

/// Run `n` more scheduler iterations (a callback re-queued `n` times), then
/// resolve. Works in both modes.
async fn iterations(lp: &Loop, n: u32) {
    let done = lp.create_future::<()>();
    fn step(lp: Loop, left: u32, done: oneloop::LoopFuture<()>) {
        if left == 0 {
            let _ = done.set_result(());
        } else {
            let lp2 = lp.clone();
            let _ = lp.call_soon(move || step(lp2, left - 1, done));
        }
    }
    step(lp.clone(), n, done.clone());
    done.await.unwrap();
}

/// The scenario: 3 bytes read one per callback, then silence, then one more.
async fn level_scenario(lp: Loop) {
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let calls = Rc::new(Cell::new(0u32));
    let got = Rc::new(RefCell::new(Vec::new()));
    {
        let (b2, calls, got) = (b.clone(), calls.clone(), got.clone());
        lp.add_reader(&*b, move || {
            calls.set(calls.get() + 1);
            let mut one = [0u8; 1];
            // Read only part of what is there: the rest must be reported again.
            if let Ok(1) = (&*b2).read(&mut one) {
                got.borrow_mut().push(one[0]);
            }
        })
        .unwrap();
    }
    a.write_all(b"abc").unwrap();
    // Reported on consecutive iterations until drained.
    while got.borrow().len() < 3 {
        iterations(&lp, 1).await;
    }
    assert_eq!(*got.borrow(), b"abc");
    let after_drain = calls.get();
    // Drained: 50 more iterations must not call the reader (no spinning on
    // a stale flag). One extra call is allowed: the iteration in which the
    // third byte was read may already have queued the next report.
    iterations(&lp, 50).await;
    assert!(
        calls.get() <= after_drain + 1,
        "reader called {} times on a drained fd",
        calls.get() - after_drain
    );
    // A new edge after the clear is seen.
    a.write_all(b"d").unwrap();
    while got.borrow().len() < 4 {
        iterations(&lp, 1).await;
    }
    assert_eq!(*got.borrow(), b"abcd");
    assert!(lp.remove_reader(&*b));
    a.write_all(b"e").unwrap();
    iterations(&lp, 20).await;
    assert_eq!(got.borrow().len(), 4, "removed reader ran");
}

/// A writer on an always-writable fd runs every iteration; after
/// `remove_writer` the loop goes idle.
async fn writer_scenario(lp: Loop) {
    let (_a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    let calls = Rc::new(Cell::new(0u32));
    {
        let calls = calls.clone();
        lp.add_writer(&*b, move || calls.set(calls.get() + 1))
            .unwrap();
    }
    iterations(&lp, 30).await;
    assert!(
        calls.get() >= 20,
        "writer ran {} times in 30 iterations",
        calls.get()
    );
    assert!(lp.remove_writer(&*b));
    let at = calls.get();
    iterations(&lp, 30).await;
    assert!(calls.get() <= at + 1, "removed writer kept running");
    // Reader and writer on one fd share one registration; switching them
    // from inside their own callbacks works (the TLS handshake pattern).
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let log = Rc::new(RefCell::new(Vec::new()));
    {
        let (lp2, b2, log) = (lp.clone(), b.clone(), log.clone());
        lp.add_writer(&*b, move || {
            log.borrow_mut().push("w");
            lp2.remove_writer(&*b2);
            let (b3, log) = (b2.clone(), log.clone());
            lp2.add_reader(&*b2, move || {
                let mut buf = [0u8; 8];
                let _ = (&*b3).read(&mut buf);
                log.borrow_mut().push("r");
            })
            .unwrap();
        })
        .unwrap();
    }
    iterations(&lp, 5).await;
    a.write_all(b"x").unwrap();
    while log.borrow().len() < 2 {
        iterations(&lp, 1).await;
    }
    assert_eq!(*log.borrow(), ["w", "r"]);
    assert!(lp.remove_reader(&*b));
}

#[test]
fn level_triggered_owned() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let t = lp.spawn(level_scenario(lp.clone())).unwrap();
    let level = lp.run_until_complete(t);
    dog.assert_not_fired("level-triggered reader");
    level.unwrap().unwrap();
    let t = lp.spawn(writer_scenario(lp.clone())).unwrap();
    let writer = lp.run_until_complete(t);
    dog.assert_not_fired("level-triggered writer");
    writer.unwrap().unwrap();
    assert_eq!(lp.stats().fds, 0);
}

#[test]
fn level_triggered_attached() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        level_scenario(lp.clone()).await;
        writer_scenario(lp.clone()).await;
        lp.close().unwrap();
    });
}

/// An fd tokio itself already watches can be watched by oneloop too: the
/// adapter registers its own duplicate, so tokio's "one registration per
/// fd" rule does not bite.
#[test]
fn fd_also_registered_with_tokio() {
    in_local_set(async {
        use tokio::io::AsyncWriteExt;
        let lp = oneloop_tokio::attach().unwrap();
        let (mut a, b) = tokio::net::UnixStream::pair().unwrap();
        let b = Rc::new(b);
        // tokio registers `b` first (its own readiness future) ...
        a.write_all(b"z").await.unwrap();
        b.readable().await.unwrap();
        // ... and oneloop can still watch it and read through it.
        let seen = lp.create_future::<Vec<u8>>();
        {
            let (b2, seen) = (b.clone(), seen.clone());
            lp.add_reader(&*b, move || {
                let mut buf = [0u8; 8];
                if let Ok(n) = b2.try_read(&mut buf) {
                    let _ = seen.set_result(buf[..n].to_vec());
                }
            })
            .unwrap();
        }
        assert_eq!(seen.await.unwrap(), b"z");
        assert!(lp.remove_reader(&*b));
        lp.close().unwrap();
        // tokio's own registration is untouched.
        a.write_all(b"y").await.unwrap();
        b.readable().await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(b.try_read(&mut buf).unwrap(), 1);
    });
}

/// Closing the loop unwatches everything; the fd's owner keeps a working fd.
#[test]
fn close_unwatches_and_leaves_fd_usable() {
    let lp = oneloop_tokio::new_loop().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let calls = Rc::new(Cell::new(0u32));
    {
        let calls = calls.clone();
        lp.add_reader(&b, move || calls.set(calls.get() + 1))
            .unwrap();
    }
    lp.close().unwrap();
    assert!(!lp.remove_reader(&b));
    a.write_all(b"still works").unwrap();
    let mut buf = [0u8; 11];
    (&b).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still works");
    assert_eq!(calls.get(), 0);
}

/// An error with no data and no hang-up (a connected UDP socket that got
/// ICMP port unreachable: `EPOLLERR` alone) still calls the reader, so it
/// sees the error (FD-07), as asyncio's selectors do.
#[test]
fn error_only_readiness_reaches_the_reader() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        // A port that answers with ICMP port unreachable: bound, so no
        // other socket takes it, and connected elsewhere, so it matches none
        // of our datagrams. (Binding and releasing a port races.)
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        holder.connect("127.0.0.1:9").unwrap();
        let target = holder.local_addr().unwrap();
        let sock = Rc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        sock.set_nonblocking(true).unwrap();
        sock.connect(target).unwrap();
        let seen = lp.create_future::<std::io::ErrorKind>();
        {
            let (s2, seen) = (sock.clone(), seen.clone());
            lp.add_reader(&*sock, move || {
                let mut buf = [0u8; 8];
                if let Err(e) = s2.recv(&mut buf)
                    && e.kind() != std::io::ErrorKind::WouldBlock
                {
                    let _ = seen.set_result(e.kind());
                }
            })
            .unwrap();
        }
        sock.send(b"anyone?").unwrap();
        assert_eq!(seen.await.unwrap(), std::io::ErrorKind::ConnectionRefused);
        assert!(lp.remove_reader(&*sock));
        lp.close().unwrap();
    });
}

/// A writer added to an fd that only had a reader (whose tokio write flag
/// the adapter clears, to keep a waker for errors there) is still called for
/// an fd that is writable and sends no new edge.
#[test]
fn writer_added_to_reader_only_fd_sees_writable_fd() {
    in_local_set(async {
        let lp = oneloop_tokio::attach().unwrap();
        let (_a, b) = UnixStream::pair().unwrap();
        let b = Rc::new(b);
        lp.add_reader(&*b, || {}).unwrap();
        // A writer that removes itself at once: afterwards the fd is
        // reader-only again and idle, its write flag cleared.
        let first = lp.create_future::<()>();
        {
            let (lp2, b2, first) = (lp.clone(), b.clone(), first.clone());
            lp.add_writer(&*b, move || {
                lp2.remove_writer(&*b2);
                let _ = first.set_result(());
            })
            .unwrap();
        }
        first.await.unwrap();
        iterations(&lp, 10).await;
        // No new edge will come: only the probe on interest change sees it.
        let second = lp.create_future::<()>();
        {
            let (lp2, b2, second) = (lp.clone(), b.clone(), second.clone());
            lp.add_writer(&*b, move || {
                lp2.remove_writer(&*b2);
                let _ = second.set_result(());
            })
            .unwrap();
        }
        second.await.unwrap();
        assert!(lp.remove_reader(&*b));
        lp.close().unwrap();
    });
}

/// One event per wake-up (a request, then silence: what a server sees from
/// one client) costs one poll of the driver: the select after the
/// iteration finds the fd drained and clears tokio's flag then, instead of
/// leaving it for another poll after another turn of tokio's reactor.
/// Both modes.
async fn one_poll_per_event(lp: Loop, stats: oneloop_tokio::DriverStats) {
    const EVENTS: u64 = 20;
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let got = Rc::new(Cell::new(0u64));
    let polls_at_first = Rc::new(Cell::new(None));
    let done = lp.create_future::<()>();
    {
        let (b2, got, first, st, done) = (
            b.clone(),
            got.clone(),
            polls_at_first.clone(),
            stats.clone(),
            done.clone(),
        );
        lp.add_reader(&*b, move || {
            let mut buf = [0u8; 8];
            if let Ok(n) = (&*b2).read(&mut buf) {
                got.set(got.get() + n as u64);
                first.set(first.get().or(Some(st.polls())));
                if got.get() == EVENTS {
                    let _ = done.set_result(());
                }
            }
        })
        .unwrap();
    }
    let tid = util::current_tid();
    let writer = std::thread::spawn(move || {
        let mut a = a;
        for _ in 0..EVENTS {
            // Only once the loop's thread sleeps again: one event per
            // wake-up.
            util::wait_until_asleep(tid, std::time::Instant::now() + util::LIMIT);
            a.write_all(b"x").unwrap();
        }
        a
    });
    done.await.unwrap();
    let _a = writer.join().unwrap();
    assert_eq!(got.get(), EVENTS);
    let polls = stats.polls() - polls_at_first.get().unwrap();
    // Counted from the first event's poll; each later event costs one poll.
    // (Two per event before: the iteration, then the look that cleared the
    // flag, one tokio turn later.)
    assert!(
        polls <= EVENTS - 1 + 2,
        "{polls} driver polls for {} events after the first",
        EVENTS - 1
    );
    assert!(lp.remove_reader(&*b));
}

#[test]
fn one_poll_per_event_owned() {
    let backend = oneloop_tokio::TokioBackend::new().unwrap();
    let stats = backend.stats();
    let lp = Loop::with_backend(backend).unwrap();
    let dog = Watchdog::stop_loop(&lp, util::LIMIT);
    let t = lp.spawn(one_poll_per_event(lp.clone(), stats)).unwrap();
    let out = lp.run_until_complete(t);
    dog.assert_not_fired("one poll per event");
    out.unwrap().unwrap();
}

#[test]
fn one_poll_per_event_attached() {
    in_local_set(async {
        let backend = oneloop_tokio::TokioBackend::attached().unwrap();
        let stats = backend.stats();
        let lp = Loop::with_backend(backend).unwrap();
        one_poll_per_event(lp.clone(), stats).await;
        lp.close().unwrap();
    });
}
