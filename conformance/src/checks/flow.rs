//! `FC`: flow control of stream transports — write-side watermarks with
//! paired pause/resume, read-side pausing that pushes back to the kernel
//! (PEP 3156 §Flow control).

use std::cell::Cell;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::thread;

use oneloop::{ErrorKind, Transport};

use super::proto::{
    Event, PEER_LIMIT, Recorder, Shared, connected, drain_in_thread, join_on_loop, pattern,
    pattern_from, write_until_buffered,
};
use crate::Env;

/// FC-01 (MUST): `pause_writing` is called once when the buffer goes
/// strictly above high, `resume_writing` once when it falls to ≤ low; a peer
/// that never reads bounds the writer at high plus one chunk.
pub fn pause_and_resume_pair_around_the_marks(env: &Env) {
    let (t, sh, peer) = connected(env, Recorder::new);
    let (low, high) = t.write_buffer_limits();
    assert!(low <= high, "limits ({low}, {high})");
    let chunk = vec![7u8; 16 * 1024];
    let mut written = 0;
    let mut max_buffered = 0;
    for _ in 0..100_000 {
        t.write(&chunk).expect("write");
        written += chunk.len();
        max_buffered = max_buffered.max(t.write_buffer_size());
        if sh.paused() {
            break;
        }
    }
    assert!(
        sh.paused(),
        "a writer whose peer never reads was never paused"
    );
    assert!(
        t.is_writing_paused(),
        "the transport must say it paused the protocol"
    );
    assert_eq!(sh.count(&Event::Pause), 1);
    assert!(
        t.write_buffer_size() > high,
        "paused at {} bytes, not strictly above high ({high})",
        t.write_buffer_size()
    );
    assert!(
        max_buffered <= high + chunk.len(),
        "the buffer grew to {max_buffered} > high {high} + one chunk"
    );
    let resumed_at = Rc::new(Cell::new(usize::MAX));
    let reader = drain_in_thread(peer, written);
    let t2 = t.clone();
    let r2 = resumed_at.clone();
    env.run_until_true(|| {
        if sh.count(&Event::Resume) == 1 && r2.get() == usize::MAX {
            r2.set(t2.write_buffer_size());
        }
        sh.count(&Event::Resume) == 1
    });
    assert!(
        resumed_at.get() <= low,
        "resume_writing at {} bytes buffered, above low ({low})",
        resumed_at.get()
    );
    assert!(!t.is_writing_paused(), "still paused after resume_writing");
    env.run_until_true(|| t.write_buffer_size() == 0);
    t.close();
    env.run_until_true(|| sh.lost());
    assert_eq!(join_on_loop(env, reader).len(), written, "bytes lost");
    sh.assert_complete();
    assert_eq!((sh.count(&Event::Pause), sh.count(&Event::Resume)), (1, 1));
}

/// FC-02 (MUST): `set_write_buffer_limits` requires 0 ≤ low ≤ high; only
/// high gives low ≤ high; high = 0 forces low = 0 and pauses whenever
/// anything is buffered; `get_write_buffer_size` is exact.
pub fn write_buffer_limits_checked_and_exact(env: &Env) {
    let (t, sh, peer) = connected(env, Recorder::new);
    let before = t.write_buffer_limits();
    let err = t
        .set_write_buffer_limits(Some(10), Some(20))
        .expect_err("low > high was accepted");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        t.write_buffer_limits(),
        before,
        "a refused call changed the limits"
    );
    t.set_write_buffer_limits(Some(1000), None)
        .expect("high only");
    let (low, high) = t.write_buffer_limits();
    assert!(
        high == 1000 && low <= high,
        "high only gave ({low}, {high})"
    );
    t.set_write_buffer_limits(None, Some(100))
        .expect("low only");
    let (low, high) = t.write_buffer_limits();
    assert!(low == 100 && low <= high, "low only gave ({low}, {high})");
    t.set_write_buffer_limits(Some(0), None).expect("high = 0");
    assert_eq!(t.write_buffer_limits(), (0, 0), "high = 0 forces low = 0");

    let end = write_until_buffered(&t, 0, 1 << 20);
    let buffered = t.write_buffer_size();
    assert!(
        buffered <= 1 << 20,
        "{buffered} bytes buffered, more than the last write"
    );
    assert_eq!(
        sh.count(&Event::Pause),
        1,
        "high = 0: paused with anything buffered"
    );
    // With bytes already queued, a write only appends: the size grows by
    // exactly its length.
    t.write(&pattern_from(end, 1000)).expect("write");
    assert_eq!(
        t.write_buffer_size(),
        buffered + 1000,
        "get_write_buffer_size is not exact"
    );
    let total = end + 1000;
    let reader = drain_in_thread(peer, total);
    env.run_until_true(|| sh.count(&Event::Resume) == 1);
    assert_eq!(
        t.write_buffer_size(),
        0,
        "resumed with bytes still buffered"
    );
    t.close();
    env.run_until_true(|| sh.lost());
    let got = join_on_loop(env, reader);
    assert_eq!(got.len(), total, "bytes lost");
    assert!(got == pattern(total), "bytes garbled or out of order");
    sh.assert_complete();
}

/// FC-03 (SHOULD): `pause_writing` runs inside the `write()` that crossed
/// the mark when called from outside a protocol method; from inside one it
/// comes right after that method returns, never re-entrantly.
pub fn pause_comes_with_the_crossing_write(env: &Env) {
    let (t, sh, _peer) = connected(env, Recorder::new);
    t.set_write_buffer_limits(Some(1024), None).expect("limits");
    write_until_buffered(&t, 1024, 64 * 1024);
    assert_eq!(
        sh.count(&Event::Pause),
        1,
        "pause_writing had not run when the crossing write() returned"
    );
    t.abort();
    env.run_until_true(|| sh.lost());
    sh.assert_complete();

    let (t, sh, mut peer) = connected(env, |sh| {
        let mut r = Recorder::new(sh);
        let sh2 = sh.clone();
        r.on_data = Some(Box::new(move |t: &Transport, _: &[u8]| {
            t.set_write_buffer_limits(Some(1024), None).expect("limits");
            write_until_buffered(t, 1024, 64 * 1024);
            assert!(
                t.is_writing_paused(),
                "is_writing_paused() must say so at once, before pause_writing runs"
            );
            sh2.mark("data_received returns");
        }));
        r
    });
    peer.write_all(b"go").expect("write");
    env.run_until_true(|| sh.count(&Event::Pause) == 1);
    assert_eq!(
        sh.events(),
        [
            Event::Made,
            Event::Data(2),
            Event::Mark("data_received returns"),
            Event::Pause
        ],
        "pause_writing must follow data_received, not run inside it"
    );
    t.abort();
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
}

/// FC-04 (MUST): after `pause_reading`, `data_received` is not called
/// until `resume_reading`, and the socket is not read (the peer is pushed
/// back); both calls are idempotent and do nothing on a closing transport.
pub fn pause_reading_holds_data_back(env: &Env) {
    let (t, sh, mut peer) = connected(env, Recorder::new);
    peer.write_all(b"first").expect("write");
    env.run_until_true(|| sh.data_len() == 5);
    t.pause_reading();
    t.pause_reading();
    assert!(!t.is_reading());
    peer.set_nonblocking(true).expect("nonblocking");
    let chunk = vec![9u8; 64 * 1024];
    let mut sent = 5;
    let mut blocked = false;
    for _ in 0..10_000 {
        match peer.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == IoKind::WouldBlock => {
                blocked = true;
                break;
            }
            Err(e) => panic!("peer write: {e}"),
        }
        // Let the loop turn: a transport that still reads would drain it.
        env.run_briefly();
    }
    assert!(
        blocked,
        "the peer was never pushed back: the paused transport still reads"
    );
    assert_eq!(sh.data_len(), 5, "data_received while paused");
    t.resume_reading();
    t.resume_reading();
    assert!(t.is_reading());
    env.run_until_true(|| sh.data_len() == sent);
    t.close();
    t.pause_reading();
    t.resume_reading();
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
}

/// FC-05 (SHOULD): `pause_reading` inside `connection_made` holds back the
/// first read, even of data already waiting.
pub fn pause_reading_in_connection_made(env: &Env) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let peer_thread = thread::spawn(move || {
        let (mut p, _) = l.accept().expect("accept");
        p.write_all(b"early").expect("write");
        p
    });
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = env
        .run_until(env.lp().create_connection(
            move || {
                let mut r = Recorder::new(&s2);
                r.on_made = Some(Box::new(Transport::pause_reading));
                r
            },
            addr,
        ))
        .unwrap_or_else(|e| panic!("create_connection failed: {e}"));
    let peer = join_on_loop(env, peer_thread);
    // The bytes are in our kernel buffer: give the loop turns to misbehave.
    for _ in 0..10 {
        env.run_briefly();
    }
    assert_eq!(
        sh.events(),
        [Event::Made],
        "read while paused from connection_made"
    );
    t.resume_reading();
    env.run_until_true(|| sh.data_len() == 5);
    t.close();
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
    drop(peer);
}

/// FC-06 (SHOULD): `resume_writing` may write to another transport, and
/// closing while reading is paused still completes the shutdown.
pub fn resume_writing_may_write_elsewhere(env: &Env) {
    let (other, other_sh, mut other_peer) = connected(env, Recorder::new);
    let o2 = other.clone();
    let (t, sh, peer) = connected(env, move |sh| {
        let mut r = Recorder::new(sh);
        r.on_resume = Some(Box::new(move |_: &Transport| {
            o2.write(b"resumed").expect("write to the other transport");
        }));
        r
    });
    t.pause_reading();
    t.set_write_buffer_limits(Some(0), None).expect("limits");
    let written = write_until_buffered(&t, 0, 1 << 20);
    let reader = drain_in_thread(peer, written);
    env.run_until_true(|| sh.count(&Event::Resume) == 1);
    other_peer
        .set_read_timeout(Some(PEER_LIMIT))
        .expect("timeout");
    let got = thread::spawn(move || {
        let mut buf = [0; 7];
        other_peer.read_exact(&mut buf).expect("read");
        buf
    });
    assert_eq!(&join_on_loop(env, got), b"resumed");
    t.close();
    env.run_until_true(|| sh.lost());
    assert_eq!(join_on_loop(env, reader).len(), written);
    sh.assert_complete();
    other.close();
    env.run_until_true(|| other_sh.lost());
    other_sh.assert_complete();
}
