//! TCP transports on the default loop, beyond the conformance suite's TP
//! checks: connect options, misuse, faults and release (internal).

mod transport_fixtures;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use oneloop::{ConnectOptions, ErrorKind, Loop, Transport};
use transport_fixtures::{
    Recorder, Shared, new_loop, pattern_from, record_exceptions, run, run_until,
};

const LIMIT: Duration = Duration::from_secs(10);

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A loopback port that refuses connections, and the socket that holds it:
/// bound, so no other test's socket takes the port while it lives, but not
/// listening. (Binding and releasing a port races with other tests.)
fn refusing_port() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let a = s.local_addr().unwrap().as_socket().unwrap();
    (s, a)
}

fn pattern(n: usize) -> Vec<u8> {
    pattern_from(0, n)
}

/// No TP guarantee covers several addresses: each is tried in turn.
#[test]
fn create_connection_tries_each_address_in_turn() {
    let lp = new_loop();
    let (l, good) = listener();
    let (_holder, bad) = refusing_port();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_connection(
            move || Recorder::new(&s2),
            // A `'static` slice, as `ToSocketAddrs` wants (leaked: 2 addresses).
            &*Box::leak(vec![bad, good].into_boxed_slice()),
        ),
    )
    .unwrap();
    assert_eq!(t.peername().and_then(|a| a.as_inet()), Some(good));
    drop(l);
    t.abort();
    run_until(&lp, LIMIT, || sh.lost());
}

/// No TP guarantee covers `local_addr` (TP-11 covers its failure).
#[test]
fn create_connection_binds_the_local_address() {
    let lp = new_loop();
    let (l, addr) = listener();
    let local = {
        let (l, a) = listener();
        drop(l);
        a
    };
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_connection_with(
            move || Recorder::new(&s2),
            addr,
            ConnectOptions::new().local_addr(local),
        ),
    )
    .unwrap();
    assert_eq!(t.sockname().and_then(|a| a.as_inet()), Some(local));
    let (_peer, from) = l.accept().unwrap();
    assert_eq!(from, local);
    t.abort();
    run_until(&lp, LIMIT, || sh.lost());
}

/// Connect to a std listener; return the transport, its record and the peer.
fn connected(
    lp: &Loop,
    make: impl FnOnce(&Shared) -> Recorder + 'static,
) -> (Transport, Shared, TcpStream) {
    let (l, addr) = listener();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(lp, LIMIT, lp.create_connection(move || make(&s2), addr)).unwrap();
    let (peer, _) = l.accept().unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    (t, sh, peer)
}

/// No TP guarantee covers EPIPE on write: it is `connection_lost(err)`,
/// never a SIGPIPE (the suite's TP-08 learns of a reset by reading).
#[test]
fn epipe_on_write_to_a_reset_peer_is_connection_lost_not_a_signal() {
    let lp = new_loop();
    let (t, sh, peer) = connected(&lp, Recorder::new);
    t.pause_reading(); // learn of the reset by writing only
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    let chunk = pattern(64 * 1024);
    run_until(&lp, LIMIT, || {
        let _ = t.write(&chunk);
        sh.lost()
    });
    sh.assert_complete();
    assert_eq!(sh.lost_error().map(|e| e.kind()), Some(ErrorKind::Io));
}

/// Misuse no TP guarantee names: adopting a datagram socket as a stream.
#[test]
fn connect_accepted_socket_refuses_a_datagram_socket() {
    let lp = new_loop();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = run(
        &lp,
        LIMIT,
        lp.connect_accepted_socket(|| Recorder::new(&Shared::new()), udp),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// ER-05 names protocol methods, not the factory: a factory that panics on
/// the server drops that connection only, and the server serves on.
#[test]
fn server_survives_a_panicking_factory() {
    let lp = new_loop();
    let reports = record_exceptions(&lp);
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    let server = run(
        &lp,
        LIMIT,
        lp.create_server(
            move || {
                n2.set(n2.get() + 1);
                if n2.get() == 1 {
                    panic!("factory boom");
                }
                Recorder::echo(&Shared::new())
            },
            "127.0.0.1:0",
        ),
    )
    .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let mut first = TcpStream::connect(addr).unwrap();
    first.set_read_timeout(Some(LIMIT)).unwrap();
    run_until(&lp, LIMIT, || n.get() == 1);
    let mut second = TcpStream::connect(addr).unwrap();
    second.set_read_timeout(Some(LIMIT)).unwrap();
    second.write_all(b"ok").unwrap();
    run_until(&lp, LIMIT, || server.active_connections() == 1);
    let reader = thread::spawn(move || {
        let mut buf = [0; 2];
        second.read_exact(&mut buf).unwrap();
        buf
    });
    run_until(&lp, LIMIT, || reader.is_finished());
    assert_eq!(&reader.join().unwrap(), b"ok");
    let mut rest = Vec::new();
    assert_eq!(first.read_to_end(&mut rest).unwrap(), 0, "dropped");
    assert_eq!(reports.borrow().len(), 1);
    server.close();
}

/// `Server::serve_forever` (no PEP guarantee): it ends when the server
/// closes; dropping it closes the server.
#[test]
fn serve_forever_ends_on_close_and_closes_when_dropped() {
    let lp = new_loop();
    let server = run(
        &lp,
        LIMIT,
        lp.create_server(|| Recorder::new(&Shared::new()), "127.0.0.1:0"),
    )
    .unwrap();
    let s2 = server.clone();
    lp.call_later(Duration::from_millis(5), move || s2.close())
        .unwrap();
    run(&lp, LIMIT, server.serve_forever()).unwrap();
    assert!(!server.is_serving());

    let server = run(
        &lp,
        LIMIT,
        lp.create_server(|| Recorder::new(&Shared::new()), "127.0.0.1:0"),
    )
    .unwrap();
    let forever = server.serve_forever();
    assert!(server.is_serving());
    drop(forever);
    assert!(!server.is_serving());
}

/// Internal: after `connection_lost` the socket is unwatched
/// (`Loop::stats`) and closed.
#[test]
fn transports_are_released_after_connection_lost() {
    let lp = new_loop();
    let (t, sh, _peer) = connected(&lp, Recorder::new);
    let fds_while_open = lp.stats().fds;
    assert!(fds_while_open >= 1, "the reader is registered");
    assert!(t.socket_fd().is_some());
    t.close();
    run_until(&lp, LIMIT, || sh.lost());
    assert_eq!(lp.stats().fds, fds_while_open - 1, "unwatched");
    assert_eq!(t.socket_fd(), None, "the fd is closed");
    // Only the test's handle remains: the protocol dropped its clone.
    assert_eq!(t.write_buffer_size(), 0);
}

/// A transport whose loop closed under it is closing, as `write`'s docs
/// say of a lost connection: `write` refuses (whether the socket had
/// something buffered or not) instead of dropping the bytes, or keeping
/// them for good, with `Ok`.
#[test]
fn a_transport_whose_loop_closed_is_closing_and_refuses_writes() {
    let lp = new_loop();
    let (t, _sh, _peer) = connected(&lp, Recorder::new);
    assert!(!t.is_closing());
    lp.close().unwrap();
    assert!(
        t.is_closing(),
        "the loop closed under it, yet it is not closing"
    );
    assert_eq!(
        t.write(b"late").map_err(|e| e.kind()),
        Err(ErrorKind::InvalidState),
        "a write after the loop closed"
    );
}
