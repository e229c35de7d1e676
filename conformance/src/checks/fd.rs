//! `FD`: file-descriptor readiness — level-triggered, replaceable,
//! removable, hang-ups reported (PEP 3156 §I/O Callbacks).

use std::cell::Cell;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use oneloop::ErrorKind;

use super::trace;
use crate::Env;
use crate::env::cpu_and_wall;

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

fn counter() -> (Rc<Cell<u32>>, impl FnMut() + 'static) {
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    (n, move || n2.set(n2.get() + 1))
}

/// FD-01 (MUST): `add_reader(fd, cb)` calls cb every time fd is readable,
/// repeatedly (level-triggered), until it is removed; the same holds for
/// `add_writer`.
pub fn readiness_is_level_triggered(env: &Env) {
    let lp = env.lp();
    let (a, b) = pair();
    (&b).write_all(b"x").unwrap();
    // Neither callback consumes the readiness, so a level-triggered loop
    // calls them on every iteration.
    let (reads, on_read) = counter();
    let (writes, on_write) = counter();
    lp.add_reader(&a, on_read).unwrap();
    lp.add_writer(&b, on_write).unwrap();
    let (r2, w2) = (reads.clone(), writes.clone());
    let enough = move || r2.get() >= 3 && w2.get() >= 3;
    env.run_until(std::future::poll_fn(|cx| {
        // Checked after each iteration: only the fds' own readiness drives it.
        if enough() {
            return std::task::Poll::Ready(());
        }
        let w = cx.waker().clone();
        let _ = oneloop::get_running_loop().map(|lp| lp.call_soon(move || w.wake()));
        std::task::Poll::Pending
    }));
    assert!(
        reads.get() >= 3,
        "a reader whose fd stays readable ran {} time(s): readiness must be level-triggered",
        reads.get()
    );
    assert!(
        writes.get() >= 3,
        "a writer whose fd stays writable ran {} time(s): readiness must be level-triggered",
        writes.get()
    );
    assert!(lp.remove_reader(&a) && lp.remove_writer(&b));
    let (r, w) = (reads.get(), writes.get());
    env.run_for(Duration::from_millis(10));
    assert_eq!(
        (reads.get(), writes.get()),
        (r, w),
        "callbacks ran after removal"
    );
}

/// FD-02 (MUST): a second `add_reader`/`add_writer` on the same fd replaces
/// the first callback; the old callback is never called again.
pub fn second_add_replaces_callback(env: &Env) {
    let lp = env.lp();
    let (a, b) = pair();
    (&b).write_all(b"x").unwrap();
    let (old_r, on_old_r) = counter();
    let (new_r, on_new_r) = counter();
    let (old_w, on_old_w) = counter();
    let (new_w, on_new_w) = counter();
    lp.add_reader(&a, on_old_r).unwrap();
    lp.add_writer(&a, on_old_w).unwrap();
    lp.add_reader(&a, on_new_r).unwrap();
    lp.add_writer(&a, on_new_w).unwrap();
    env.run_for(Duration::from_millis(10));
    assert_eq!(
        (old_r.get(), old_w.get()),
        (0, 0),
        "a replaced callback ran"
    );
    assert!(
        new_r.get() > 0 && new_w.get() > 0,
        "the replacing callbacks never ran"
    );
    assert!(lp.remove_reader(&a) && lp.remove_writer(&a));

    // Replaced while the old callback is already due: two fds ready in the
    // same poll, and d's reader replaces b's. Whichever the poll reported
    // first, once d has replaced it the old reader of b never runs, even if
    // it was already queued for this batch.
    let (a, b) = pair();
    let (c, d) = pair();
    (&a).write_all(b"x").unwrap();
    (&c).write_all(b"x").unwrap();
    let (b, d) = (Rc::new(b), Rc::new(d));
    let t = trace();
    lp.add_reader(&*d, {
        let (lp, b, d, t) = (lp.clone(), b.clone(), d.clone(), t.clone());
        move || {
            lp.remove_reader(&*d);
            let (lp2, b2, t2) = (lp.clone(), b.clone(), t.clone());
            lp.add_reader(&*b, move || {
                t2.borrow_mut().push("replacement");
                lp2.remove_reader(&*b2);
            })
            .unwrap();
            t.borrow_mut().push("d");
        }
    })
    .unwrap();
    lp.add_reader(&*b, {
        let (lp, b, t) = (lp.clone(), b.clone(), t.clone());
        move || {
            t.borrow_mut().push("old b");
            lp.remove_reader(&*b);
        }
    })
    .unwrap();
    // Until the replacement ran, or the old reader ran after d replaced it.
    env.run_until_true(|| {
        let t = t.borrow();
        t.contains(&"replacement") || t.iter().skip_while(|x| **x != "d").any(|x| *x == "old b")
    });
    env.run_for(Duration::from_millis(5));
    let got = t.borrow().clone();
    assert!(
        matches!(
            got.as_slice(),
            ["d", "replacement"] | ["old b", "d", "replacement"]
        ),
        "a reader replaced while already due still ran: {got:?}"
    );
    drop((a, c));
}

/// FD-03 (MUST): `remove_reader`/`remove_writer` return true if something
/// was removed and false otherwise; after removal the callback never fires,
/// even with data pending; any handle to the fd names the same registration.
pub fn remove_reports_and_silences(env: &Env) {
    let lp = env.lp();
    let (a, b) = pair();
    let (reads, on_read) = counter();
    lp.add_reader(a.as_fd(), on_read).unwrap();
    assert!(
        !lp.remove_writer(&a),
        "remove_writer without a writer must return false"
    );
    // Registered through a BorrowedFd, removed through the owning socket.
    assert!(
        lp.remove_reader(&a),
        "remove_reader must return true for a registered reader"
    );
    assert!(
        !lp.remove_reader(a.as_fd()),
        "a second remove_reader must return false"
    );
    (&b).write_all(b"pending").unwrap();
    env.run_for(Duration::from_millis(10));
    assert_eq!(reads.get(), 0, "a removed reader fired");
    let (writes, on_write) = counter();
    lp.add_writer(&b, on_write).unwrap();
    assert!(lp.remove_writer(b.as_fd()));
    assert!(!lp.remove_writer(&b));
    env.run_for(Duration::from_millis(10));
    assert_eq!(writes.get(), 0, "a removed writer fired");

    // Removed while already due: two fds ready in the same poll, and each
    // reader removes both. Whichever runs first, the other never runs.
    let (a, b) = pair();
    let (c, d) = pair();
    (&a).write_all(b"x").unwrap();
    (&c).write_all(b"x").unwrap();
    let (b, d) = (Rc::new(b), Rc::new(d));
    let ran = trace();
    for (name, fd) in [("b", &b), ("d", &d)] {
        let (lp2, b2, d2, ran) = (lp.clone(), b.clone(), d.clone(), ran.clone());
        lp.add_reader(&**fd, move || {
            ran.borrow_mut().push(name);
            lp2.remove_reader(&*b2);
            lp2.remove_reader(&*d2);
        })
        .unwrap();
    }
    env.run_until_true(|| !ran.borrow().is_empty());
    env.run_for(Duration::from_millis(10));
    assert_eq!(
        ran.borrow().len(),
        1,
        "a reader removed by an earlier callback of its batch still ran: {:?}",
        ran.borrow()
    );
    drop((a, c));
}

/// FD-04 (SHOULD): reader and writer on one fd are independent, and
/// switching reader → writer → reader from inside their own callbacks (the
/// TLS-handshake pattern) works.
pub fn reader_and_writer_are_independent(env: &Env) {
    let lp = env.lp();
    let (a, b) = pair();
    (&b).write_all(b"x").unwrap();
    let (reads, on_read) = counter();
    let (writes, on_write) = counter();
    lp.add_reader(&a, on_read).unwrap();
    lp.add_writer(&a, on_write).unwrap();
    assert!(lp.remove_writer(&a));
    let w = writes.get();
    env.run_for(Duration::from_millis(10));
    assert!(reads.get() > 0, "removing the writer silenced the reader");
    assert_eq!(writes.get(), w, "the removed writer ran");
    assert!(lp.remove_reader(&a));

    // Handshake: each side removes itself and registers the other, 6 times.
    let steps = trace();
    fn as_reader(lp: oneloop::Loop, a: Rc<UnixStream>, steps: super::Trace<&'static str>) {
        let (lp2, a2) = (lp.clone(), a.clone());
        lp.add_reader(&*a, move || {
            lp2.remove_reader(&*a2);
            steps.borrow_mut().push("read");
            if steps.borrow().len() < 6 {
                as_writer(lp2.clone(), a2.clone(), steps.clone());
            }
        })
        .unwrap();
    }
    fn as_writer(lp: oneloop::Loop, a: Rc<UnixStream>, steps: super::Trace<&'static str>) {
        let (lp2, a2) = (lp.clone(), a.clone());
        lp.add_writer(&*a, move || {
            lp2.remove_writer(&*a2);
            steps.borrow_mut().push("write");
            if steps.borrow().len() < 6 {
                as_reader(lp2.clone(), a2.clone(), steps.clone());
            }
        })
        .unwrap();
    }
    as_reader(lp.clone(), Rc::new(a), steps.clone());
    env.run_until_true(|| steps.borrow().len() == 6);
    assert_eq!(
        *steps.borrow(),
        ["read", "write", "read", "write", "read", "write"]
    );

    // The same against a real peer, so that each reader is registered
    // before its fd is readable and has to be woken by the peer's answer:
    // write "ping", wait to read "pong", twice.
    let (a, peer) = pair();
    peer.set_nonblocking(false).unwrap();
    peer.set_read_timeout(Some(super::proto::PEER_LIMIT))
        .unwrap();
    let peer = std::thread::spawn(move || {
        let mut peer = peer;
        let mut buf = [0u8; 4];
        for _ in 0..2 {
            peer.read_exact(&mut buf).expect("the peer reads a ping");
            peer.write_all(b"pong").expect("the peer answers");
        }
    });
    let steps = trace();
    fn want_write(lp: &oneloop::Loop, a: &Rc<UnixStream>, steps: &super::Trace<&'static str>) {
        let (lp2, a2, steps) = (lp.clone(), a.clone(), steps.clone());
        lp.add_writer(&**a, move || {
            lp2.remove_writer(&*a2);
            (&*a2).write_all(b"ping").expect("write a ping");
            steps.borrow_mut().push("wrote");
            want_read(&lp2, &a2, &steps);
        })
        .unwrap();
    }
    fn want_read(lp: &oneloop::Loop, a: &Rc<UnixStream>, steps: &super::Trace<&'static str>) {
        let (lp2, a2, steps) = (lp.clone(), a.clone(), steps.clone());
        lp.add_reader(&**a, move || {
            let mut buf = [0u8; 16];
            match (&*a2).read(&mut buf) {
                Err(e) if e.kind() == IoKind::WouldBlock => return,
                r => r.expect("read a pong"),
            };
            lp2.remove_reader(&*a2);
            steps.borrow_mut().push("read");
            if steps.borrow().len() < 4 {
                want_write(&lp2, &a2, &steps);
            }
        })
        .unwrap();
    }
    want_write(lp, &Rc::new(a), &steps);
    env.run_until_true(|| steps.borrow().len() == 4);
    super::proto::join_on_loop(env, peer);
    assert_eq!(*steps.borrow(), ["wrote", "read", "wrote", "read"]);
}

/// FD-05 (SHOULD): after `remove_writer` on an always-writable fd the loop
/// goes idle (no 100 % CPU).
pub fn removed_writer_leaves_loop_idle(env: &Env) {
    let lp = env.lp();
    let (a, _b) = pair();
    let a = Rc::new(a);
    let removed = Rc::new(Cell::new(false));
    lp.add_writer(&*a, {
        let (lp, a, removed) = (lp.clone(), a.clone(), removed.clone());
        move || {
            lp.remove_writer(&*a);
            removed.set(true);
        }
    })
    .unwrap();
    env.run_until_true(|| removed.get());
    let (cpu, wall) = cpu_and_wall(env, || env.run_for(Duration::from_millis(40)));
    if let Some(cpu) = cpu {
        assert!(
            cpu < wall / 2 + Duration::from_millis(2),
            "after remove_writer the loop burned {cpu:?} of CPU in {wall:?}"
        );
    }
}

/// FD-06 (SHOULD): a writer callback that completes a future whose
/// done-callback removes the writer is not called a second time.
pub fn writer_removed_by_done_callback_runs_once(env: &Env) {
    let lp = env.lp();
    let (a, _b) = pair();
    let a = Rc::new(a);
    let fut = lp.create_future::<()>();
    let calls = Rc::new(Cell::new(0));
    fut.add_done_callback({
        let (lp, a) = (lp.clone(), a.clone());
        move |_| {
            lp.remove_writer(&*a);
        }
    });
    lp.add_writer(&*a, {
        let (fut, calls) = (fut.clone(), calls.clone());
        move || {
            calls.set(calls.get() + 1);
            let _ = fut.set_result(());
        }
    })
    .unwrap();
    env.run_until(fut.clone()).unwrap();
    env.run_for(Duration::from_millis(10));
    assert_eq!(
        calls.get(),
        1,
        "the writer ran again after its future's done-callback removed it"
    );
}

/// FD-07 (SHOULD): peer hang-up or error on a watched fd is reported as
/// readable and writable, so the owner sees EOF or the error, with no
/// silent hang and no spin.
pub fn hangup_is_reported(env: &Env) {
    let lp = env.lp();
    // A pipe whose writer is gone reports only a hang-up (no "readable").
    let (r, w) = std::io::pipe().expect("pipe");
    drop(w);
    let r = Rc::new(r);
    let eof = Rc::new(Cell::new(None));
    lp.add_reader(&*r, {
        let (lp, r, eof) = (lp.clone(), r.clone(), eof.clone());
        move || {
            let mut buf = [0u8; 8];
            eof.set(Some((&*r).read(&mut buf).map_err(|e| e.kind())));
            lp.remove_reader(&*r);
        }
    })
    .unwrap();
    // A socket whose buffer is full is not writable until its peer hangs up.
    let (a, b) = pair();
    let chunk = [0u8; 4096];
    loop {
        match (&a).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == IoKind::WouldBlock => break,
            Err(e) => panic!("filling a socket: {e}"),
        }
    }
    let a = Rc::new(a);
    let write_err = Rc::new(Cell::new(None));
    lp.add_writer(&*a, {
        let (lp, a, write_err) = (lp.clone(), a.clone(), write_err.clone());
        move || {
            write_err.set(Some((&*a).write(b"x").map_err(|e| e.kind())));
            lp.remove_writer(&*a);
        }
    })
    .unwrap();
    // A pipe whose buffer is full is not writable; once its reader is gone
    // the kernel reports only an error condition (no "writable"), which a
    // writer-only registration must still hear of.
    let (pr, pw) = std::io::pipe().expect("pipe");
    rustix::io::ioctl_fionbio(&pw, true).expect("non-blocking pipe");
    loop {
        match (&pw).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == IoKind::WouldBlock => break,
            Err(e) => panic!("filling a pipe: {e}"),
        }
    }
    let pw = Rc::new(pw);
    let pipe_err = Rc::new(Cell::new(None));
    lp.add_writer(&*pw, {
        let (lp, pw, pipe_err) = (lp.clone(), pw.clone(), pipe_err.clone());
        move || {
            pipe_err.set(Some((&*pw).write(b"x").map_err(|e| e.kind())));
            lp.remove_writer(&*pw);
        }
    })
    .unwrap();
    drop(b);
    drop(pr);
    env.run_until_true(|| {
        eof.get().is_some() && write_err.get().is_some() && pipe_err.get().is_some()
    });
    assert!(
        matches!(pipe_err.get(), Some(Err(_))),
        "the writer of a pipe whose reader closed must see the error, got {:?}",
        pipe_err.get()
    );
    assert_eq!(
        eof.get(),
        Some(Ok(0)),
        "the reader of a hung-up pipe must see EOF"
    );
    assert!(
        matches!(write_err.get(), Some(Err(_))),
        "the writer of a hung-up socket must see the error, got {:?}",
        write_err.get()
    );
}

/// FD-08 (SHOULD): regular disk files are rejected with `Unsupported` or
/// `InvalidArgument`, not accepted and then never firing.
pub fn regular_file_rejected(env: &Env) {
    let lp = env.lp();
    let exe = std::env::current_exe().expect("current_exe");
    let file = std::fs::File::open(&exe).expect("open a regular file");
    for (what, r) in [
        ("add_reader", lp.add_reader(&file, || {})),
        ("add_writer", lp.add_writer(&file, || {})),
    ] {
        match r {
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Unsupported | ErrorKind::InvalidArgument
                ) => {}
            other => panic!(
                "{what} on a regular file: expected Unsupported or InvalidArgument, got {other:?}"
            ),
        }
    }
    assert!(!lp.remove_reader(&file) && !lp.remove_writer(&file));
}

/// UNSUP-FD (MUST): an adapter without fd watching answers `Unsupported`
/// from `add_reader`/`add_writer` instead of accepting the fd and never
/// calling back (PEP 3156: `NotImplementedError`).
pub fn missing_fd_capability_answers_unsupported(env: &Env) {
    let lp = env.lp();
    let (a, _b) = pair();
    for (what, r) in [
        ("add_reader", lp.add_reader(&a, || {})),
        ("add_writer", lp.add_writer(&a, || {})),
    ] {
        match r {
            Err(e) if e.kind() == ErrorKind::Unsupported => {}
            other => {
                panic!("{what} without the fd capability: expected Unsupported, got {other:?}")
            }
        }
    }
    assert!(!lp.remove_reader(&a) && !lp.remove_writer(&a));
}
