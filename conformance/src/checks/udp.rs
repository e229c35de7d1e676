//! `UD`: UDP endpoints — call order, whole datagrams with their source, the
//! default remote address, errors that do not close (PEP 3156 §Datagram
//! Transports, §Datagram Protocols).

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;

use oneloop::{DatagramOptions, DatagramProtocol, DatagramTransport, Error, ErrorKind};

use super::proto::PEER_LIMIT;
use crate::Env;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Made,
    Datagram(Vec<u8>, SocketAddr),
    Error(ErrorKind),
    Lost(Option<ErrorKind>),
}

#[derive(Default)]
struct Record {
    events: Vec<Ev>,
    violations: Vec<String>,
    transport: Option<DatagramTransport>,
}

/// Records every call and checks UD-01's order on each.
#[derive(Clone, Default)]
struct Log(Rc<RefCell<Record>>);

impl Log {
    fn events(&self) -> Vec<Ev> {
        self.0.borrow().events.clone()
    }
    fn datagrams(&self) -> usize {
        self.0
            .borrow()
            .events
            .iter()
            .filter(|e| matches!(e, Ev::Datagram(..)))
            .count()
    }
    fn lost(&self) -> bool {
        self.0
            .borrow()
            .events
            .iter()
            .any(|e| matches!(e, Ev::Lost(_)))
    }
    fn push(&self, e: Ev) {
        let mut s = self.0.borrow_mut();
        let made = s.events.first() == Some(&Ev::Made);
        let lost = s.events.iter().any(|e| matches!(e, Ev::Lost(_)));
        match &e {
            Ev::Made if !s.events.is_empty() => s.violations.push("connection_made twice".into()),
            Ev::Made => {}
            _ if !made => s.violations.push(format!("{e:?} before connection_made")),
            _ if lost => s.violations.push(format!("{e:?} after connection_lost")),
            _ => {}
        }
        s.events.push(e);
    }
    fn assert_complete(&self) {
        let s = self.0.borrow();
        assert!(
            s.violations.is_empty(),
            "UD-01 violated: {:?}",
            s.violations
        );
        let lost = s.events.iter().filter(|e| matches!(e, Ev::Lost(_))).count();
        assert_eq!(lost, 1, "connection_lost exactly once: {:?}", s.events);
    }
}

struct Proto {
    log: Log,
    echo: bool,
}

impl DatagramProtocol for Proto {
    fn connection_made(&mut self, t: &DatagramTransport) {
        self.log.push(Ev::Made);
        self.log.0.borrow_mut().transport = Some(t.clone());
    }
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        self.log.push(Ev::Datagram(data.to_vec(), addr));
        if self.echo {
            let t = self.log.0.borrow().transport.clone();
            if let Some(t) = t {
                t.sendto(data, Some(addr)).expect("echo sendto");
            }
        }
    }
    fn error_received(&mut self, error: Error) {
        self.log.push(Ev::Error(error.kind()));
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        self.log.push(Ev::Lost(error.map(|e| e.kind())));
        self.log.0.borrow_mut().transport = None;
    }
}

fn endpoint(env: &Env, opts: DatagramOptions, echo: bool) -> (DatagramTransport, Log) {
    let log = Log::default();
    let l2 = log.clone();
    let t = env
        .run_until(
            env.lp()
                .create_datagram_endpoint(move || Proto { log: l2, echo }, opts),
        )
        .unwrap_or_else(|e| panic!("create_datagram_endpoint failed: {e}"));
    (t, log)
}

fn local() -> DatagramOptions {
    DatagramOptions::new().local_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn peer() -> UdpSocket {
    let p = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP peer");
    p.set_read_timeout(Some(PEER_LIMIT)).expect("timeout");
    p
}

/// UD-01 (MUST): `connection_made` once, then any mix of
/// `datagram_received` and `error_received`, then `connection_lost` once.
pub fn datagram_call_order(env: &Env) {
    let (t, log) = endpoint(env, local(), false);
    assert_eq!(
        log.events(),
        [Ev::Made],
        "the endpoint resolved before connection_made"
    );
    let me = t.sockname().expect("sockname");
    let p = peer();
    for i in 0..5u8 {
        p.send_to(&[i], me).expect("send");
    }
    env.run_until_true(|| log.datagrams() == 5);
    t.close();
    env.run_until_true(|| log.lost());
    env.run_for(std::time::Duration::from_millis(5));
    log.assert_complete();
    assert_eq!(log.events().last(), Some(&Ev::Lost(None)));
}

/// UD-02 (MUST): `sendto(data, addr)` sends one datagram; without an
/// address the `remote_addr` given at creation is used; each datagram
/// arrives whole with its source address.
pub fn datagrams_whole_with_source(env: &Env) {
    let (t, log) = endpoint(env, local(), true);
    let me = t.sockname().expect("sockname");
    let p = peer();
    let from = p.local_addr().expect("addr");
    let sizes = [1usize, 1000, 60_000];
    for (i, n) in sizes.iter().enumerate() {
        p.send_to(&vec![i as u8; *n], me).expect("send");
    }
    env.run_until_true(|| log.datagrams() == sizes.len());
    let events = log.events();
    for (i, n) in sizes.iter().enumerate() {
        assert_eq!(
            events[i + 1],
            Ev::Datagram(vec![i as u8; *n], from),
            "datagram {i} not whole or without its source"
        );
        let mut buf = vec![0; 65_536];
        let (got, src) = p.recv_from(&mut buf).expect("the echo");
        assert_eq!((got, src), (*n, me), "sendto(data, addr) sent it whole");
    }
    assert!(
        t.sendto(b"x", None).is_err(),
        "sendto without an address on an unconnected endpoint must fail"
    );
    t.close();
    env.run_until_true(|| log.lost());
    log.assert_complete();

    let p = peer();
    let (t, log) = endpoint(
        env,
        DatagramOptions::new().remote_addr(p.local_addr().expect("addr")),
        false,
    );
    assert_eq!(t.peername(), p.local_addr().ok(), "peername is the remote");
    // A connected endpoint sends to its remote only (asyncio: ValueError).
    let elsewhere = SocketAddr::from(([127, 0, 0, 1], 9));
    assert_eq!(
        t.sendto(b"x", Some(elsewhere)).map_err(|e| e.kind()),
        Err(ErrorKind::InvalidArgument),
        "sendto another address on an endpoint with a remote_addr"
    );
    t.sendto(b"to the remote", None).expect("sendto the remote");
    let mut buf = [0; 64];
    let (n, src) = p.recv_from(&mut buf).expect("recv");
    assert_eq!(&buf[..n], b"to the remote");
    assert_eq!(Some(src), t.sockname());
    t.close();
    env.run_until_true(|| log.lost());
    log.assert_complete();
}

/// UD-03 (SHOULD): `error_received` does not close the endpoint: sending to
/// a port with no listener does not break later receives.
pub fn error_received_does_not_close(env: &Env) {
    // Bound, so no other socket takes the port, and connected elsewhere, so
    // it matches none of our datagrams: the kernel answers each with ICMP
    // port unreachable. (Binding and releasing a port races.)
    let holder = UdpSocket::bind("127.0.0.1:0").expect("bind");
    holder.connect("127.0.0.1:9").expect("connect elsewhere");
    let addr = holder.local_addr().expect("addr");
    let (t, log) = endpoint(env, DatagramOptions::new().remote_addr(addr), false);
    t.sendto(b"anyone?", None).expect("sendto");
    env.run_until_true(|| log.events().iter().any(|e| matches!(e, Ev::Error(_))));
    assert!(
        log.events().contains(&Ev::Error(ErrorKind::Io)),
        "error_received must get the OS error: {:?}",
        log.events()
    );
    assert!(!t.is_closing(), "error_received closed the endpoint");
    // Someone listens there now and answers.
    holder
        .connect(t.sockname().expect("sockname"))
        .expect("connect to the endpoint");
    holder.send(b"here").expect("send");
    env.run_until_true(|| log.datagrams() == 1);
    t.close();
    env.run_until_true(|| log.lost());
    log.assert_complete();
}

/// UD-04 (MUST): `close()` leads to `connection_lost(None)`, `abort()`
/// discards queued datagrams, and an endpoint can be made from an already
/// bound socket.
pub fn close_abort_and_adopted_socket(env: &Env) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    let log = Log::default();
    let l2 = log.clone();
    let t = env
        .run_until(env.lp().create_datagram_endpoint_from_socket(
            move || Proto {
                log: l2,
                echo: false,
            },
            sock,
        ))
        .unwrap_or_else(|e| panic!("an endpoint from a bound socket failed: {e}"));
    assert_eq!(t.sockname(), Some(addr));
    peer().send_to(b"hi", addr).expect("send");
    env.run_until_true(|| log.datagrams() == 1);
    t.close();
    assert!(t.is_closing());
    env.run_until_true(|| log.lost());
    log.assert_complete();
    assert_eq!(log.events().last(), Some(&Ev::Lost(None)));

    let (t, log) = endpoint(env, local(), false);
    let p = peer();
    let to = p.local_addr().expect("addr");
    // Queue more than the socket takes at once, then abort.
    for _ in 0..2000 {
        let _ = t.sendto(&[1u8; 60_000], Some(to));
    }
    t.abort();
    assert_eq!(t.write_buffer_size(), 0, "abort() kept queued datagrams");
    assert!(!log.lost(), "connection_lost ran inside abort()");
    env.run_until_true(|| log.lost());
    log.assert_complete();
}
