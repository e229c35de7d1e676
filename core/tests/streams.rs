//! Streams (`futures::io` reader/writer pairs over protocols) on the default loop.
//!
//! Not the suite's: oneloop's own API, which no PEP guarantee covers.

mod transport_fixtures;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use futures::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use oneloop::{Loop, StreamReader, StreamWriter};
use transport_fixtures::{new_loop, run, run_until};

const LIMIT: Duration = Duration::from_secs(10);

async fn echo(mut r: StreamReader, mut w: StreamWriter) {
    let mut buf = vec![0; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 253) as u8).collect()
}

#[test]
fn a_stream_echo_server_and_client_move_4_mib_both_ways() {
    let lp = new_loop();
    let server = run(&lp, LIMIT, lp.start_server(echo, "127.0.0.1:0")).unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let payload = pattern(4 << 20);
    let p2 = payload.clone();
    let lp2 = lp.clone();
    let back = run(&lp, LIMIT, async move {
        let (r, mut w) = lp2.open_connection(addr).await.unwrap();
        // Write and read concurrently: neither side may deadlock on the other.
        let writer = lp2
            .spawn(async move {
                w.write_all(&p2).await.unwrap();
                w.flush().await.unwrap();
                w.close().await.unwrap();
                w
            })
            .unwrap();
        let mut r = r;
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert!(r.at_eof());
        drop(writer.await.unwrap());
        back
    });
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "bytes differ");
    server.close();
    run(&lp, LIMIT, server.wait_closed()).unwrap();
}

#[test]
fn buf_read_lines_from_a_peer() {
    let lp = new_loop();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"one\ntwo\nthree").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    });
    let lp2 = lp.clone();
    let lines = run(&lp, LIMIT, async move {
        let (r, mut w) = lp2.open_connection(addr).await.unwrap();
        let mut lines = Vec::new();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        while r.read_line(&mut line).await.unwrap() > 0 {
            lines.push(std::mem::take(&mut line));
        }
        w.write_all(b"thanks").await.unwrap();
        drop((r, w)); // both halves gone: the transport flushes and closes
        lines
    });
    assert_eq!(lines, ["one\n", "two\n", "three"]);
    let reply = {
        let mut done = false;
        run_until(&lp, LIMIT, || {
            done = done || peer.is_finished();
            done
        });
        peer.join().unwrap()
    };
    assert_eq!(reply, "thanks");
}

/// A reader that does not read makes the transport stop reading: the
/// peer is pushed back instead of the process buffering without bound.
#[test]
fn a_slow_reader_pauses_the_transport() {
    let lp = new_loop();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (r, w) = run(&lp, LIMIT, lp.open_connection(addr)).unwrap();
    let (mut peer, _) = l.accept().unwrap();
    peer.set_nonblocking(true).unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut sent = 0usize;
    let mut blocked = false;
    for _ in 0..10_000 {
        match peer.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Let the loop read what it will, then try once more.
                run(&lp, LIMIT, oneloop::sleep(Duration::from_millis(5))).unwrap();
                match peer.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            Err(e) => panic!("{e}"),
        }
        let lp2 = lp.clone();
        lp.call_soon(move || lp2.stop()).unwrap();
        lp.run_forever().unwrap();
    }
    assert!(blocked, "the peer was pushed back after {sent} bytes");
    assert!(!r.transport().is_reading(), "the transport paused reading");
    // Reading everything resumes the transport and loses nothing.
    peer.shutdown(Shutdown::Write).unwrap();
    let got = run(&lp, LIMIT, async move {
        let mut r = r;
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        (r, got.len())
    });
    assert_eq!(got.1, sent);
    drop((got.0, w));
}

#[test]
fn a_reset_is_an_error_for_the_reader_and_the_writer() {
    let lp = new_loop();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (r, w) = run(&lp, LIMIT, lp.open_connection(addr)).unwrap();
    let (peer, _) = l.accept().unwrap();
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    let (re, we) = run(&lp, LIMIT, async move {
        let (mut r, mut w) = (r, w);
        let mut buf = [0; 16];
        let re = r.read(&mut buf).await.unwrap_err();
        let we = w.write_all(b"x").await.unwrap_err();
        (re, we)
    });
    assert_eq!(re.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(we.kind(), std::io::ErrorKind::ConnectionReset);
}

/// Stream handlers run as tasks; the server counts their connections.
#[test]
fn start_server_runs_one_handler_task_per_connection() {
    let lp = new_loop();
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let s2 = seen.clone();
    let server = run(
        &lp,
        LIMIT,
        lp.start_server(
            move |r, mut w| {
                let seen = s2.clone();
                async move {
                    let mut r = BufReader::new(r);
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    seen.borrow_mut().push(line.clone());
                    w.write_all(line.to_uppercase().as_bytes()).await.unwrap();
                }
            },
            "127.0.0.1:0",
        ),
    )
    .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(LIMIT)).unwrap();
                writeln!(s, "hello {i}").unwrap();
                let mut back = String::new();
                s.read_to_string(&mut back).unwrap();
                back
            })
        })
        .collect();
    run_until(&lp, LIMIT, || clients.iter().all(|c| c.is_finished()));
    let mut answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    answers.sort();
    assert_eq!(answers, ["HELLO 0\n", "HELLO 1\n", "HELLO 2\n"]);
    assert_eq!(seen.borrow().len(), 3);
    run_until(&lp, LIMIT, || server.active_connections() == 0);
    server.close();
    run(&lp, LIMIT, server.wait_closed()).unwrap();
}

/// Streams work with any `futures-io` code: `futures::io::copy` between two
/// oneloop streams.
#[test]
fn futures_io_copy_runs_on_oneloop_streams() {
    let lp: Loop = new_loop();
    let server = run(
        &lp,
        LIMIT,
        lp.start_server(
            |r, mut w| async move {
                futures::io::copy(r, &mut w).await.unwrap();
            },
            "127.0.0.1:0",
        ),
    )
    .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let lp2 = lp.clone();
    let out = run(&lp, LIMIT, async move {
        let (mut r, mut w) = lp2.open_connection(addr).await.unwrap();
        w.write_all(b"through futures::io::copy").await.unwrap();
        w.close().await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    });
    assert_eq!(out, b"through futures::io::copy");
    server.close();
}

/// A writer to a peer that never reads is held at the high-water mark plus
/// one chunk, however much one `write_all` hands over.
#[test]
fn a_huge_write_all_to_a_peer_that_never_reads_stays_bounded() {
    let lp = new_loop();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (r, mut w) = run(&lp, LIMIT, lp.open_connection(addr)).unwrap();
    let (peer, _) = l.accept().unwrap();
    let t = w.transport().clone();
    let (_, high) = t.write_buffer_limits();
    let task = lp
        .spawn(async move {
            let huge = vec![0u8; 64 << 20];
            let _ = w.write_all(&huge).await;
            w
        })
        .unwrap();
    let mut max = 0;
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    run_until(&lp, LIMIT, || {
        max = max.max(t.write_buffer_size());
        std::time::Instant::now() > deadline
    });
    assert!(!task.done(), "the writer waits for the peer");
    assert!(max > 0, "the kernel buffers filled");
    assert!(
        max <= high + 64 * 1024,
        "buffered {max} > high {high} + one chunk"
    );
    task.cancel();
    drop((r, peer));
}

/// `close().await` returns once every buffered byte has gone to the kernel
/// (the `AsyncWrite::poll_close` contract): the loop may close right after
/// and the peer still reads everything, then EOF. The mark is raised so
/// that `write_all` returns with megabytes still buffered; a `close` that
/// only queued the EOF would let `lp.close()` drop them.
#[test]
fn close_returns_after_the_buffered_bytes_went_out_so_closing_the_loop_loses_nothing() {
    let lp = new_loop();
    let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        peer.read_to_end(&mut all).map(|_| all)
    });
    let payload = pattern(4 << 20);
    let p2 = payload.clone();
    let lp2 = lp.clone();
    let buffered_after_write_all = run(&lp, LIMIT, async move {
        let (_, mut w) = lp2.adopt_stream(ours).await.unwrap().into_split();
        w.transport()
            .set_write_buffer_limits(Some(16 << 20), None)
            .unwrap();
        w.write_all(&p2).await.unwrap();
        let buffered = w.transport().write_buffer_size();
        w.close().await.unwrap();
        assert_eq!(w.transport().write_buffer_size(), 0);
        buffered
    });
    assert!(
        buffered_after_write_all > 0,
        "write_all left bytes in the buffer (else the test shows nothing)"
    );
    lp.close().unwrap();
    drop(lp);
    let got = reader.join().unwrap().unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
}

/// A close that cannot finish, because the connection is reset under it,
/// is an error, not a silent success.
#[test]
fn close_is_an_error_when_the_connection_ends_with_bytes_unsent() {
    let lp = new_loop();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (r, mut w) = run(&lp, LIMIT, lp.open_connection(addr)).unwrap();
    let (peer, _) = l.accept().unwrap();
    let t = w.transport().clone();
    t.set_write_buffer_limits(Some(64 << 20), None).unwrap();
    let closing = lp
        .spawn(async move {
            w.write_all(&vec![0u8; 32 << 20]).await.unwrap();
            w.close().await
        })
        .unwrap();
    // The peer never reads: the writer fills the kernel and `close` waits
    // on the rest. Then the peer resets the connection.
    run_until(&lp, LIMIT, || t.write_buffer_size() > 0);
    assert!(!closing.done(), "close waits for the buffered bytes");
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    let err = run(&lp, LIMIT, closing).unwrap().unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{err:?}"
    );
    drop(r);
}

// ---- direct reads: straight from the socket into the caller's buffer ----

/// One loop iteration (LC-05: `stop` before a run makes it one).
fn one_iteration(lp: &Loop) {
    lp.stop();
    lp.run_forever().unwrap();
}

/// A connected pair: ours (adopted by the loop) and the peer's, plus a
/// duplicate of ours to peek at what waits in the kernel.
fn adopted_pair(lp: &Loop) -> (oneloop::Stream, TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ours, _) = l.accept().unwrap();
    let spy = ours.try_clone().unwrap();
    spy.set_nonblocking(true).unwrap();
    let stream = run(lp, LIMIT, lp.adopt_stream(ours)).unwrap();
    (stream, peer, spy)
}

/// A task that makes one read of up to `max` bytes and hands back the
/// reader and what it got.
fn spawn_read(
    lp: &Loop,
    mut r: StreamReader,
    max: usize,
) -> oneloop::Task<(StreamReader, Vec<u8>)> {
    lp.spawn(async move {
        let mut buf = vec![0; max];
        let n = r.read(&mut buf).await.unwrap();
        buf.truncate(n);
        (r, buf)
    })
    .unwrap()
}

/// Bytes waiting in the kernel's receive queue of `spy`'s socket.
fn queued(spy: &TcpStream) -> usize {
    let mut buf = vec![0; 1 << 20];
    match spy.peek(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("{e}"),
    }
}

/// A reader that waited reads the socket itself, into the caller's
/// buffer: bytes nobody asked for yet stay in the kernel (no buffer of
/// ours holds them, no copy is made), the fd stops being watched while
/// nobody reads (a level-triggered fd left unread must not spin the
/// loop), and the next read gets them all, in order.
#[test]
fn a_waiting_reader_reads_straight_from_the_socket_and_leaves_unread_bytes_in_the_kernel() {
    let lp = new_loop();
    let (stream, mut peer, spy) = adopted_pair(&lp);
    let (r, w) = stream.into_split();
    let first = spawn_read(&lp, r, 64);
    one_iteration(&lp); // the read waits
    peer.write_all(b"first").unwrap();
    let (mut r, got) = run(&lp, LIMIT, first).unwrap();
    assert_eq!(got, b"first");

    let payload = pattern(32 * 1024);
    peer.write_all(&payload).unwrap();
    run_until(&lp, LIMIT, || queued(&spy) == payload.len());
    for _ in 0..5 {
        one_iteration(&lp);
    }
    assert_eq!(
        queued(&spy),
        payload.len(),
        "nobody read: the bytes wait in the kernel"
    );
    assert_eq!(lp.stats().fds, 0, "nobody reads: the fd is not watched");

    let back = run(&lp, LIMIT, async move {
        let mut back = vec![0; payload.len()];
        r.read_exact(&mut back).await.unwrap();
        (r, back == payload)
    });
    assert!(back.1, "the bytes arrived whole and in order");
    assert_eq!(queued(&spy), 0);
    drop((back.0, w));
}

/// The peer's EOF found by a direct read: 0, `at_eof`, the transport no
/// longer reading, and the writing half still open (a half-close).
#[test]
fn a_direct_read_finds_the_eof_and_the_writer_still_writes() {
    let lp = new_loop();
    let (stream, mut peer, _spy) = adopted_pair(&lp);
    let (mut r, mut w) = stream.into_split();
    let reading = lp
        .spawn(async move {
            let mut all = Vec::new();
            r.read_to_end(&mut all).await.unwrap();
            assert!(r.at_eof());
            assert!(!r.transport().is_reading(), "the transport saw the EOF");
            w.write_all(b"bye").await.unwrap();
            w.close().await.unwrap();
            (r, all)
        })
        .unwrap();
    one_iteration(&lp); // the read waits
    peer.write_all(b"tail").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let (r, all) = run(&lp, LIMIT, reading).unwrap();
    assert_eq!(all, b"tail");
    let mut reply = Vec::new();
    peer.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"bye");
    drop(r);
}

/// A reset met by a waiting reader's direct read: the reader and the
/// writer both fail with it, through `connection_lost` as on the fd
/// callback's path.
#[test]
fn a_reset_met_by_a_direct_read_fails_the_reader_and_the_writer() {
    let lp = new_loop();
    let (stream, peer, _spy) = adopted_pair(&lp);
    let (mut r, mut w) = stream.into_split();
    let reading = lp
        .spawn(async move {
            let mut buf = [0; 16];
            let re = r.read(&mut buf).await.unwrap_err();
            let we = w.write_all(b"x").await.unwrap_err();
            (re.kind(), we.kind())
        })
        .unwrap();
    one_iteration(&lp); // the read waits
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    let (re, we) = run(&lp, LIMIT, reading).unwrap();
    assert_eq!(re, std::io::ErrorKind::ConnectionReset);
    assert_eq!(we, std::io::ErrorKind::ConnectionReset);
}

/// Bytes the transport read before the reader first waited, a buffer
/// consumed in part (`fill_buf`/`consume`), then direct reads: every byte
/// once, in order.
#[test]
fn buffered_bytes_come_before_direct_reads_and_none_is_lost() {
    let lp = new_loop();
    let (stream, mut peer, spy) = adopted_pair(&lp);
    let (mut r, w) = stream.into_split();
    // Before the reader asks, the transport's own reader takes the bytes.
    peer.write_all(b"abcdef").unwrap();
    run_until(&lp, LIMIT, || queued(&spy) == 0);
    let (mut r, got) = run(&lp, LIMIT, async move {
        let mut got = Vec::new();
        let buf = r.fill_buf().await.unwrap();
        assert_eq!(buf, b"abcdef");
        got.extend_from_slice(&buf[..2]);
        r.consume_unpin(2);
        let mut small = [0; 3];
        let n = r.read(&mut small).await.unwrap(); // from the buffer
        got.extend_from_slice(&small[..n]);
        let mut rest = [0; 64];
        let n = r.read(&mut rest).await.unwrap(); // what is left of it
        got.extend_from_slice(&rest[..n]);
        (r, got)
    });
    assert_eq!(got, b"abcdef");
    // Now the reader reads the socket itself: into its own buffer
    // (`fill_buf`), then into the caller's (`read`).
    let mut got = Vec::new();
    let pending = lp
        .spawn(async move {
            let mut part = Vec::new();
            let buf = r.fill_buf().await.unwrap().to_vec();
            part.extend_from_slice(&buf[..3]);
            r.consume_unpin(3);
            (r, part, buf.len())
        })
        .unwrap();
    one_iteration(&lp); // fill_buf waits
    peer.write_all(b"12345").unwrap();
    let (mut r, part, filled) = run(&lp, LIMIT, pending).unwrap();
    assert_eq!(filled, 5);
    got.extend_from_slice(&part);
    peer.write_all(b"678").unwrap();
    run_until(&lp, LIMIT, || queued(&spy) == 3);
    let (r, rest) = run(&lp, LIMIT, async move {
        let mut rest = Vec::new();
        let mut two = [0; 2];
        let n = r.read(&mut two).await.unwrap(); // the buffer's "45" first
        rest.extend_from_slice(&two[..n]);
        let mut more = [0; 64];
        let n = r.read(&mut more).await.unwrap(); // then the socket's "678"
        rest.extend_from_slice(&more[..n]);
        (r, rest)
    });
    got.extend_from_slice(&rest);
    assert_eq!(got, b"12345678");
    drop((r, w));
}

/// `pause_reading` on a stream's transport holds direct reads back (the
/// bytes wait in the kernel), whether the read was waiting when the pause
/// came or started after it; `resume_reading` delivers them.
#[test]
fn pause_reading_holds_direct_reads_back_and_resume_reading_delivers() {
    let lp = new_loop();
    let (stream, mut peer, spy) = adopted_pair(&lp);
    let (mut r, w) = stream.into_split();
    let t = r.transport().clone();
    let waiting = lp
        .spawn(async move {
            // Exactly the buffer's size: the next read tries the socket
            // again at once rather than waiting for readiness.
            let mut buf = [0; 4];
            r.read_exact(&mut buf).await.unwrap();
            (r, buf.to_vec())
        })
        .unwrap();
    one_iteration(&lp); // the read waits
    t.pause_reading();
    peer.write_all(b"held").unwrap();
    run_until(&lp, LIMIT, || queued(&spy) == 4);
    for _ in 0..3 {
        one_iteration(&lp);
    }
    assert!(!waiting.done(), "paused: the waiting read waits on");
    assert_eq!(queued(&spy), 4);
    t.resume_reading();
    let (r, got) = run(&lp, LIMIT, waiting).unwrap();
    assert_eq!(got, b"held");

    t.pause_reading();
    peer.write_all(b"more").unwrap();
    run_until(&lp, LIMIT, || queued(&spy) == 4);
    let started = spawn_read(&lp, r, 16);
    for _ in 0..3 {
        one_iteration(&lp);
    }
    assert!(!started.done(), "paused: a read started now waits too");
    assert_eq!(queued(&spy), 4);
    t.resume_reading();
    let (r, got) = run(&lp, LIMIT, started).unwrap();
    assert_eq!(got, b"more");
    drop((r, w));
}

/// A reader dropped while its read waited (a cancelled `select!` arm)
/// leaves no waker behind: bytes arriving later wake nobody.
#[test]
fn a_reader_dropped_while_waiting_wakes_nobody_later() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use futures::io::AsyncRead;

    struct Count(AtomicUsize);
    impl futures::task::ArcWake for Count {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let lp = new_loop();
    let (stream, mut peer, _spy) = adopted_pair(&lp);
    let (mut r, w) = stream.into_split();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = futures::task::waker(count.clone());
    let mut buf = [0; 8];
    let polled = std::pin::Pin::new(&mut r).poll_read(&mut Context::from_waker(&waker), &mut buf);
    assert!(
        matches!(polled, Poll::Pending),
        "nothing there yet: the read waits"
    );
    drop(r);
    peer.write_all(b"late").unwrap();
    for _ in 0..3 {
        one_iteration(&lp);
    }
    assert_eq!(count.0.load(Ordering::SeqCst), 0, "nobody was woken");
    drop(w);
}

/// A read waiting for the socket is woken by the poll that reports it, and
/// runs in that same iteration (after the fd's callbacks), not one later:
/// one iteration per request, and no second report of bytes already on
/// their way to the reader.
#[test]
fn a_waiting_read_runs_in_the_iteration_whose_poll_reported_its_socket() {
    let lp = new_loop();
    each_read_in_the_iteration_that_reported_it(&lp);
}

/// Three messages, each sent while a task's read waits: each must be read
/// in the one iteration whose poll reported it.
fn each_read_in_the_iteration_that_reported_it(lp: &Loop) {
    let (stream, mut peer, spy) = adopted_pair(lp);
    let (mut r, w) = stream.into_split();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let reader = lp
        .spawn(async move {
            for _ in 0..3 {
                let mut buf = [0; 64];
                let n = r.read(&mut buf).await.unwrap();
                g.borrow_mut().push(buf[..n].to_vec());
            }
            r
        })
        .unwrap();
    one_iteration(lp); // the read waits
    for (k, msg) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        assert_eq!(got.borrow().len(), k, "nothing read before it was sent");
        peer.write_all(msg).unwrap();
        // In the kernel, so the next poll reports it.
        run_until_queued(&spy, msg.len());
        one_iteration(lp);
        assert_eq!(
            got.borrow().get(k).map(Vec::as_slice),
            Some(msg),
            "read in the iteration whose poll reported it"
        );
    }
    let r = run(lp, LIMIT, reader).unwrap();
    drop((r, w));
}

/// Wait (off the loop) until `n` bytes sit in `spy`'s receive queue.
fn run_until_queued(spy: &TcpStream, n: usize) {
    let deadline = std::time::Instant::now() + LIMIT;
    while queued(spy) < n {
        assert!(std::time::Instant::now() < deadline, "the bytes never came");
        thread::yield_now();
    }
}

/// The reader's task is already queued (woken by something else) when the
/// poll reports its fd, so it runs before the readiness callback that the
/// report queued, finds the fd still `drained` and parks again; the
/// callback then sees that the poll woke the parked task and does not wake
/// it. The read must still complete: the fd, unread and still watched, is
/// reported again by the next poll (level-triggered), which wakes the task
/// parked on the callback. Fails (hangs, then the watchdog) if the
/// callback's "already woken" path stops watching instead.
#[test]
fn a_reader_task_queued_before_its_readiness_callback_still_reads() {
    use futures::channel::mpsc;
    use futures::{FutureExt, StreamExt};
    use std::cell::Cell;
    use std::os::unix::net::UnixStream;
    const ROUNDS: usize = 200;
    let lp = oneloop::Loop::new().unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let got = Rc::new(Cell::new(0usize));
    let lp2 = lp.clone();
    let g = got.clone();
    let out = lp.run_until_complete(oneloop::timeout(Duration::from_secs(10), async move {
        let (mut reader, _w) = lp2.adopt_stream(a).await.unwrap().into_split();
        let (tx, mut rx) = mpsc::unbounded::<()>();
        // One round: in one callback, a byte to the peer and a tick that
        // wakes the reader's task, queued before the poll reports the fd.
        let round = {
            let lp3 = lp2.clone();
            move || {
                let b = b.clone();
                let tx = tx.clone();
                lp3.call_soon(move || {
                    (&*b).write_all(b"x").unwrap();
                    tx.unbounded_send(()).unwrap();
                })
                .unwrap();
            }
        };
        let task = lp2
            .spawn(async move {
                let mut buf = [0u8; 64];
                round();
                loop {
                    futures::select_biased! {
                        _ = rx.next() => {}
                        r = reader.read(&mut buf).fuse() => {
                            let n = r.unwrap();
                            assert!(n > 0);
                            g.set(g.get() + n);
                            if g.get() >= ROUNDS {
                                break;
                            }
                            round();
                        }
                    }
                }
            })
            .unwrap();
        task.await.unwrap();
    }));
    assert!(
        out.unwrap().is_ok(),
        "the reader hung after {} of {ROUNDS} bytes",
        got.get()
    );
}

/// A backend on the native selector that, like the tokio adapter's
/// driver, selects again after each dispatch (what the callbacks left
/// unread is reported for the next iteration) and then once more when the
/// next iteration starts: an fd still ready is reported twice before one
/// dispatch.
struct Reselecting {
    selector: oneloop::native::Selector,
    driver: oneloop::backend::Driver,
    armed: std::cell::Cell<oneloop::backend::NextDispatch>,
}

impl oneloop::backend::Backend for Reselecting {
    fn name(&self) -> &str {
        "reselecting"
    }
    fn arm(&self, next: oneloop::backend::NextDispatch) {
        self.armed.set(next);
    }
    fn remote_waker(&self) -> std::sync::Arc<dyn oneloop::backend::RemoteWake> {
        self.selector.waker()
    }
    fn turn(&self) -> std::io::Result<()> {
        use oneloop::backend::NextDispatch;
        let timeout = match self.armed.get() {
            NextDispatch::Now => Some(Duration::ZERO),
            NextDispatch::OnEvent => None,
            at => at.timeout(std::time::Instant::now(), Duration::from_nanos(1)),
        };
        let Some(lp) = self.driver.target() else {
            return Ok(());
        };
        self.selector.select(timeout, |fd, r| lp.fd_ready(fd, r))?;
        self.selector
            .select(Some(Duration::ZERO), |fd, r| lp.fd_ready(fd, r))?;
        lp.dispatch();
        Ok(())
    }
    fn watch(
        &self,
        fd: std::os::fd::RawFd,
        interest: oneloop::backend::Interest,
    ) -> std::io::Result<()> {
        self.selector.watch(fd, interest)
    }
    fn close(&self) {
        self.selector.clear();
    }
}

/// The poll's wake of a parked reader holds however many times the backend
/// reports the fd before the dispatch: a second report, which finds nobody
/// parked any more, must not make the woken task think the fd was not
/// reported (it would park again and read one iteration late, after the
/// readiness callback the second report queued woke it once more).
#[test]
fn a_parked_read_runs_in_its_iteration_when_the_fd_is_reported_twice() {
    let lp = Loop::with_backend(|driver| {
        Ok(Reselecting {
            selector: oneloop::native::Selector::new()?,
            driver,
            armed: std::cell::Cell::new(oneloop::backend::NextDispatch::OnEvent),
        })
    })
    .unwrap();
    each_read_in_the_iteration_that_reported_it(&lp);
}

/// The native backend, except that it cannot watch fds: a transport's
/// reader fails to register, right after `connection_made`.
struct Unwatching(oneloop::native::NativeBackend);

impl oneloop::backend::Backend for Unwatching {
    fn name(&self) -> &str {
        "unwatching"
    }
    fn arm(&self, next: oneloop::backend::NextDispatch) {
        self.0.arm(next);
    }
    fn remote_waker(&self) -> std::sync::Arc<dyn oneloop::backend::RemoteWake> {
        self.0.remote_waker()
    }
    fn turn(&self) -> std::io::Result<()> {
        self.0.turn()
    }
    // `watch` is the trait's default: `Unsupported`.
}

/// A connection lost between `connection_made` and the task that awaits
/// `adopt_stream` (here: its reader cannot be registered, so the transport
/// closes with that error, and `connection_lost` runs before the task)
/// still gives a stream, whose read and write fail with the connection's
/// error; no panic.
#[test]
fn a_stream_lost_before_its_task_resumes_fails_its_reads_and_writes() {
    use std::os::unix::net::UnixStream;
    let lp =
        Loop::with_backend(|driver| Ok(Unwatching(oneloop::native::NativeBackend::new(driver)?)))
            .unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let adopting = lp.adopt_stream(a);
    let task = lp
        .spawn(async move {
            let mut stream = adopting.await.unwrap();
            let re = stream.read(&mut [0; 8]).await.unwrap_err();
            let we = stream.write_all(b"x").await.unwrap_err();
            (re.to_string(), we.to_string())
        })
        .unwrap();
    let (re, we) = run(&lp, LIMIT, task).expect("no panic in the task");
    assert!(re.contains("cannot watch"), "the connection's error: {re}");
    assert_eq!(re, we, "the reader and the writer fail alike");
}
