//! Flow control of stream transports on the default loop, beyond the
//! conformance suite's FC checks: the exact limits oneloop picks, and that a
//! paused reader is unwatched (internal).

mod transport_fixtures;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use oneloop::{Loop, Transport};
use transport_fixtures::{Recorder, Shared, new_loop, run, run_until};

const LIMIT: Duration = Duration::from_secs(10);

fn connected(lp: &Loop) -> (Transport, Shared, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        lp,
        LIMIT,
        lp.create_connection(move || Recorder::new(&s2), addr),
    )
    .unwrap();
    let (peer, _) = l.accept().unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    (t, sh, peer)
}

/// FC-02 asks only for 0 ≤ low ≤ high: the numbers are oneloop's choice,
/// asyncio's defaults (16 KiB, 64 KiB) and its derivations (low = high / 4,
/// high = 4 × low).
#[test]
fn write_buffer_limits_are_asyncios_defaults_and_derivations() {
    let lp = new_loop();
    let (t, sh, _peer) = connected(&lp);
    assert_eq!(t.write_buffer_limits(), (16 * 1024, 64 * 1024));
    t.set_write_buffer_limits(None, Some(100)).unwrap();
    assert_eq!(t.write_buffer_limits(), (100, 400), "low only");
    t.set_write_buffer_limits(Some(1000), None).unwrap();
    assert_eq!(t.write_buffer_limits(), (250, 1000), "high only");
    t.abort();
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
}

/// Internal: `pause_reading` removes the socket from the fd table
/// (`Loop::stats`) rather than muting its callback; the suite's FC-04 sees
/// the effect (the peer is pushed back) on every loop mode.
#[test]
fn pause_reading_unwatches_the_socket() {
    let lp = new_loop();
    let (t, sh, mut peer) = connected(&lp);
    peer.write_all(b"first").unwrap();
    run_until(&lp, LIMIT, || sh.data_len() == 5);
    let watched = lp.stats().fds;
    assert_eq!(watched, 1, "the reader is registered");
    t.pause_reading();
    assert_eq!(lp.stats().fds, 0, "the reader is removed, not muted");
    t.resume_reading();
    assert_eq!(lp.stats().fds, watched);
    t.close();
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
}
