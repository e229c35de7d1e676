//! Flow control of stream transports on the default loop: FC-01…FC-06.

mod transport_fixtures;

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use oneloop::{ErrorKind, Loop, Transport};
use transport_fixtures::{
    Event, Recorder, Shared, new_loop, pattern_from, run, run_until, write_until_buffered,
};

const LIMIT: Duration = Duration::from_secs(10);

fn connected(
    lp: &Loop,
    make: impl FnOnce(&Shared) -> Recorder + 'static,
) -> (Transport, Shared, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(lp, LIMIT, lp.create_connection(move || make(&s2), addr)).unwrap();
    let (peer, _) = l.accept().unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    (t, sh, peer)
}

fn drain_in_thread(mut peer: TcpStream, want: usize) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut got = Vec::with_capacity(want);
        let mut buf = vec![0; 64 * 1024];
        while got.len() < want {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("peer read: {e}"),
            }
        }
        got
    })
}

/// A producer that stops at `pause_writing` keeps the buffer within the
/// high-water mark plus one chunk while the peer does not read; FC-03: the
/// pause arrives inside the `write()` that crossed the mark.
#[test]
fn fc01_fc03_a_peer_that_never_reads_bounds_the_writer() {
    let lp = new_loop();
    let (t, sh, peer) = connected(&lp, Recorder::new);
    let (low, high) = t.write_buffer_limits();
    assert_eq!((low, high), (16 * 1024, 64 * 1024), "asyncio's defaults");
    let chunk = vec![7u8; 16 * 1024];
    let mut written = 0;
    let mut max_buffered = 0;
    // Called from outside any protocol method: the pause is synchronous.
    for _ in 0..100_000 {
        t.write(&chunk).unwrap();
        written += chunk.len();
        max_buffered = max_buffered.max(t.write_buffer_size());
        if sh.0.borrow().paused {
            break;
        }
    }
    assert!(
        sh.0.borrow().paused,
        "FC-03: paused before write() returned"
    );
    assert!(t.is_writing_paused());
    assert_eq!(sh.count(&Event::Pause), 1);
    assert!(
        max_buffered <= high + chunk.len(),
        "buffer {max_buffered} > high {high} + one chunk"
    );
    assert!(t.write_buffer_size() > high, "paused strictly above high");

    let resumed_at = Rc::new(std::cell::Cell::new(usize::MAX));
    // Now the peer reads everything: resume comes once, at or below low.
    let reader = drain_in_thread(peer, written);
    let r2 = resumed_at.clone();
    let t2 = t.clone();
    run_until(&lp, LIMIT, || {
        if sh.count(&Event::Resume) == 1 && r2.get() == usize::MAX {
            r2.set(t2.write_buffer_size());
        }
        sh.count(&Event::Resume) == 1
    });
    assert!(
        resumed_at.get() <= low,
        "resumed at {} > low",
        resumed_at.get()
    );
    run_until(&lp, LIMIT, || t.write_buffer_size() == 0);
    t.close();
    run_until(&lp, LIMIT, || sh.lost());
    assert_eq!(reader.join().unwrap().len(), written, "nothing lost");
    sh.assert_complete();
    assert_eq!(sh.count(&Event::Pause), 1);
    assert_eq!(sh.count(&Event::Resume), 1);
}

/// Inside a protocol method the pause is delivered right after the method
/// returns, never re-entrantly (DESIGN §5); `is_writing_paused` says so at once.
#[test]
fn fc03_pause_from_inside_data_received_comes_after_it_returns() {
    let lp = new_loop();
    let (t, sh, mut peer) = connected(&lp, |sh| {
        let mut r = Recorder::new(sh);
        let sh2 = sh.clone();
        r.on_data = Some(Box::new(move |t: &Transport, _: &[u8]| {
            t.set_write_buffer_limits(Some(1024), None).unwrap();
            write_until_buffered(t, 1024, 64 * 1024);
            assert!(t.is_writing_paused());
            sh2.mark("data_received returns");
        }));
        r
    });
    peer.write_all(b"go").unwrap();
    run_until(&lp, LIMIT, || sh.count(&Event::Pause) == 1);
    assert_eq!(
        sh.events(),
        [
            Event::Made,
            Event::Data(2),
            Event::Mark("data_received returns"),
            Event::Pause
        ]
    );
    t.abort();
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
}

#[test]
fn fc02_write_buffer_limits_are_checked_and_derived() {
    let lp = new_loop();
    let (t, sh, peer) = connected(&lp, Recorder::new);
    let err = t.set_write_buffer_limits(Some(10), Some(20)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(t.write_buffer_limits(), (16 * 1024, 64 * 1024), "unchanged");
    t.set_write_buffer_limits(None, Some(100)).unwrap();
    assert_eq!(t.write_buffer_limits(), (100, 400));
    t.set_write_buffer_limits(Some(1000), None).unwrap();
    assert_eq!(t.write_buffer_limits(), (250, 1000));
    t.set_write_buffer_limits(Some(0), None).unwrap();
    assert_eq!(t.write_buffer_limits(), (0, 0));

    // high = 0: paused whenever anything is buffered, resumed when empty.
    let written = write_until_buffered(&t, 0, 1 << 20);
    let buffered = t.write_buffer_size();
    assert!(
        buffered <= 1 << 20,
        "{buffered} bytes buffered, more than the last write"
    );
    assert_eq!(sh.count(&Event::Pause), 1);
    let reader = drain_in_thread(peer, written);
    run_until(&lp, LIMIT, || sh.count(&Event::Resume) == 1);
    assert_eq!(t.write_buffer_size(), 0);
    t.close();
    run_until(&lp, LIMIT, || sh.lost());
    assert!(reader.join().unwrap() == pattern_from(0, written));
    sh.assert_complete();
}

/// `pause_reading` stops `data_received` and unwatches the socket, so the
/// kernel buffers fill and the peer's writes block (FC-04).
#[test]
fn fc04_pause_reading_pushes_back_to_the_kernel() {
    let lp = new_loop();
    let (t, sh, mut peer) = connected(&lp, Recorder::new);
    peer.write_all(b"first").unwrap();
    run_until(&lp, LIMIT, || sh.data_len() == 5);
    t.pause_reading();
    t.pause_reading(); // idempotent
    assert!(!t.is_reading());
    let fds = lp.stats().fds;
    assert_eq!(fds, 0, "the reader is removed, not muted");
    // The peer writes until the kernel says no: that is back-pressure.
    peer.set_nonblocking(true).unwrap();
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
            Err(e) => panic!("{e}"),
        }
        // Give the loop a chance to (wrongly) read.
        let lp2 = lp.clone();
        lp.call_soon(move || lp2.stop()).unwrap();
        lp.run_forever().unwrap();
    }
    assert!(blocked, "the peer was pushed back");
    assert_eq!(sh.data_len(), 5, "no data_received while paused");
    t.resume_reading();
    t.resume_reading();
    assert!(t.is_reading());
    run_until(&lp, LIMIT, || sh.data_len() == sent);
    t.close();
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
}

/// FC-05: `pause_reading` inside `connection_made` holds back even data that
/// was already waiting.
#[test]
fn fc05_pause_reading_in_connection_made_holds_back_the_first_read() {
    let lp = new_loop();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let peer_thread = thread::spawn(move || {
        let (mut p, _) = l.accept().unwrap();
        p.write_all(b"early").unwrap();
        p
    });
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_connection(
            move || {
                let mut r = Recorder::new(&s2);
                r.on_made = Some(Box::new(|t: &Transport, ()| t.pause_reading()));
                r
            },
            addr,
        ),
    )
    .unwrap();
    let peer = peer_thread.join().unwrap();
    // Some loop iterations with the data waiting in the kernel.
    run(&lp, LIMIT, oneloop::sleep(Duration::from_millis(20))).unwrap();
    assert_eq!(sh.events(), [Event::Made], "nothing read while paused");
    t.resume_reading();
    run_until(&lp, LIMIT, || sh.data_len() == 5);
    t.close();
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
    drop(peer);
}

/// FC-06: `resume_writing` may write to another transport; closing while
/// reading is paused still completes.
#[test]
fn fc06_resume_writing_writes_elsewhere_and_close_while_paused_completes() {
    let lp = new_loop();
    let (other, other_sh, mut other_peer) = connected(&lp, Recorder::new);
    let o2 = other.clone();
    let (t, sh, peer) = connected(&lp, move |sh| {
        let mut r = Recorder::new(sh);
        r.on_resume = Some(Box::new(move |_t: &Transport, ()| {
            o2.write(b"resumed").unwrap();
        }));
        r
    });
    t.pause_reading();
    t.set_write_buffer_limits(Some(0), None).unwrap();
    let written = write_until_buffered(&t, 0, 1 << 20);
    let reader = drain_in_thread(peer, written);
    run_until(&lp, LIMIT, || sh.count(&Event::Resume) == 1);
    let mut buf = [0; 7];
    other_peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"resumed");
    t.close();
    run_until(&lp, LIMIT, || sh.lost());
    assert_eq!(reader.join().unwrap().len(), written);
    sh.assert_complete();
    other.close();
    run_until(&lp, LIMIT, || other_sh.lost());
    other_sh.assert_complete();
}
