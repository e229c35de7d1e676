//! Which `ErrorKind` oneloop answers where a guarantee says only that a call
//! fails, or "a defined error" (TP-04, TP-07, PI-01, UD-02, FD-08, EX-02):
//! the conformance suite checks that those calls fail, on every loop mode;
//! the kind is oneloop's own choice, documented on each method, and pinned
//! here. (Where the PEP's anchors raise `ValueError` and the like, the kind
//! follows `GUARANTEES.md` §0 and the suite checks it.)

mod transport_fixtures;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use oneloop::{DatagramOptions, DatagramProtocol, DatagramTransport, ErrorKind, Loop, Transport};
use transport_fixtures::{Recorder, Shared, new_loop, run, run_until};

const LIMIT: Duration = Duration::from_secs(10);

fn connected(lp: &Loop) -> (Transport, Shared, std::net::TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        lp,
        LIMIT,
        lp.create_connection(move || Recorder::new(&s2), addr),
    )
    .unwrap();
    let (peer, _) = l.accept().unwrap();
    (t, sh, peer)
}

/// TP-04 and TP-07 ask for "a defined error" (asyncio logs and drops the
/// data): oneloop answers `InvalidState`.
#[test]
fn writing_to_a_closing_or_half_closed_transport_is_invalid_state() {
    let lp = new_loop();
    let (t, sh, _peer) = connected(&lp);
    t.write_eof();
    assert_eq!(
        t.write(b"x").unwrap_err().kind(),
        ErrorKind::InvalidState,
        "after write_eof"
    );
    t.close();
    assert_eq!(
        t.write(b"x").unwrap_err().kind(),
        ErrorKind::InvalidState,
        "after close"
    );
    t.abort();
    assert_eq!(
        t.write(b"x").unwrap_err().kind(),
        ErrorKind::InvalidState,
        "after abort"
    );
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
}

/// PI-01: a read pipe cannot be written to (asyncio's has no `write`):
/// `Unsupported`.
#[test]
fn writing_to_a_read_pipe_is_unsupported() {
    let lp = new_loop();
    let (r, mut w) = std::io::pipe().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.connect_read_pipe(move || Recorder::new(&s2), r),
    )
    .unwrap();
    assert_eq!(t.write(b"x").unwrap_err().kind(), ErrorKind::Unsupported);
    w.write_all(b"end").unwrap();
    drop(w);
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
}

struct Quiet;
impl DatagramProtocol for Quiet {}

/// UD-02 says only that an address is needed: without one (and no
/// `remote_addr`), or with no address at all to create from, oneloop
/// answers `InvalidArgument`; after `close()`, `InvalidState`.
#[test]
fn datagram_misuse_kinds() {
    let lp = new_loop();
    let t: DatagramTransport = run(
        &lp,
        LIMIT,
        lp.create_datagram_endpoint(
            || Quiet,
            DatagramOptions::new().local_addr(SocketAddr::from(([127, 0, 0, 1], 0))),
        ),
    )
    .unwrap();
    assert_eq!(
        t.sendto(b"x", None).unwrap_err().kind(),
        ErrorKind::InvalidArgument,
        "sendto without an address on an unconnected endpoint"
    );
    t.close();
    assert_eq!(
        t.sendto(b"x", t.sockname()).unwrap_err().kind(),
        ErrorKind::InvalidState,
        "sendto after close"
    );
    let err = run(
        &lp,
        LIMIT,
        lp.create_datagram_endpoint(|| Quiet, DatagramOptions::new()),
    )
    .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidArgument,
        "an endpoint with neither a local nor a remote address"
    );
}

/// FD-08 allows `Unsupported` or `InvalidArgument` for a regular file: the
/// default loop checks with `fstat` and answers `InvalidArgument`.
#[test]
fn a_regular_file_is_refused_with_invalid_argument() {
    let lp = Loop::new().unwrap();
    let f = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(
        lp.add_reader(&f, || ()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        lp.add_writer(&f, || ()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

/// EX-02 says only that the default pool refuses work after
/// `shutdown_default_executor`: with `Closed`.
#[test]
fn the_shut_down_default_pool_refuses_work_with_closed() {
    let lp = Loop::new().unwrap();
    let shutdown = lp.shutdown_default_executor().unwrap();
    lp.run_until_complete(shutdown).unwrap().unwrap();
    assert_eq!(
        lp.run_in_executor(|| ()).unwrap_err().kind(),
        ErrorKind::Closed
    );
}
