//! fd readiness on the default loop: FD-01…FD-08.

mod util;

use std::cell::Cell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use oneloop::{ErrorKind, Loop};
use util::{Log, Watchdog, stopper};

fn pair() -> (UnixStream, Rc<UnixStream>) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, Rc::new(b))
}

#[test]
fn fd01_a_reader_fires_on_every_iteration_while_readable() {
    let lp = Loop::new().unwrap();
    let (mut a, b) = pair();
    a.write_all(b"x").unwrap();
    let n = Rc::new(Cell::new(0));
    let (n2, lp2) = (n.clone(), lp.clone());
    // Never reads: level-triggered means it keeps firing.
    lp.add_reader(&*b, move || {
        n2.set(n2.get() + 1);
        if n2.get() == 5 {
            lp2.stop();
        }
    })
    .unwrap();
    let dog = Watchdog::arm(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(n.get(), 5);
}

#[test]
fn fd01_a_writer_fires_repeatedly_while_writable() {
    let lp = Loop::new().unwrap();
    let (_a, b) = pair();
    let n = Rc::new(Cell::new(0));
    let (n2, lp2, b2) = (n.clone(), lp.clone(), b.clone());
    lp.add_writer(&*b, move || {
        n2.set(n2.get() + 1);
        if n2.get() == 3 {
            lp2.remove_writer(&*b2);
            lp2.stop();
        }
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(n.get(), 3);
}

#[test]
fn fd02_a_second_add_reader_replaces_the_first() {
    let lp = Loop::new().unwrap();
    let (mut a, b) = pair();
    let log = Log::new();
    let l = log.clone();
    lp.add_reader(&*b, move || l.push("old")).unwrap();
    let (l, lp2, b2) = (log.clone(), lp.clone(), b.clone());
    lp.add_reader(&*b, move || {
        l.push("new");
        lp2.remove_reader(&*b2);
        lp2.stop();
    })
    .unwrap();
    a.write_all(b"x").unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["new"]);
}

#[test]
fn fd02_a_replacement_inside_the_batch_skips_the_queued_old_callback() {
    let lp = Loop::new().unwrap();
    let (mut a, b) = pair();
    let (mut c, d) = pair();
    a.write_all(b"x").unwrap();
    c.write_all(b"x").unwrap();
    let log = Log::new();
    // Both fds are ready in the same poll; d's reader replaces b's.
    let (l, lp2, b2, d2) = (log.clone(), lp.clone(), b.clone(), d.clone());
    lp.add_reader(&*d, move || {
        lp2.remove_reader(&*d2);
        let (l2, lp3, b3) = (l.clone(), lp2.clone(), b2.clone());
        lp2.add_reader(&*b2, move || {
            l2.push("replacement");
            lp3.remove_reader(&*b3);
        })
        .unwrap();
        l.push("d");
    })
    .unwrap();
    let (l, lp2, b2) = (log.clone(), lp.clone(), b.clone());
    lp.add_reader(&*b, move || {
        l.push("old b");
        lp2.remove_reader(&*b2);
    })
    .unwrap();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_millis(20), move || lp2.stop())
        .unwrap();
    lp.run_forever().unwrap();
    let got = log.get();
    // Whichever of b and d the poll reported first: once d replaced b's
    // reader, the old one never ran, even though it was already queued.
    match got.as_slice() {
        ["d", "replacement"] | ["old b", "d", "replacement"] => {}
        other => panic!("unexpected order {other:?}"),
    }
}

#[test]
fn fd03_remove_returns_whether_something_was_removed_and_silences_the_callback() {
    let lp = Loop::new().unwrap();
    let (mut a, b) = pair();
    assert!(!lp.remove_reader(&*b));
    lp.add_reader(&*b, || panic!("removed reader ran")).unwrap();
    assert!(lp.remove_reader(&*b));
    assert!(!lp.remove_reader(&*b));
    a.write_all(b"pending data").unwrap();
    lp.call_later(Duration::from_millis(10), stopper(&lp))
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(lp.stats().fds, 0);
}

#[test]
fn fd03_removing_a_reader_queued_in_the_same_batch_prevents_its_call() {
    let lp = Loop::new().unwrap();
    let (mut a, b) = pair();
    let (mut c, d) = pair();
    a.write_all(b"x").unwrap();
    c.write_all(b"x").unwrap();
    let ran = Log::new();
    let (r, lp2, b2, d2) = (ran.clone(), lp.clone(), b.clone(), d.clone());
    lp.add_reader(&*b, move || {
        r.push("b");
        lp2.remove_reader(&*d2);
        lp2.remove_reader(&*b2);
    })
    .unwrap();
    let (r, lp2, b2, d2) = (ran.clone(), lp.clone(), b.clone(), d.clone());
    lp.add_reader(&*d, move || {
        r.push("d");
        lp2.remove_reader(&*b2);
        lp2.remove_reader(&*d2);
    })
    .unwrap();
    lp.call_later(Duration::from_millis(20), stopper(&lp))
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        ran.len(),
        1,
        "the second reader was removed before it ran: {:?}",
        ran.get()
    );
}

#[test]
fn fd04_reader_and_writer_are_independent_and_can_swap_inside_callbacks() {
    let lp = Loop::new().unwrap();
    let (mut a, b) = pair();
    let log = Log::new();
    // The TLS-handshake pattern: write, then wait to read, then write again.
    fn want_write(lp: &Loop, b: &Rc<UnixStream>, log: &Log<&'static str>, step: u32) {
        let (lp2, b2, l) = (lp.clone(), b.clone(), log.clone());
        lp.add_writer(&**b, move || {
            lp2.remove_writer(&*b2);
            (&*b2).write_all(b"ping").unwrap();
            l.push("wrote");
            want_read(&lp2, &b2, &l, step);
        })
        .unwrap();
    }
    fn want_read(lp: &Loop, b: &Rc<UnixStream>, log: &Log<&'static str>, step: u32) {
        let (lp2, b2, l) = (lp.clone(), b.clone(), log.clone());
        lp.add_reader(&**b, move || {
            let mut buf = [0; 16];
            let _ = (&*b2).read(&mut buf).unwrap();
            lp2.remove_reader(&*b2);
            l.push("read");
            if step == 2 {
                lp2.stop();
            } else {
                want_write(&lp2, &b2, &l, step + 1);
            }
        })
        .unwrap();
    }
    want_write(&lp, &b, &log, 1);
    let peer = std::thread::spawn(move || {
        a.set_nonblocking(false).unwrap();
        let mut buf = [0; 4];
        for _ in 0..2 {
            a.read_exact(&mut buf).unwrap();
            a.write_all(b"pong").unwrap();
        }
    });
    let dog = Watchdog::arm(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    peer.join().unwrap();
    assert!(!dog.fired());
    assert_eq!(log.get(), ["wrote", "read", "wrote", "read"]);
}

#[test]
fn fd05_after_remove_writer_on_an_always_writable_fd_the_loop_goes_idle() {
    let lp = Loop::new().unwrap();
    let (_a, b) = pair();
    let (lp2, b2) = (lp.clone(), b.clone());
    lp.add_writer(&*b, move || {
        lp2.remove_writer(&*b2);
    })
    .unwrap();
    let start = std::time::Instant::now();
    let cpu_before = cpu_time();
    lp.call_later(Duration::from_millis(100), stopper(&lp))
        .unwrap();
    lp.run_forever().unwrap();
    let cpu = cpu_time() - cpu_before;
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(
        cpu < Duration::from_millis(50),
        "the loop spun for {cpu:?} of CPU while idle"
    );
}

fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn fd06_a_writer_whose_future_removes_it_is_not_called_again() {
    let lp = Loop::new().unwrap();
    let (_a, b) = pair();
    let fut = lp.create_future::<()>();
    let calls = Rc::new(Cell::new(0));
    let (c, f) = (calls.clone(), fut.clone());
    lp.add_writer(&*b, move || {
        c.set(c.get() + 1);
        let _ = f.set_result(());
    })
    .unwrap();
    let (lp2, b2) = (lp.clone(), b.clone());
    fut.add_done_callback(move |_| {
        lp2.remove_writer(&*b2);
    });
    lp.run_until_complete(fut).unwrap().unwrap();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_millis(10), move || lp2.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 1);
}

#[test]
fn fd07_peer_hangup_reaches_the_reader_as_eof() {
    let lp = Loop::new().unwrap();
    let (a, b) = pair();
    let eof = Rc::new(Cell::new(false));
    let (e, lp2, b2) = (eof.clone(), lp.clone(), b.clone());
    lp.add_reader(&*b, move || {
        let mut buf = [0; 8];
        if (&*b2).read(&mut buf).unwrap() == 0 {
            e.set(true);
            lp2.remove_reader(&*b2);
            lp2.stop();
        }
    })
    .unwrap();
    drop(a);
    let dog = Watchdog::arm(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert!(eof.get());
}

#[test]
fn fd07_hangup_reaches_a_writer_only_registration() {
    let lp = Loop::new().unwrap();
    let (r, w) = rustix::pipe::pipe().unwrap();
    rustix::io::ioctl_fionbio(&w, true).unwrap();
    // Fill the pipe so it is not writable, then close the read end: the
    // writer must hear about the hang-up (EPIPE on write), not hang.
    let mut filled = 0usize;
    while let Ok(n) = rustix::io::write(&w, &[0u8; 4096]) {
        filled += n;
    }
    assert!(filled > 0);
    let told = Rc::new(Cell::new(false));
    let (t, lp2) = (told.clone(), lp.clone());
    let w = Rc::new(w);
    let w2 = w.clone();
    lp.add_writer(&*w, move || {
        t.set(true);
        lp2.remove_writer(&*w2);
        lp2.stop();
    })
    .unwrap();
    drop(r);
    let dog = Watchdog::arm(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert!(told.get());
}

#[test]
fn fd08_regular_files_are_rejected() {
    let lp = Loop::new().unwrap();
    let f = File::open("/proc/self/exe")
        .or_else(|_| File::open("Cargo.toml"))
        .unwrap();
    assert_eq!(
        lp.add_reader(&f, || ()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        lp.add_writer(&f, || ()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(lp.stats().fds, 0);
}
