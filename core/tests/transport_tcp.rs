//! TCP transports and protocols on the default loop: TP-01…TP-11.

mod transport_fixtures;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use oneloop::{ConnectOptions, ErrorKind, Loop, Protocol, Transport, transport::ExtraInfo};
use transport_fixtures::{
    Event, Phase, Recorder, Shared, new_loop, pattern_from, record_exceptions, run, run_until,
    write_until_buffered,
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

/// A server on the loop with recording echo protocols; a blocking client
/// thread sends and reads back 1 MiB; both sides keep TP-01 and TP-02.
#[test]
fn tp01_tp02_echo_server_and_client_keep_the_state_machine() {
    let lp = new_loop();
    let servers: Rc<std::cell::RefCell<Vec<Shared>>> = Default::default();
    let s2 = servers.clone();
    let server = run(
        &lp,
        LIMIT,
        lp.create_server(
            move || {
                let sh = Shared::new();
                s2.borrow_mut().push(sh.clone());
                Recorder::echo(&sh)
            },
            "127.0.0.1:0",
        ),
    )
    .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();

    // The client on the loop too: writes 1 MiB, reads it back.
    let client = Shared::new();
    let c2 = client.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_connection(move || Recorder::new(&c2), addr),
    )
    .unwrap();
    // D2: the future resolved after connection_made ran.
    assert_eq!(client.events(), [Event::Made]);
    let payload = pattern(1 << 20);
    for chunk in payload.chunks(10_000) {
        t.write(chunk).unwrap();
    }
    run_until(&lp, LIMIT, || client.data_len() >= payload.len());
    assert_eq!(client.data(), payload, "TP-02: the bytes, in order");
    t.close();
    assert!(t.is_closing());
    run_until(&lp, LIMIT, || {
        client.lost() && servers.borrow().iter().all(|s| s.lost())
    });
    client.assert_complete();
    assert_eq!(client.lost_error().map(|e| e.kind()), None);
    let servers = servers.borrow();
    assert_eq!(servers.len(), 1, "one protocol per connection");
    servers[0].assert_complete();
    assert_eq!(servers[0].data(), payload);
    // The client closed: the server saw EOF, then a clean loss (TP-08).
    let ev = servers[0].events();
    assert_eq!(ev[ev.len() - 2..], [Event::Eof, Event::Lost(None)]);
    server.close();
    run(&lp, LIMIT, server.wait_closed()).unwrap();
}

#[test]
fn tp03_create_connection_resolves_after_connection_made() {
    let lp = new_loop();
    let (_l, addr) = listener();
    let sh = Shared::new();
    let s2 = sh.clone();
    let fut = lp.create_connection(move || Recorder::new(&s2), addr);
    let t = run(&lp, LIMIT, async {
        let t = fut.await.unwrap();
        assert_eq!(
            sh.phase(),
            Phase::Connected,
            "made before the future resolved"
        );
        t
    });
    assert_eq!(t, sh.transport());
    assert_eq!(
        t.peername().and_then(|a| a.as_inet()),
        Some(addr),
        "peername"
    );
    t.abort();
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
}

#[test]
fn tp11_connection_refused_fails_and_makes_no_protocol() {
    let lp = new_loop();
    let (_holder, addr) = refusing_port();
    let made = Rc::new(Cell::new(false));
    let m2 = made.clone();
    let err = run(
        &lp,
        LIMIT,
        lp.create_connection(
            move || {
                m2.set(true);
                Recorder::new(&Shared::new())
            },
            addr,
        ),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
    assert!(!made.get(), "no protocol for a failed connect");
}

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
    // TP-11: the same local address again is in use.
    let err = run(
        &lp,
        LIMIT,
        lp.create_connection_with(
            || Recorder::new(&Shared::new()),
            addr,
            ConnectOptions::new().local_addr(local),
        ),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
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

#[test]
fn tp04_tp05_close_flushes_then_connection_lost_none() {
    let lp = new_loop();
    let (t, sh, mut peer) = connected(&lp, Recorder::new);
    let payload = pattern(write_until_buffered(&t, 0, 1 << 20));
    t.close();
    assert!(t.is_closing(), "TP-05: closing at once");
    assert_eq!(
        t.write(b"late").unwrap_err().kind(),
        ErrorKind::InvalidState,
        "TP-04: write after close is a defined error"
    );
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        got
    });
    run_until(&lp, LIMIT, || sh.lost());
    assert_eq!(
        reader.join().unwrap(),
        payload,
        "everything flushed before the close"
    );
    sh.assert_complete();
    assert_eq!(sh.events().last(), Some(&Event::Lost(None)));
}

#[test]
fn tp05_no_data_received_after_close() {
    let lp = new_loop();
    let (t, sh, mut peer) = connected(&lp, Recorder::new);
    peer.write_all(b"before").unwrap();
    run_until(&lp, LIMIT, || sh.data_len() == 6);
    t.close();
    peer.write_all(b"after").unwrap();
    run_until(&lp, LIMIT, || sh.lost());
    assert_eq!(sh.data(), b"before");
    sh.assert_complete();
}

#[test]
fn tp06_abort_discards_and_loses_later_never_inside() {
    let lp = new_loop();
    let (t, sh, mut peer) = connected(&lp, Recorder::new);
    let written = write_until_buffered(&t, 0, 1 << 20);
    t.abort();
    assert!(
        !sh.lost(),
        "connection_lost is not called from inside abort()"
    );
    assert_eq!(t.write_buffer_size(), 0, "the buffer is discarded");
    t.abort();
    t.close();
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
    assert_eq!(sh.events().last(), Some(&Event::Lost(None)));
    // The peer gets less than was written, then the end.
    let mut got = Vec::new();
    let _ = peer.read_to_end(&mut got);
    assert!(got.len() < written, "the peer got all {written} bytes");
}

#[test]
fn tp07_eof_received_false_closes_the_transport() {
    let lp = new_loop();
    let (_t, sh, mut peer) = connected(&lp, Recorder::new);
    peer.write_all(b"bye").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
    assert_eq!(
        sh.events(),
        [Event::Made, Event::Data(3), Event::Eof, Event::Lost(None)]
    );
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "our side closed too");
}

#[test]
fn tp07_eof_received_true_keeps_half_open_and_may_write() {
    let lp = new_loop();
    let (_t, sh, mut peer) = connected(&lp, |sh| {
        let mut r = Recorder::new(sh);
        r.keep_open_on_eof = true;
        r.on_eof = Some(Box::new(|t: &Transport, ()| {
            t.write(b"answer after eof").unwrap();
            t.close();
        }));
        r
    });
    peer.write_all(b"question").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, LIMIT, || sh.lost());
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"answer after eof");
    sh.assert_complete();
}

#[test]
fn tp07_write_eof_after_buffered_data_is_idempotent_and_ends_writing() {
    let lp = new_loop();
    let (t, sh, mut peer) = connected(&lp, Recorder::new);
    assert!(t.can_write_eof());
    let payload = pattern(2 << 20);
    t.write(&payload).unwrap();
    t.write_eof();
    t.write_eof();
    assert_eq!(
        t.write(b"x").unwrap_err().kind(),
        ErrorKind::InvalidState,
        "write after write_eof"
    );
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        // Half-closed: we may still talk back.
        peer.write_all(b"reply").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        got
    });
    run_until(&lp, LIMIT, || sh.lost());
    assert_eq!(reader.join().unwrap(), payload, "EOF after all the data");
    assert_eq!(sh.data(), b"reply", "reading went on after write_eof");
    sh.assert_complete();
}

#[test]
fn tp08_reset_by_peer_gives_connection_lost_with_an_error() {
    let lp = new_loop();
    let (_t, sh, peer) = connected(&lp, Recorder::new);
    // SO_LINGER 0: close sends RST.
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
    let err = sh.lost_error().expect("an error for a reset");
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionReset)
    );
}

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

#[test]
fn tp09_server_factory_once_per_connection_close_refuses_new_and_keeps_old() {
    let lp = new_loop();
    let protos: Rc<std::cell::RefCell<Vec<Shared>>> = Default::default();
    let p2 = protos.clone();
    let server = run(
        &lp,
        LIMIT,
        lp.create_server(
            move || {
                let sh = Shared::new();
                p2.borrow_mut().push(sh.clone());
                Recorder::echo(&sh)
            },
            "127.0.0.1:0",
        ),
    )
    .unwrap();
    assert!(server.is_serving());
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    run_until(&lp, LIMIT, || protos.borrow().len() == 3);
    run_until(&lp, LIMIT, || server.active_connections() == 3);

    let t = protos.borrow()[0].transport();
    assert_eq!(
        t.extra_info("sockname"),
        Some(ExtraInfo::Address(addr.into()))
    );
    assert_eq!(
        t.extra_info("peername"),
        Some(ExtraInfo::Address(clients[0].local_addr().unwrap().into()))
    );
    assert!(matches!(t.extra_info("socket"), Some(ExtraInfo::Fd(_))));
    assert_eq!(t.extra_info("no such key"), None);

    server.close();
    assert!(!server.is_serving());
    assert!(server.socket_fds().is_empty());
    assert!(TcpStream::connect(addr).is_err(), "new connects refused");
    let waited = Rc::new(Cell::new(false));
    let w2 = waited.clone();
    let wait = server.wait_closed();
    lp.spawn(async move {
        wait.await.unwrap();
        w2.set(true);
    })
    .unwrap();

    // Old connections still echo.
    clients[1].set_read_timeout(Some(LIMIT)).unwrap();
    clients[1].write_all(b"still here").unwrap();
    run_until(&lp, LIMIT, || protos.borrow()[1].data_len() == 10);
    let mut buf = [0; 10];
    let c1 = clients.remove(1);
    let reader = thread::spawn(move || {
        let mut c1 = c1;
        c1.read_exact(&mut buf).unwrap();
        (c1, buf)
    });
    let mut done = false;
    run_until(&lp, LIMIT, || {
        done = done || reader.is_finished();
        done
    });
    let (c1, buf) = reader.join().unwrap();
    assert_eq!(&buf, b"still here");
    assert!(!waited.get(), "wait_closed waits for the connections");
    drop(c1);
    drop(clients);
    run_until(&lp, LIMIT, || waited.get());
    assert_eq!(protos.borrow().len(), 3, "no factory call after close");
    for p in protos.borrow().iter() {
        p.assert_complete();
    }
}

#[test]
fn tp11_address_in_use_fails_create_server() {
    let lp = new_loop();
    let (l, addr) = listener();
    let made = Rc::new(Cell::new(0));
    let m2 = made.clone();
    let err = run(
        &lp,
        LIMIT,
        lp.create_server_with(
            move || {
                m2.set(m2.get() + 1);
                Recorder::new(&Shared::new())
            },
            addr,
            oneloop::ServerOptions::new().reuse_address(false),
        ),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::AddrInUse)
    );
    assert!(
        err.to_string().contains(&addr.to_string()),
        "says where: {err}"
    );
    drop(l);
    assert_eq!(made.get(), 0);
}

#[test]
fn tp11_connect_accepted_socket_gives_the_same_sequence() {
    let lp = new_loop();
    let (l, addr) = listener();
    let mut client = TcpStream::connect(addr).unwrap();
    let (accepted, _) = l.accept().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.connect_accepted_socket(move || Recorder::echo(&s2), accepted),
    )
    .unwrap();
    assert_eq!(sh.events(), [Event::Made]);
    client.write_all(b"adopted").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, LIMIT, || sh.lost());
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"adopted");
    sh.assert_complete();
    assert!(t.is_closing());
}

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

/// TP-10: abort inside connection_made: create_connection still completes,
/// connection_lost runs once.
#[test]
fn tp10_abort_inside_connection_made() {
    let lp = new_loop();
    let (_t, sh, mut peer) = connected(&lp, |sh| {
        let mut r = Recorder::new(sh);
        r.on_made = Some(Box::new(|t: &Transport, ()| t.abort()));
        r
    });
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
    assert_eq!(sh.events(), [Event::Made, Event::Lost(None)]);
    let mut rest = Vec::new();
    let _ = peer.read_to_end(&mut rest);
}

struct PanicIn(&'static str, Shared);

impl Protocol for PanicIn {
    fn connection_made(&mut self, t: &Transport) {
        let mut r = Recorder::new(&self.1);
        r.connection_made(t);
        if self.0 == "connection_made" {
            panic!("boom in connection_made");
        }
    }
    fn data_received(&mut self, data: &[u8]) {
        self.1.0.borrow_mut().data.extend_from_slice(data);
        if self.0 == "data_received" {
            panic!("boom in data_received");
        }
    }
    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        let mut s = self.1.0.borrow_mut();
        s.events.push(Event::Lost(error.as_ref().map(|e| e.kind())));
        s.phase = Phase::Closed;
        s.transport = None;
    }
}

/// A protocol that panics: torn down, connection_lost once with Panicked,
/// the exception handler told, the other connection unaffected.
#[test]
fn protocol_panic_in_data_received_tears_down_only_that_connection() {
    let lp = new_loop();
    let reports = record_exceptions(&lp);
    let (_t1, bad, mut p1) = {
        let (l, addr) = listener();
        let sh = Shared::new();
        let s2 = sh.clone();
        let t = run(
            &lp,
            LIMIT,
            lp.create_connection(move || PanicIn("data_received", s2), addr),
        )
        .unwrap();
        let (peer, _) = l.accept().unwrap();
        (t, sh, peer)
    };
    let (t2, good, mut p2) = connected(&lp, Recorder::echo);
    p1.write_all(b"trigger").unwrap();
    run_until(&lp, LIMIT, || bad.lost());
    assert_eq!(
        bad.events(),
        [Event::Made, Event::Lost(Some(ErrorKind::Panicked))]
    );
    let reports = reports.borrow().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].message().contains("data_received"),
        "{}",
        reports[0]
    );
    assert_eq!(reports[0].panic_message(), Some("boom in data_received"));
    // The other connection works on.
    p2.set_read_timeout(Some(LIMIT)).unwrap();
    p2.write_all(b"fine").unwrap();
    run_until(&lp, LIMIT, || good.data_len() == 4);
    let mut buf = [0; 4];
    p2.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"fine");
    t2.close();
    run_until(&lp, LIMIT, || good.lost());
    good.assert_complete();
    let mut rest = Vec::new();
    let _ = p1.read_to_end(&mut rest);
}

#[test]
fn tp10_protocol_panic_in_connection_made_still_completes_create_connection() {
    let lp = new_loop();
    let reports = record_exceptions(&lp);
    let (l, addr) = listener();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_connection(move || PanicIn("connection_made", s2), addr),
    )
    .unwrap();
    assert!(t.is_closing());
    run_until(&lp, LIMIT, || sh.lost());
    assert_eq!(
        sh.events(),
        [Event::Made, Event::Lost(Some(ErrorKind::Panicked))]
    );
    assert_eq!(reports.borrow().len(), 1);
    drop(l);
}

/// A factory on the server that panics drops that connection only.
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

/// `serve_forever` ends when the server closes; dropping it closes the server.
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
