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
