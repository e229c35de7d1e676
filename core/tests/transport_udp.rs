//! UDP endpoints on the default loop: UD-01…UD-04.

mod transport_fixtures;

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use oneloop::{DatagramOptions, DatagramProtocol, DatagramTransport, Error, ErrorKind};
use transport_fixtures::{new_loop, run, run_until};

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Made,
    Datagram(Vec<u8>, SocketAddr),
    Error(ErrorKind),
    Lost(Option<ErrorKind>),
}

/// Events, violations, and the transport while connected.
type Record = (Vec<Ev>, Vec<String>, Option<DatagramTransport>);

/// Records every call and checks UD-01's order.
#[derive(Clone, Default)]
struct Log(Rc<RefCell<Record>>);

impl Log {
    fn events(&self) -> Vec<Ev> {
        self.0.borrow().0.clone()
    }
    fn datagrams(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Ev::Datagram(..)))
            .count()
    }
    fn lost(&self) -> bool {
        self.events().iter().any(|e| matches!(e, Ev::Lost(_)))
    }
    fn push(&self, e: Ev) {
        let mut s = self.0.borrow_mut();
        let made = s.0.first() == Some(&Ev::Made);
        let lost = s.0.iter().any(|e| matches!(e, Ev::Lost(_)));
        match &e {
            Ev::Made if !s.0.is_empty() => s.1.push("made twice".into()),
            Ev::Made => {}
            _ if !made => s.1.push(format!("{e:?} before made")),
            _ if lost => s.1.push(format!("{e:?} after lost")),
            _ => {}
        }
        s.0.push(e);
    }
    fn assert_complete(&self) {
        let s = self.0.borrow();
        assert!(s.1.is_empty(), "UD-01 violations: {:?}", s.1);
        assert_eq!(s.0.iter().filter(|e| matches!(e, Ev::Lost(_))).count(), 1);
    }
}

struct Proto {
    log: Log,
    echo: bool,
}

impl DatagramProtocol for Proto {
    fn connection_made(&mut self, t: &DatagramTransport) {
        self.log.push(Ev::Made);
        self.log.0.borrow_mut().2 = Some(t.clone());
    }
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        self.log.push(Ev::Datagram(data.to_vec(), addr));
        if self.echo {
            let t = self.log.0.borrow().2.clone().unwrap();
            t.sendto(data, Some(addr)).unwrap();
        }
    }
    fn error_received(&mut self, error: Error) {
        self.log.push(Ev::Error(error.kind()));
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        self.log.push(Ev::Lost(error.map(|e| e.kind())));
        self.log.0.borrow_mut().2 = None;
    }
}

fn local() -> DatagramOptions {
    DatagramOptions::new().local_addr("127.0.0.1:0".parse().unwrap())
}

#[test]
fn ud01_ud02_datagrams_arrive_whole_with_their_source() {
    let lp = new_loop();
    let log = Log::default();
    let l2 = log.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_datagram_endpoint(
            move || Proto {
                log: l2,
                echo: true,
            },
            local(),
        ),
    )
    .unwrap();
    assert_eq!(log.events(), [Ev::Made], "resolved after connection_made");
    let me = t.sockname().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let sizes = [1usize, 1000, 60_000];
    for (i, n) in sizes.iter().enumerate() {
        peer.send_to(&vec![i as u8; *n], me).unwrap();
    }
    run_until(&lp, LIMIT, || log.datagrams() == 3);
    let from = peer.local_addr().unwrap();
    for (i, n) in sizes.iter().enumerate() {
        assert_eq!(log.events()[i + 1], Ev::Datagram(vec![i as u8; *n], from));
        let mut buf = vec![0; 65_536];
        let (got, src) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((got, src), (*n, me), "echoed whole");
    }
    t.close();
    assert!(t.is_closing());
    run_until(&lp, LIMIT, || log.lost());
    log.assert_complete();
    assert_eq!(log.events().last(), Some(&Ev::Lost(None)));
}

#[test]
fn ud02_the_remote_address_is_the_default_destination() {
    let lp = new_loop();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let log = Log::default();
    let l2 = log.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_datagram_endpoint(
            move || Proto {
                log: l2,
                echo: false,
            },
            DatagramOptions::new().remote_addr(peer.local_addr().unwrap()),
        ),
    )
    .unwrap();
    assert_eq!(t.peername(), peer.local_addr().ok());
    t.sendto(b"to the remote", None).unwrap();
    let mut buf = [0; 64];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to the remote");
    assert_eq!(Some(from), t.sockname());
    let elsewhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(
        t.sendto(b"x", Some(elsewhere)).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    t.abort();
    run_until(&lp, LIMIT, || log.lost());
    log.assert_complete();
}

#[test]
fn ud02_an_unconnected_endpoint_needs_an_address() {
    let lp = new_loop();
    let log = Log::default();
    let l2 = log.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_datagram_endpoint(
            move || Proto {
                log: l2,
                echo: false,
            },
            local(),
        ),
    )
    .unwrap();
    assert_eq!(
        t.sendto(b"x", None).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    t.close();
    assert_eq!(
        t.sendto(b"x", t.sockname()).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    run_until(&lp, LIMIT, || log.lost());
    let err = run(
        &lp,
        LIMIT,
        lp.create_datagram_endpoint(|| -> Proto { unreachable!() }, DatagramOptions::new()),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// UD-03: sending to a port nobody listens on gives `error_received`, and
/// the endpoint goes on receiving.
#[test]
fn ud03_an_unreachable_port_is_error_received_not_the_end() {
    let lp = new_loop();
    // Bound, so no other socket takes the port, and connected elsewhere, so
    // it matches none of our datagrams: the kernel answers each with ICMP
    // port unreachable. (Binding and releasing a port races.)
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    holder.connect("127.0.0.1:9").unwrap();
    let addr = holder.local_addr().unwrap();
    let log = Log::default();
    let l2 = log.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_datagram_endpoint(
            move || Proto {
                log: l2,
                echo: false,
            },
            DatagramOptions::new().remote_addr(addr),
        ),
    )
    .unwrap();
    t.sendto(b"anyone?", None).unwrap();
    run_until(&lp, LIMIT, || {
        log.events()
            .iter()
            .any(|e| matches!(e, Ev::Error(ErrorKind::Io)))
    });
    assert!(!t.is_closing(), "still open");
    // Someone listens there now: it can reach us.
    holder.connect(t.sockname().unwrap()).unwrap();
    holder.send(b"here").unwrap();
    run_until(&lp, LIMIT, || log.datagrams() == 1);
    t.close();
    run_until(&lp, LIMIT, || log.lost());
    log.assert_complete();
}

#[test]
fn ud04_an_endpoint_from_a_bound_socket() {
    let lp = new_loop();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let log = Log::default();
    let l2 = log.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_datagram_endpoint_from_socket(
            move || Proto {
                log: l2,
                echo: false,
            },
            sock,
        ),
    )
    .unwrap();
    assert_eq!(t.sockname(), Some(addr));
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"hi", addr)
        .unwrap();
    run_until(&lp, LIMIT, || log.datagrams() == 1);
    t.close();
    run_until(&lp, LIMIT, || log.lost());
    log.assert_complete();
}
