//! `TP`: TCP transports and protocols — the call order, stream semantics,
//! close/abort/EOF, servers, adopted sockets and failures (PEP 3156
//! §Transports, §Protocols, §Servers). Every check drives its protocols
//! through a recording protocol that asserts the state machine on every
//! call (CPython's `MyBaseProto` pattern), so each also checks TP-01.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use oneloop::transport::ExtraInfo;
use oneloop::{ConnectOptions, ErrorKind, Protocol, ServerOptions, Transport};

use super::proto::{
    Event, Phase, Recorder, Shared, connected, drain_in_thread, join_on_loop, listener, pattern,
    pattern_from, refusing_port, write_until_buffered,
};
use crate::Env;

/// A server on the loop whose echo protocols record themselves.
fn echo_server(
    env: &Env,
) -> (
    oneloop::Server,
    std::net::SocketAddr,
    Rc<RefCell<Vec<Shared>>>,
) {
    let protos: Rc<RefCell<Vec<Shared>>> = Rc::default();
    let p2 = protos.clone();
    let server = env
        .run_until(env.lp().create_server(
            move || {
                let sh = Shared::new();
                p2.borrow_mut().push(sh.clone());
                Recorder::echo(&sh)
            },
            "127.0.0.1:0",
        ))
        .unwrap_or_else(|e| panic!("create_server failed: {e}"));
    let addr = server.local_addrs()[0]
        .as_inet()
        .expect("a TCP server has an inet address");
    (server, addr, protos)
}

/// TP-01 (MUST): `connection_made` exactly once, then `data_received` zero
/// or more times, then `eof_received` at most once, then `connection_lost`
/// exactly once; nothing after it — on both ends of a connection the loop
/// serves and makes.
pub fn protocol_call_order(env: &Env) {
    let (server, addr, servers) = echo_server(env);
    let client = Shared::new();
    let c2 = client.clone();
    let t = env
        .run_until(env.lp().create_connection(move || Recorder::new(&c2), addr))
        .unwrap_or_else(|e| panic!("create_connection failed: {e}"));
    let payload = pattern(256 * 1024);
    for chunk in payload.chunks(10_000) {
        t.write(chunk).expect("write");
    }
    env.run_until_true(|| client.data_len() >= payload.len());
    t.close();
    env.run_until_true(|| client.lost() && servers.borrow().iter().all(Shared::lost));
    client.assert_complete();
    let servers = servers.borrow();
    assert_eq!(servers.len(), 1, "one server protocol for one connection");
    servers[0].assert_complete();
    let ev = servers[0].events();
    assert_eq!(
        ev[ev.len() - 2..],
        [Event::Eof, Event::Lost(None)],
        "the client closed: the server protocol sees EOF, then the end"
    );
    // Nothing after connection_lost, even with the loop still turning.
    env.run_for(Duration::from_millis(5));
    client.assert_complete();
    servers[0].assert_complete();
    server.close();
    env.run_until(server.wait_closed())
        .unwrap_or_else(|e| panic!("wait_closed failed: {e}"));
}

/// TP-02 (MUST): `data_received` always gets non-empty bytes, and the
/// concatenation of all chunks is exactly what the peer sent, whatever its
/// write pattern.
pub fn data_is_whole_and_in_order(env: &Env) {
    let (t, sh, mut peer) = connected(env, Recorder::new);
    let payload = pattern(512 * 1024 + 3);
    let sent = payload.clone();
    let writer = thread::spawn(move || {
        // Tiny, odd and large writes, to vary the chunking.
        let mut rest = &sent[..];
        for n in [1usize, 2, 3, 7, 1000, 65_536, 1].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*n).min(rest.len());
            peer.write_all(&rest[..n]).expect("peer write");
            rest = &rest[n..];
        }
        peer.shutdown(Shutdown::Write).expect("shutdown");
        peer
    });
    env.run_until_true(|| sh.lost());
    let _peer = join_on_loop(env, writer);
    sh.assert_complete();
    assert!(
        sh.data() == payload,
        "TP-02: got {} bytes, sent {}; the bytes differ or are out of order",
        sh.data_len(),
        payload.len()
    );
    drop(t);
}

/// TP-03 (SHOULD): `create_connection` resolves only after
/// `connection_made` has run (the docs and CPython; D2), with the
/// transport `connection_made` got.
pub fn create_connection_resolves_after_made(env: &Env) {
    let (_l, addr) = listener();
    let sh = Shared::new();
    let s2 = sh.clone();
    let fut = env.lp().create_connection(move || Recorder::new(&s2), addr);
    let sh3 = sh.clone();
    let t = env.run_until(async move {
        let t = fut
            .await
            .unwrap_or_else(|e| panic!("create_connection failed: {e}"));
        assert_eq!(
            sh3.phase(),
            Phase::Connected,
            "the future resolved before connection_made ran"
        );
        t
    });
    assert!(
        t == sh.transport(),
        "the same transport as connection_made's"
    );
    assert_eq!(
        t.peername().and_then(|a| a.as_inet()),
        Some(addr),
        "peername is the address connected to"
    );
    t.abort();
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
}

/// TP-04 (MUST): `write()` never blocks, buffers what the socket does not
/// take, and keeps the order; writing after `close()` or `abort()` is a
/// defined error, never a crash.
pub fn write_never_blocks_and_keeps_order(env: &Env) {
    let (t, sh, peer) = connected(env, Recorder::new);
    // The peer is not reading yet: write until the kernel is full and
    // write() must buffer and return, then go on in tiny, odd and large
    // writes that only append to the buffer.
    let mut end = write_until_buffered(&t, 0, 100_000);
    let first_buffered = t.write_buffer_size();
    for n in [1usize, 7, 1000, 65_536, 3, 100_000]
        .iter()
        .cycle()
        .take(60)
    {
        t.write(&pattern_from(end, *n))
            .expect("write on an open transport");
        end += n;
    }
    t.writelines([&b""[..], &b"tail-1"[..], &b"tail-2"[..]])
        .expect("writelines");
    assert!(
        t.write_buffer_size() > first_buffered,
        "writes to a full socket were not buffered"
    );
    let want = end + 12;
    let reader = drain_in_thread(peer, want);
    env.run_until_true(|| t.write_buffer_size() == 0);
    let got = join_on_loop(env, reader);
    assert_eq!(got.len(), want, "every byte arrives");
    assert!(
        got[..end] == pattern(end)[..] && &got[end..] == b"tail-1tail-2",
        "the bytes arrive in the order written"
    );
    t.close();
    let after_close = t.write(b"late");
    t.abort();
    let after_abort = t.write(b"later");
    assert!(
        after_close.is_err() && after_abort.is_err(),
        "write after close/abort must be refused (got {after_close:?}, {after_abort:?})"
    );
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
}

/// TP-05 (MUST): `close()` flushes the buffer, then calls
/// `connection_lost(None)`; `data_received` is not called after `close()`;
/// `is_closing()` is true at once.
pub fn close_flushes_then_loses_cleanly(env: &Env) {
    let (t, sh, mut peer) = connected(env, Recorder::new);
    let payload = pattern(2 << 20);
    t.write(&payload).expect("write");
    t.close();
    assert!(t.is_closing(), "is_closing() right after close()");
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let _ = peer.read_to_end(&mut got);
        got
    });
    env.run_until_true(|| sh.lost());
    let got = join_on_loop(env, reader);
    assert!(
        got == payload,
        "close() lost buffered data ({} of {} bytes arrived)",
        got.len(),
        payload.len()
    );
    sh.assert_complete();
    assert_eq!(sh.events().last(), Some(&Event::Lost(None)));

    // Data arriving after close() is not delivered.
    let (t, sh, mut peer) = connected(env, Recorder::new);
    peer.write_all(b"before").expect("peer write");
    env.run_until_true(|| sh.data_len() == 6);
    // The loop does not run between the peer's write and close(): the
    // bytes are waiting in the kernel when the transport closes.
    peer.write_all(b"after").expect("peer write");
    t.close();
    env.run_until_true(|| sh.lost());
    assert_eq!(sh.data(), b"before", "data_received after close()");
    sh.assert_complete();
}

/// TP-06 (MUST): `abort()` discards the buffer; `connection_lost(None)`
/// follows soon, never from inside `abort()`; aborting twice, or abort then
/// close, raises nothing.
pub fn abort_discards_and_loses_later(env: &Env) {
    let (t, sh, mut peer) = connected(env, Recorder::new);
    let written = write_until_buffered(&t, 0, 1 << 20);
    t.abort();
    assert!(!sh.lost(), "connection_lost ran inside abort()");
    assert_eq!(t.write_buffer_size(), 0, "abort() keeps the buffer");
    t.abort();
    t.close();
    assert!(t.is_closing());
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
    assert_eq!(sh.events().last(), Some(&Event::Lost(None)));
    let mut got = Vec::new();
    let _ = peer.read_to_end(&mut got);
    assert!(
        got.len() < written,
        "the peer got all {written} bytes: nothing was discarded"
    );
}

/// TP-07 (MUST): `eof_received` returning false closes the transport;
/// returning true keeps it half-open and the protocol may still write;
/// `write_eof` sends EOF after the buffered data, is idempotent, and
/// writing after it is an error; `can_write_eof` is true for TCP.
pub fn eof_half_close_and_write_eof(env: &Env) {
    // eof_received → false: the transport closes itself.
    let (_t, sh, mut peer) = connected(env, Recorder::new);
    peer.write_all(b"bye").expect("peer write");
    peer.shutdown(Shutdown::Write).expect("shutdown");
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
    assert_eq!(
        sh.events(),
        [Event::Made, Event::Data(3), Event::Eof, Event::Lost(None)]
    );
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).expect("our side closed too");

    // eof_received → true: half-open, we answer, then close.
    let (_t, sh, mut peer) = connected(env, |sh| {
        let mut r = Recorder::new(sh);
        r.keep_open_on_eof = true;
        r.on_eof = Some(Box::new(|t: &Transport| {
            t.write(b"answer after eof").expect("write while half-open");
            t.close();
        }));
        r
    });
    peer.write_all(b"question").expect("peer write");
    peer.shutdown(Shutdown::Write).expect("shutdown");
    env.run_until_true(|| sh.lost());
    let mut got = Vec::new();
    peer.read_to_end(&mut got).expect("read the answer");
    assert_eq!(got, b"answer after eof");
    sh.assert_complete();

    // write_eof after buffered data; reading goes on.
    let (t, sh, mut peer) = connected(env, Recorder::new);
    assert!(t.can_write_eof(), "can_write_eof() is true for TCP");
    let payload = pattern(2 << 20);
    t.write(&payload).expect("write");
    t.write_eof();
    t.write_eof();
    assert!(t.write(b"x").is_err(), "write after write_eof must fail");
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("read to EOF");
        peer.write_all(b"reply").expect("reply");
        peer.shutdown(Shutdown::Write).expect("shutdown");
        got
    });
    env.run_until_true(|| sh.lost());
    let got = join_on_loop(env, reader);
    assert!(got == payload, "EOF came before all the buffered data");
    assert_eq!(sh.data(), b"reply", "reading stopped after write_eof");
    sh.assert_complete();
}

/// TP-08 (SHOULD): a clean peer close gives `eof_received` then
/// `connection_lost(None)`; a reset gives `connection_lost(err)`.
pub fn clean_close_and_reset_are_told_apart(env: &Env) {
    let (_t, sh, peer) = connected(env, Recorder::new);
    drop(peer);
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
    assert_eq!(sh.events(), [Event::Made, Event::Eof, Event::Lost(None)]);

    let (_t, sh, peer) = connected(env, Recorder::new);
    // SO_LINGER 0: closing sends RST.
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(peer);
    env.run_until_true(|| sh.lost());
    sh.assert_complete();
    let err = sh
        .lost_error()
        .unwrap_or_else(|| panic!("a reset gave connection_lost(None): {:?}", sh.events()));
    assert_eq!(
        err.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionReset),
        "a reset is reported as such: {err}"
    );
}

/// TP-09 (MUST): the server calls the factory once per connection;
/// `Server.close()` refuses new connections but keeps the existing ones,
/// and `wait_closed` resolves after they end; `get_extra_info` answers
/// `sockname`/`peername`/`socket` and the default for an unknown key.
pub fn server_factory_close_and_extra_info(env: &Env) {
    let (server, addr, protos) = echo_server(env);
    assert!(server.is_serving());
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // The factory runs at accept; connection_made may come a turn later.
    env.run_until_true(|| {
        let p = protos.borrow();
        p.len() == 3 && p.iter().all(|s| s.phase() == Phase::Connected)
    });
    let t = protos.borrow()[0].transport();
    assert_eq!(
        t.extra_info("sockname"),
        Some(ExtraInfo::Address(addr.into()))
    );
    let peers: Vec<_> = clients
        .iter()
        .map(|c| c.local_addr().expect("addr"))
        .collect();
    match t.extra_info("peername") {
        Some(ExtraInfo::Address(a)) => assert!(
            a.as_inet().is_some_and(|a| peers.contains(&a)),
            "peername {a:?} is none of the clients {peers:?}"
        ),
        other => panic!("peername: {other:?}"),
    }
    assert!(matches!(t.extra_info("socket"), Some(ExtraInfo::Fd(_))));
    assert_eq!(
        t.extra_info("no such key"),
        None,
        "an unknown key gives the default"
    );

    server.close();
    assert!(!server.is_serving());
    assert!(
        server.socket_fds().is_empty(),
        "a closed server keeps its sockets"
    );
    // A connect now is refused; if another test already reuses the port it
    // may succeed, but it can never reach this server's factory (counted
    // below).
    let late = TcpStream::connect(addr).ok();
    let waited = Rc::new(Cell::new(false));
    let w2 = waited.clone();
    let wait = server.wait_closed();
    env.lp()
        .spawn(async move {
            wait.await.expect("wait_closed");
            w2.set(true);
        })
        .expect("spawn");
    // The existing connections still echo.
    let mut c = clients.remove(1);
    let talker = thread::spawn(move || {
        c.set_read_timeout(Some(super::proto::PEER_LIMIT))
            .expect("timeout");
        c.write_all(b"still here").expect("write");
        let mut buf = [0; 10];
        c.read_exact(&mut buf).expect("echo after Server.close()");
        (c, buf)
    });
    let (c, buf) = join_on_loop(env, talker);
    assert_eq!(&buf, b"still here");
    env.run_briefly();
    assert!(!waited.get(), "wait_closed resolved with connections open");
    drop(c);
    drop(clients);
    env.run_until_true(|| waited.get());
    assert_eq!(protos.borrow().len(), 3, "a factory call after close()");
    drop(late);
    for p in protos.borrow().iter() {
        p.assert_complete();
    }
}

/// TP-10 (SHOULD): `abort()`, `close()` or a panic inside
/// `connection_made`: `create_connection` still completes and
/// `connection_lost` runs once.
pub fn failure_in_connection_made_still_completes(env: &Env) {
    for how in ["abort", "close"] {
        let (t, sh, mut peer) = connected(env, move |sh| {
            let mut r = Recorder::new(sh);
            r.on_made = Some(Box::new(
                move |t: &Transport| {
                    if how == "abort" { t.abort() } else { t.close() }
                },
            ));
            r
        });
        assert!(t.is_closing());
        env.run_until_true(|| sh.lost());
        sh.assert_complete();
        assert_eq!(
            sh.events(),
            [Event::Made, Event::Lost(None)],
            "{how} in connection_made"
        );
        let mut rest = Vec::new();
        let _ = peer.read_to_end(&mut rest);
    }
    let (l, addr) = listener();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let l2 = lost.clone();
    let t = env
        .run_until(env.lp().create_connection(move || PanicInMade(l2), addr))
        .unwrap_or_else(|e| {
            panic!("create_connection failed after a panic in connection_made: {e}")
        });
    env.run_until_true(|| !lost.borrow().is_empty());
    env.run_briefly();
    assert_eq!(
        *lost.borrow(),
        [Some(ErrorKind::Panicked)],
        "connection_lost exactly once, with the panic as its error"
    );
    assert!(t.is_closing());
    let reports = env.take_reports();
    assert_eq!(reports.len(), 1, "the panic is reported once: {reports:?}");
    drop(l);
}

struct PanicInMade(Rc<RefCell<Vec<Option<ErrorKind>>>>);

impl Protocol for PanicInMade {
    fn connection_made(&mut self, _: &Transport) {
        panic!("boom in connection_made");
    }
    fn connection_lost(&mut self, e: Option<oneloop::Error>) {
        self.0.borrow_mut().push(e.map(|e| e.kind()));
    }
}

/// TP-11 (SHOULD): adopting an accepted socket gives the same protocol
/// sequence; bind and connect errors (address in use, refused) fail the
/// create call and create no protocol.
pub fn adopted_socket_and_bind_errors(env: &Env) {
    let lp = env.lp();
    let (l, addr) = listener();
    let mut client = TcpStream::connect(addr).expect("connect");
    let (accepted, _) = l.accept().expect("accept");
    let sh = Shared::new();
    let s2 = sh.clone();
    let _t = env
        .run_until(lp.connect_accepted_socket(move || Recorder::echo(&s2), accepted))
        .unwrap_or_else(|e| panic!("connect_accepted_socket failed: {e}"));
    assert_eq!(sh.events(), [Event::Made]);
    client.write_all(b"adopted").expect("write");
    client.shutdown(Shutdown::Write).expect("shutdown");
    env.run_until_true(|| sh.lost());
    let mut back = Vec::new();
    client.read_to_end(&mut back).expect("read");
    assert_eq!(back, b"adopted");
    sh.assert_complete();

    let made = Rc::new(Cell::new(0));
    let factory = {
        let made = made.clone();
        move || {
            made.set(made.get() + 1);
            Recorder::new(&Shared::new())
        }
    };
    let (_holder, refusing) = refusing_port();
    let err = env
        .run_until(lp.create_connection(factory.clone(), refusing))
        .expect_err("a connect to a closed port succeeded");
    assert_eq!(
        err.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
    let err = env
        .run_until(lp.create_server_with(
            factory.clone(),
            addr,
            ServerOptions::new().reuse_address(false),
        ))
        .expect_err("create_server on a port in use succeeded");
    assert_eq!(
        err.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::AddrInUse),
        "{err}"
    );
    assert!(
        err.to_string().contains(&addr.to_string()),
        "the error must say which address is in use: {err}"
    );
    // A local address already in use by a live connection.
    let (l2, addr2) = listener();
    let first = TcpStream::connect(addr2).expect("connect");
    let local = first.local_addr().expect("addr");
    let err = env
        .run_until(lp.create_connection_with(
            factory,
            addr2,
            ConnectOptions::new().local_addr(local),
        ))
        .expect_err("binding a local address in use succeeded");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert_eq!(made.get(), 0, "a failed create call made a protocol");
    drop((l, l2, first));
}

/// ER-05 (SHOULD): a protocol method that panics goes to the exception
/// handler naming the method; that transport is torn down with
/// `connection_lost` exactly once, and the loop and the other connections
/// carry on.
pub fn protocol_panic_is_contained(env: &Env) {
    let (l, addr) = listener();
    let bad = Rc::new(RefCell::new(Vec::<Event>::new()));
    let b2 = bad.clone();
    let _t1 = env
        .run_until(env.lp().create_connection(move || PanicInData(b2), addr))
        .unwrap_or_else(|e| panic!("create_connection failed: {e}"));
    let (mut p1, _) = l.accept().expect("accept");
    let (t2, good, mut p2) = connected(env, Recorder::echo);
    p1.write_all(b"trigger").expect("write");
    env.run_until_true(|| bad.borrow().iter().any(|e| matches!(e, Event::Lost(_))));
    env.run_briefly();
    assert_eq!(
        *bad.borrow(),
        [Event::Made, Event::Lost(Some(ErrorKind::Panicked))],
        "the panicking protocol's calls"
    );
    let reports = env.take_reports();
    assert_eq!(reports.len(), 1, "one report for one panic: {reports:?}");
    assert!(
        reports[0].contains("data_received")
            && reports[0].contains("deliberate protocol panic (ER-05)"),
        "the report names the method and carries the panic message: {}",
        reports[0]
    );
    p2.write_all(b"fine").expect("write");
    let reader = thread::spawn(move || {
        let mut buf = [0; 4];
        p2.read_exact(&mut buf)
            .expect("the other connection echoes");
        buf
    });
    assert_eq!(&join_on_loop(env, reader), b"fine");
    t2.close();
    env.run_until_true(|| good.lost());
    good.assert_complete();
}

struct PanicInData(Rc<RefCell<Vec<Event>>>);

impl Protocol for PanicInData {
    fn connection_made(&mut self, _: &Transport) {
        self.0.borrow_mut().push(Event::Made);
    }
    fn data_received(&mut self, _: &[u8]) {
        panic!("deliberate protocol panic (ER-05)");
    }
    fn connection_lost(&mut self, e: Option<oneloop::Error>) {
        self.0.borrow_mut().push(Event::Lost(e.map(|e| e.kind())));
    }
}

/// CN-06 (SHOULD): cancelling a pending socket operation — a connect the
/// peer has not answered — releases its fd registration promptly.
///
/// Skipped (with the reason) when the kernel completes the connect anyway:
/// then there is no pending operation to cancel.
pub fn cancelled_connect_releases_its_fd(env: &Env) {
    use socket2::{Domain, Socket, Type};
    let lp = env.lp();
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    l.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    l.listen(0).expect("listen");
    let addr = l
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("an inet address");
    // Fill the accept queue: Linux then drops new SYNs, so a connect stays
    // pending (retransmitting) instead of completing or failing.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    let base = lp.stats().fds;
    let task = lp
        .spawn(lp.create_connection(|| Recorder::new(&Shared::new()), addr))
        .expect("spawn");
    // The address goes through the executor's getaddrinfo first: wait for
    // the socket to be registered (or, on a kernel that let it through, for
    // the connect to finish).
    env.run_until_true(|| task.done() || lp.stats().fds > base);
    if task.done() {
        env.skip(
            "the kernel completed the connect despite the full accept queue: \
             no pending operation to cancel",
        );
    }
    assert_eq!(
        lp.stats().fds,
        base + 1,
        "a pending connect is watched for writability"
    );
    assert!(task.cancel(), "cancel() on the pending connect");
    env.run_briefly();
    env.run_briefly();
    assert!(task.cancelled(), "the connect task was not cancelled");
    assert_eq!(
        lp.stats().fds,
        base,
        "the cancelled connect left its fd registered"
    );
    drop((l, fillers));
}
