//! Zero-copy reads: a protocol that hands the transport its own buffer
//! (`Protocol::get_buffer` / `buffer_updated`, asyncio's `BufferedProtocol`).

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, ExceptionContext, Loop, Protocol, Transport};

/// What the protocol saw, in order.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<String>,
    bytes: Vec<u8>,
}

/// Reads into its own buffer when `buffered(n)` says so for the n-th read,
/// through `data_received` otherwise; echoes everything.
struct Mixed {
    buf: Vec<u8>,
    reads: usize,
    buffered: fn(usize) -> bool,
    seen: Rc<RefCell<Seen>>,
    transport: Option<Transport>,
}

impl Mixed {
    fn got(&mut self, data: &[u8], how: &str) {
        assert!(!data.is_empty(), "{how} with no bytes");
        let mut seen = self.seen.borrow_mut();
        seen.bytes.extend_from_slice(data);
        if seen.events.last().map(String::as_str) != Some(how) {
            seen.events.push(how.to_owned());
        }
        if let Some(t) = &self.transport {
            t.write(data).unwrap();
        }
    }
}

impl Protocol for Mixed {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.seen.borrow_mut().events.push("made".into());
    }
    fn get_buffer(&mut self, _size_hint: usize) -> Option<&mut Vec<u8>> {
        self.reads += 1;
        if !(self.buffered)(self.reads) {
            return None;
        }
        self.buf.clear();
        self.buf.reserve(1000 + self.reads % 7 * 100);
        Some(&mut self.buf)
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        let start = self.buf.len() - nbytes;
        let data = std::mem::take(&mut self.buf);
        self.got(&data[start..], "buffer_updated");
        self.buf = data;
    }
    fn data_received(&mut self, data: &[u8]) {
        self.got(data, "data_received");
    }
    fn eof_received(&mut self) -> bool {
        self.seen.borrow_mut().events.push("eof".into());
        false
    }
    fn connection_lost(&mut self, _error: Option<oneloop::Error>) {
        self.seen.borrow_mut().events.push("lost".into());
        self.transport = None;
    }
}

/// Serve one connection with `Mixed`, send `payload` and half-close, read
/// the echo; returns what the protocol saw and the echo.
fn echo_through(buffered: fn(usize) -> bool, payload: &[u8]) -> (Seen, Vec<u8>) {
    let lp = Loop::new().unwrap();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = seen.clone();
    let server = lp
        .run_until_complete(lp.create_server(
            move || Mixed {
                buf: Vec::new(),
                reads: 0,
                buffered,
                seen: s.clone(),
                transport: None,
            },
            "127.0.0.1:0",
        ))
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let payload = payload.to_vec();
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let writer = {
            let mut c = c.try_clone().unwrap();
            std::thread::spawn(move || {
                c.write_all(&payload).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        back
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client.is_finished() || !seen.borrow().events.iter().any(|e| e == "lost") {
        assert!(Instant::now() < deadline, "the echo never finished");
        lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))
            .unwrap()
            .unwrap();
    }
    let back = client.join().unwrap();
    server.close();
    lp.close().unwrap();
    let seen = std::mem::take(&mut *seen.borrow_mut());
    (seen, back)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_buffered_protocol_gets_every_byte_in_order_and_the_usual_call_order() {
    let data = payload(1 << 20);
    let (seen, back) = echo_through(|_| true, &data);
    assert!(
        seen.bytes == data,
        "the protocol did not see the bytes sent, in order"
    );
    assert!(back == data, "the echo differs");
    assert_eq!(seen.events, ["made", "buffer_updated", "eof", "lost"]);
}

#[test]
fn a_protocol_may_switch_between_its_buffer_and_data_received() {
    let data = payload(300_000);
    let (seen, back) = echo_through(|n| n % 3 != 0, &data);
    assert!(
        seen.bytes == data && back == data,
        "bytes lost or reordered"
    );
    assert!(
        seen.events.contains(&"buffer_updated".to_owned()),
        "{:?}",
        seen.events
    );
    assert!(
        seen.events.contains(&"data_received".to_owned()),
        "{:?}",
        seen.events
    );
    assert_eq!(seen.events.first().unwrap(), "made");
    assert_eq!(&seen.events[seen.events.len() - 2..], ["eof", "lost"]);
}

/// Panics in `get_buffer`.
struct Broken(Rc<RefCell<Vec<String>>>);

impl Protocol for Broken {
    fn get_buffer(&mut self, _size_hint: usize) -> Option<&mut Vec<u8>> {
        panic!("no buffer today");
    }
    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        let kind = error.map(|e| e.kind());
        self.0.borrow_mut().push(format!("lost {kind:?}"));
    }
}

#[test]
fn a_panic_in_get_buffer_is_reported_and_aborts_the_connection_once() {
    let lp = Loop::new().unwrap();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &Loop, ctx: &ExceptionContext| {
        r.borrow_mut().push(ctx.message().to_owned())
    }));
    let lost = Rc::new(RefCell::new(Vec::new()));
    let l = lost.clone();
    let server = lp
        .run_until_complete(lp.create_server(move || Broken(l.clone()), "127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"hello").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lost.borrow().is_empty() {
        assert!(Instant::now() < deadline, "connection_lost never came");
        lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        *lost.borrow(),
        [format!("lost {:?}", Some(ErrorKind::Panicked))]
    );
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("get_buffer"), "{reports:?}");
    server.close();
    lp.close().unwrap();
}

/// Sends its chunks with one `writelines` as soon as it is connected.
struct Lines(Vec<Vec<u8>>);

impl Protocol for Lines {
    fn connection_made(&mut self, transport: &Transport) {
        transport.writelines(std::mem::take(&mut self.0)).unwrap();
        transport.close();
    }
}

/// `writelines` sends its chunks in order, in one vectored send, and what
/// the socket does not take at once (a peer that reads only later) is
/// buffered from the right byte of the right chunk.
#[test]
fn writelines_keeps_order_across_chunks_and_a_partial_send() {
    let lp = Loop::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // 3 000 chunks of odd sizes, 24 MiB in all: more than IOV_MAX parts and
    // more than the socket takes before the peer reads.
    let chunks: Vec<Vec<u8>> = (0..3000)
        .map(|i| {
            let len = 1 + i * 37 % 16_000;
            (0..len).map(|j| ((i + j) % 253) as u8).collect()
        })
        .collect();
    let want: Vec<u8> = chunks.concat();
    let transport = lp
        .run_until_complete(lp.create_connection(move || Lines(chunks), addr))
        .unwrap()
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        got
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "the chunks never all arrived");
        lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))
            .unwrap()
            .unwrap();
    }
    let got = reader.join().unwrap();
    assert_eq!(got.len(), want.len(), "bytes lost or added");
    assert!(got == want, "chunks reordered or bytes misplaced");
    assert_eq!(transport.write_buffer_size(), 0);
    lp.close().unwrap();
}

/// A stream's vectored write takes several buffers at once, in order, and
/// reads come back whole through `fill_buf`/`consume` (no copy).
#[test]
fn a_stream_writes_vectored_and_reads_through_fill_buf() {
    use futures::io::{AsyncBufReadExt, AsyncWriteExt};
    let lp = Loop::new().unwrap();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let got = lp
        .run_until_complete({
            let lp = lp.clone();
            async move {
                let mut a = lp.adopt_stream(a).await?;
                let mut b = lp.adopt_stream(b).await?;
                let parts = [&b"one "[..], b"two ", b"", b"three"];
                let slices: Vec<std::io::IoSlice<'_>> =
                    parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
                let n = a.write_vectored(&slices).await.unwrap();
                assert_eq!(n, 13, "a small vectored write is taken whole");
                a.close().await.unwrap();
                let mut got = Vec::new();
                loop {
                    let chunk = b.fill_buf().await.unwrap();
                    if chunk.is_empty() {
                        break;
                    }
                    let n = chunk.len();
                    got.extend_from_slice(chunk);
                    b.consume_unpin(n);
                }
                Ok::<_, oneloop::Error>(got)
            }
        })
        .unwrap()
        .unwrap();
    assert_eq!(got, b"one two three");
    lp.close().unwrap();
}
