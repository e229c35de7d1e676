//! fd readiness on calloop: level-triggered, one `Generic` per fd, and
//! registration changes from inside oneloop fd callbacks (which calloop
//! would defer if they ran inside the source's own callback) take effect at
//! once; a removed fd's readiness is never reported afterwards.

mod support;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use calloop::EventLoop;
use support::socket_pair;

/// An attached loop and its host, driven by hand.
struct Host {
    event_loop: EventLoop<'static, ()>,
    lp: oneloop::Loop,
    /// An assertion that failed inside a callback was caught by the loop
    /// (D3): this fails the test with it when the host is dropped.
    _exceptions: oneloop_conformance::support::Tripwire,
}

impl Host {
    fn new() -> Host {
        let event_loop = EventLoop::try_new().unwrap();
        let lp = oneloop_calloop::attach(event_loop.handle()).unwrap();
        let exceptions = support::record_exceptions(&lp);
        Host {
            event_loop,
            lp,
            _exceptions: exceptions,
        }
    }

    /// `n` host iterations, each waiting at most 50 ms.
    fn turn(&mut self, n: usize) {
        for _ in 0..n {
            self.event_loop
                .dispatch(Duration::from_millis(50), &mut ())
                .unwrap();
        }
    }

    /// Host iterations until `done()`, failing after 5 s.
    fn turn_until(&mut self, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            self.turn(1);
        }
    }
}

#[test]
fn an_undrained_fd_fires_on_every_iteration() {
    let mut h = Host::new();
    let (mut peer, sock) = socket_pair();
    peer.write_all(b"unread").unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    h.lp.add_reader(&sock, move || c.set(c.get() + 1)).unwrap();
    h.turn(3);
    assert_eq!(calls.get(), 3, "level-triggered: once per host iteration");
    h.lp.close().unwrap();
}

#[test]
fn remove_from_inside_its_own_callback_with_data_pending() {
    let mut h = Host::new();
    let (mut peer, sock) = socket_pair();
    let sock = Rc::new(sock);
    peer.write_all(b"never drained").unwrap();
    let calls = Rc::new(Cell::new(0));
    let (c, lp, s) = (calls.clone(), h.lp.clone(), sock.clone());
    h.lp.add_reader(&*sock, move || {
        c.set(c.get() + 1);
        assert!(lp.remove_reader(&*s));
    })
    .unwrap();
    h.turn(4);
    assert_eq!(calls.get(), 1);
    assert_eq!(h.lp.stats().fds, 0);
    h.lp.close().unwrap();
}

/// Both fds are ready in the same poll; whichever callback runs first
/// removes the other, which then never runs, and its fd is free for a new
/// registration at once.
#[test]
fn removing_another_ready_fd_from_a_callback() {
    let mut h = Host::new();
    let (mut pa, a) = socket_pair();
    let (mut pb, b) = socket_pair();
    let (a, b) = (Rc::new(a), Rc::new(b));
    pa.write_all(b"a").unwrap();
    pb.write_all(b"b").unwrap();
    let ran = Rc::new(RefCell::new(Vec::new()));
    let add = |me: &Rc<UnixStream>, other: &Rc<UnixStream>, name: &'static str| {
        let (ran, lp, other, me2) = (ran.clone(), h.lp.clone(), other.clone(), me.clone());
        h.lp.add_reader(&**me, move || {
            ran.borrow_mut().push(name);
            lp.remove_reader(&*other);
            lp.remove_reader(&*me2);
        })
        .unwrap();
    };
    add(&a, &b, "a");
    add(&b, &a, "b");
    h.turn(3);
    assert_eq!(ran.borrow().len(), 1, "ran: {:?}", ran.borrow());
    // Both registrations are gone from calloop: adding them again works
    // (a stale `Generic` would make calloop fail with EEXIST).
    let again = Rc::new(Cell::new(0));
    for s in [&a, &b] {
        let again = again.clone();
        h.lp.add_reader(&**s, move || again.set(again.get() + 1))
            .unwrap();
    }
    h.turn(1);
    assert_eq!(again.get(), 2);
    h.lp.close().unwrap();
}

/// The TLS-handshake pattern: reader → writer → reader on one fd, each
/// switch made from inside the running callback (FD-04). Each step must
/// happen on the next iteration, not one poll timeout later.
#[test]
fn switching_interest_from_inside_callbacks() {
    let mut h = Host::new();
    let (mut peer, sock) = socket_pair();
    let sock = Rc::new(sock);
    let steps = Rc::new(RefCell::new(Vec::new()));

    fn on_read(lp: oneloop::Loop, sock: Rc<UnixStream>, steps: Rc<RefCell<Vec<&'static str>>>) {
        let mut buf = [0u8; 8];
        let _ = (&*sock).read(&mut buf);
        steps.borrow_mut().push("read");
        lp.remove_reader(&*sock);
        if steps.borrow().len() < 4 {
            let (lp2, s2, st2) = (lp.clone(), sock.clone(), steps.clone());
            lp.add_writer(&*sock, move || {
                on_write(lp2.clone(), s2.clone(), st2.clone())
            })
            .unwrap();
        }
    }
    fn on_write(lp: oneloop::Loop, sock: Rc<UnixStream>, steps: Rc<RefCell<Vec<&'static str>>>) {
        steps.borrow_mut().push("write");
        lp.remove_writer(&*sock);
        let (lp2, s2, st2) = (lp.clone(), sock.clone(), steps.clone());
        lp.add_reader(&*sock, move || {
            on_read(lp2.clone(), s2.clone(), st2.clone())
        })
        .unwrap();
    }

    peer.write_all(b"1").unwrap();
    let (lp2, s2, st2) = (h.lp.clone(), sock.clone(), steps.clone());
    h.lp.add_reader(&*sock, move || {
        on_read(lp2.clone(), s2.clone(), st2.clone())
    })
    .unwrap();
    h.turn(1);
    assert_eq!(*steps.borrow(), ["read"]);
    let start = Instant::now();
    h.turn(1);
    assert_eq!(*steps.borrow(), ["read", "write"]);
    peer.write_all(b"2").unwrap();
    h.turn(1);
    assert_eq!(*steps.borrow(), ["read", "write", "read"]);
    // No step waited for a poll timeout (50 ms) to notice the change.
    assert!(start.elapsed() < Duration::from_secs(2));
    h.turn(1);
    assert_eq!(*steps.borrow(), ["read", "write", "read", "write"]);
    h.lp.close().unwrap();
}

/// A reader and a writer on one fd share one calloop source whose interest
/// is updated in place; dropping one interest from inside its callback
/// leaves the other firing.
#[test]
fn reader_and_writer_on_one_fd() {
    let mut h = Host::new();
    let (mut peer, sock) = socket_pair();
    peer.write_all(b"r").unwrap();
    let reads = Rc::new(Cell::new(0));
    let writes = Rc::new(Cell::new(0));
    let r = reads.clone();
    let sock = Rc::new(sock);
    h.lp.add_reader(&*sock, move || r.set(r.get() + 1)).unwrap();
    let (w, lp, s) = (writes.clone(), h.lp.clone(), sock.clone());
    h.lp.add_writer(&*sock, move || {
        w.set(w.get() + 1);
        if w.get() == 2 {
            assert!(lp.remove_writer(&*s));
        }
    })
    .unwrap();
    h.turn(4);
    assert_eq!(writes.get(), 2, "the writer stopped when removed");
    assert_eq!(reads.get(), 4, "the reader kept firing");
    h.lp.close().unwrap();
}

/// Remove, close the fd, reopen: the new fd (often the same number) is
/// watched afresh.
#[test]
fn fd_number_reuse_after_removal() {
    let mut h = Host::new();
    let seen = Rc::new(Cell::new(0));
    for round in 0..3 {
        let (mut peer, sock) = socket_pair();
        peer.write_all(b"x").unwrap();
        let s = seen.clone();
        h.lp.add_reader(&sock, move || s.set(s.get() + 1)).unwrap();
        let before = seen.get();
        h.turn_until(|| seen.get() > before);
        assert!(h.lp.remove_reader(&sock), "round {round}");
    }
    h.lp.close().unwrap();
}

/// Owned mode: a reader on a socket that another thread writes to.
#[test]
fn owned_loop_reads_from_a_thread() {
    let lp = oneloop_calloop::new_loop().unwrap();
    let exceptions = support::record_exceptions(&lp);
    let (peer, sock) = socket_pair();
    let sock = Rc::new(sock);
    let got = Rc::new(RefCell::new(Vec::new()));
    // How many bytes the reader took, for the writer on its thread.
    let taken = Arc::new(AtomicUsize::new(0));
    let (g, lp2, s2, t2) = (got.clone(), lp.clone(), sock.clone(), taken.clone());
    lp.add_reader(&*sock, move || {
        let mut buf = [0u8; 64];
        match (&*s2).read(&mut buf) {
            Ok(0) => {
                lp2.remove_reader(&*s2);
                lp2.stop();
            }
            Ok(n) => {
                g.borrow_mut().extend_from_slice(&buf[..n]);
                t2.fetch_add(n, Ordering::SeqCst);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    })
    .unwrap();
    let writer = std::thread::spawn(move || {
        let mut peer = peer;
        peer.set_nonblocking(false).unwrap();
        // Two separate arrivals: the second chunk once the first was read.
        let mut sent = 0;
        for chunk in [b"he".as_slice(), b"llo"] {
            peer.write_all(chunk).unwrap();
            sent += chunk.len();
            support::wait_until(Instant::now() + support::LIMIT, || {
                taken.load(Ordering::SeqCst) >= sent
            });
        }
        // Dropping `peer` hangs up: EOF is reported as readable (FD-07).
    });
    let remote = lp.remote();
    let dog = support::Watchdog::with_action(support::LIMIT, move || {
        let _ = remote.stop();
    });
    lp.run_forever().unwrap();
    assert!(!dog.fired(), "EOF never arrived");
    writer.join().unwrap();
    assert_eq!(*got.borrow(), b"hello");
    exceptions.assert_clean();
    lp.close().unwrap();
}
