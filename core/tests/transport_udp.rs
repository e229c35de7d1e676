//! UDP endpoints beyond the suite's UD checks: the send queue's water marks,
//! asyncio's `DatagramTransport.set_write_buffer_limits` rules.

use std::net::UdpSocket;

use oneloop::{DatagramProtocol, ErrorKind, Loop};

struct Quiet;
impl DatagramProtocol for Quiet {}

#[test]
fn datagram_water_marks_follow_asyncio_rules() {
    let lp = Loop::new().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = lp
        .run_until_complete(lp.create_datagram_endpoint_from_socket(|| Quiet, sock))
        .unwrap()
        .unwrap();
    assert_eq!(t.write_buffer_limits(), (16 * 1024, 64 * 1024));
    t.set_write_buffer_limits(None, Some(1000)).unwrap();
    assert_eq!(
        t.write_buffer_limits(),
        (1000, 4000),
        "high defaults to 4 × low"
    );
    t.set_write_buffer_limits(Some(800), None).unwrap();
    assert_eq!(
        t.write_buffer_limits(),
        (200, 800),
        "low defaults to high / 4"
    );
    let e = t.set_write_buffer_limits(Some(10), Some(20)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        t.write_buffer_limits(),
        (200, 800),
        "a refused change changes nothing"
    );
    t.close();
    lp.close().unwrap();
}

/// Sets its flag when dropped.
struct DropFlag(std::rc::Rc<std::cell::Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Keeps its transport, as the docs tell a protocol that sends to do.
struct Holding(
    Option<oneloop::DatagramTransport>,
    #[allow(dead_code)] DropFlag,
);
impl DatagramProtocol for Holding {
    fn connection_made(&mut self, t: &oneloop::DatagramTransport) {
        self.0 = Some(t.clone());
    }
}

/// A loop with an endpoint whose protocol holds its transport: the loop,
/// the transport, its address, and whether the protocol was dropped.
fn held_endpoint() -> (
    Loop,
    oneloop::DatagramTransport,
    std::net::SocketAddr,
    std::rc::Rc<std::cell::Cell<bool>>,
) {
    let lp = Loop::new().unwrap();
    let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = DropFlag(dropped.clone());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let t = lp
        .run_until_complete(
            lp.create_datagram_endpoint_from_socket(move || Holding(None, flag), sock),
        )
        .unwrap()
        .unwrap();
    (lp, t, addr, dropped)
}

/// An endpoint left open when its loop closes is let go, as a stream
/// transport is (its fd callbacks' `Watch`): its protocol is dropped and
/// its socket closed. Before the fix the protocol and the transport held
/// each other for good once the loop dropped its callbacks, so the
/// socket (and its port) stayed taken for the life of the process.
#[test]
fn an_endpoint_left_open_is_let_go_when_its_loop_closes() {
    let (lp, t, addr, dropped) = held_endpoint();
    drop(t);
    lp.close().unwrap();
    assert!(dropped.get(), "the protocol outlived its closed loop");
    UdpSocket::bind(addr).expect("the endpoint's socket is still open");
}

/// A transport a user still holds after its loop closed answers, and is
/// dropped, without a panic (PI-04's rule, for UDP).
#[test]
fn an_endpoint_held_past_its_loop_is_inert() {
    let (lp, t, addr, dropped) = held_endpoint();
    lp.close().unwrap();
    assert!(dropped.get(), "the protocol outlived its closed loop");
    assert!(t.is_closing());
    assert_eq!(
        t.sendto(b"x", Some(addr)).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    t.close();
    t.abort();
    drop(lp);
    drop(t);
}

/// The same when `close()` queued `connection_lost` and the loop closed
/// before it ran: the queued callback was the endpoint's last hold.
#[test]
fn an_endpoint_closed_but_not_yet_lost_is_let_go_when_its_loop_closes() {
    let (lp, t, addr, dropped) = held_endpoint();
    t.close();
    drop(t);
    lp.close().unwrap();
    assert!(dropped.get(), "the protocol outlived its closed loop");
    UdpSocket::bind(addr).expect("the endpoint's socket is still open");
}
