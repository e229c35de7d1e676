//! `PI`: pipe transports — read pipes see data, EOF and one loss; write
//! pipes deliver in order and learn when their reader goes (PEP 3156
//! §Unidirectional Stream Transports; test_events.py `test_read_pipe`,
//! `test_write_pipe`).

use std::io::{Read, Write};
use std::thread;

use super::proto::{Event, Recorder, Shared, join_on_loop};
use crate::Env;

/// PI-01 (MUST): a read pipe gets `connection_made`, then
/// `data_received*`, then `eof_received`, then exactly one
/// `connection_lost` when the write end closes.
pub fn read_pipe_sequence(env: &Env) {
    let (r, w) = std::io::pipe().expect("pipe");
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = env
        .run_until(env.lp().connect_read_pipe(move || Recorder::new(&s2), r))
        .unwrap_or_else(|e| panic!("connect_read_pipe failed: {e}"));
    assert_eq!(sh.events(), [Event::Made]);
    assert!(t.write(b"x").is_err(), "a read pipe accepted a write");
    assert!(!t.can_write_eof(), "can_write_eof() on a read pipe");
    let writer = thread::spawn(move || {
        let mut w = w;
        for i in 0..100u8 {
            w.write_all(&[i; 1000]).expect("pipe write");
        }
    });
    env.run_until_true(|| sh.lost());
    join_on_loop(env, writer);
    sh.assert_complete();
    let data = sh.data();
    assert_eq!(data.len(), 100_000, "bytes lost");
    assert!(
        data.chunks(1000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8)),
        "bytes out of order"
    );
    let ev = sh.events();
    assert_eq!(ev[ev.len() - 2..], [Event::Eof, Event::Lost(None)]);

    // A protocol that asks to stay open at EOF (`eof_received` true) cannot
    // keep a read pipe: there is nothing left to read.
    let (r, w) = std::io::pipe().expect("pipe");
    let sh = Shared::new();
    let s2 = sh.clone();
    let _t = env
        .run_until(env.lp().connect_read_pipe(
            move || {
                let mut p = Recorder::new(&s2);
                p.keep_open_on_eof = true;
                p
            },
            r,
        ))
        .unwrap_or_else(|e| panic!("connect_read_pipe failed: {e}"));
    drop(w);
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
    assert_eq!(
        sh.events(),
        [Event::Made, Event::Eof, Event::Lost(None)],
        "a read pipe kept open at EOF"
    );
}

/// PI-02 (MUST): a write pipe calls only `connection_made` and
/// `connection_lost` (and flow control), and the bytes arrive in order.
pub fn write_pipe_in_order(env: &Env) {
    let (r, w) = std::io::pipe().expect("pipe");
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = env
        .run_until(env.lp().connect_write_pipe(move || Recorder::new(&s2), w))
        .unwrap_or_else(|e| panic!("connect_write_pipe failed: {e}"));
    let reader = thread::spawn(move || {
        let mut r = r;
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("pipe read");
        got
    });
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for c in payload.chunks(7000) {
        t.write(c).expect("write");
    }
    t.close(); // flushes, then closes the write end
    env.run_until_true(|| sh.lost());
    let got = join_on_loop(env, reader);
    assert!(
        got == payload,
        "{} of {} bytes, or out of order",
        got.len(),
        payload.len()
    );
    sh.assert_complete();
    assert!(
        sh.events().iter().all(|e| matches!(
            e,
            Event::Made | Event::Lost(None) | Event::Pause | Event::Resume
        )),
        "a write pipe's protocol got other calls: {:?}",
        sh.events()
    );

    // write_eof() on a write pipe closes it after the buffered data.
    let (r, w) = std::io::pipe().expect("pipe");
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = env
        .run_until(env.lp().connect_write_pipe(move || Recorder::new(&s2), w))
        .unwrap_or_else(|e| panic!("connect_write_pipe failed: {e}"));
    assert!(t.can_write_eof(), "can_write_eof() on a write pipe");
    let reader = thread::spawn(move || {
        let mut r = r;
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("pipe read");
        got
    });
    let payload = &payload[..200_000];
    t.write(payload).expect("write");
    t.write_eof();
    assert!(t.is_closing(), "is_closing() after write_eof() on a pipe");
    env.run_until_true(|| sh.lost());
    assert!(
        join_on_loop(env, reader) == payload,
        "write_eof() lost or reordered the buffered data"
    );
    sh.assert_complete();
}

/// PI-03 (SHOULD): a write pipe whose reader closes gets `connection_lost`
/// without the owner having to write.
pub fn write_pipe_learns_reader_closed(env: &Env) {
    let (r, w) = std::io::pipe().expect("pipe");
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = env
        .run_until(env.lp().connect_write_pipe(move || Recorder::new(&s2), w))
        .unwrap_or_else(|e| panic!("connect_write_pipe failed: {e}"));
    drop(r);
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
    assert_eq!(
        sh.events(),
        [Event::Made, Event::Lost(None)],
        "nothing was buffered: a clean loss"
    );
    assert!(t.is_closing());
}

/// A pseudo-terminal in raw mode (no echo, no newline translation): the
/// master and the slave; `Err(why)` where the system has no PTYs.
fn raw_pty() -> Result<(std::os::fd::OwnedFd, std::fs::File), String> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)
        .map_err(|e| format!("no pseudo-terminal on this system (openpt: {e})"))?;
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let path = name.to_str().expect("a UTF-8 pty path").to_owned();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut t = tcgetattr(&slave).expect("tcgetattr");
    t.make_raw();
    tcsetattr(&slave, OptionalActions::Now, &t).expect("tcsetattr");
    Ok((master, slave))
}

/// PI-04 (SHOULD): a PTY master works as a read pipe, a write pipe, and both
/// at once; transports left open when the loop closes can still be
/// inspected and dropped.
///
/// Skipped (with the reason) where the system has no pseudo-terminals.
pub fn pty_as_read_and_write_pipe(env: &Env) {
    // Without a PTY the guarantee cannot be exercised: skipped, not passed.
    let (master, slave) = raw_pty().unwrap_or_else(|why| env.skip(why));
    let write_end = master.try_clone().expect("dup the master");
    let rsh = Shared::new();
    let r2 = rsh.clone();
    let rt = env
        .run_until(
            env.lp()
                .connect_read_pipe(move || Recorder::new(&r2), master),
        )
        .unwrap_or_else(|e| panic!("connect_read_pipe(pty master) failed: {e}"));
    let wsh = Shared::new();
    let w2 = wsh.clone();
    let wt = env
        .run_until(
            env.lp()
                .connect_write_pipe(move || Recorder::new(&w2), write_end),
        )
        .unwrap_or_else(|e| panic!("connect_write_pipe(pty master) failed: {e}"));
    // Slave → master: the read pipe.
    let mut out = slave.try_clone().expect("dup the slave");
    out.write_all(b"from the slave").expect("write the slave");
    env.run_until_true(|| rsh.data_len() == 14);
    assert_eq!(rsh.data(), b"from the slave");
    assert!(
        !wt.is_closing(),
        "the write pipe closed when the terminal produced output: a readable PTY master \
         is not a write pipe whose reader went away"
    );
    // Master → slave: the write pipe, on the same terminal at the same time.
    wt.write(b"to the slave").expect("write");
    let reader = thread::spawn(move || {
        let mut slave = slave;
        let mut buf = [0u8; 12];
        slave.read_exact(&mut buf).expect("read the slave");
        (slave, buf)
    });
    let (slave, buf) = join_on_loop(env, reader);
    assert_eq!(&buf, b"to the slave");
    rsh.assert_clean();
    wsh.assert_clean();
    // Left open when the loop closes: still safe to look at and drop.
    env.lp().close().expect("close the loop");
    let _ = (rt.is_closing(), wt.is_closing(), wt.write_buffer_size());
    let _ = wt.write(b"after close");
    rt.close();
    wt.abort();
    drop((rt, wt, slave, out));
}
