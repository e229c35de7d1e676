//! hyper's servers and clients over oneloop, on the default loop: http1 and
//! http2, `header_read_timeout`, the timer's reset and deadlines, and a
//! peer that resets mid-body. (The same server and client on all nine
//! loop modes are a column of the interop matrix, `interop/`.)

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::rt::Timer;
use hyper::{Request, Response};
use oneloop::{Loop, Server, Stream};
use oneloop_hyper::{HyperIo, LoopExecutor, LoopTimer};

const LIMIT: Duration = Duration::from_secs(10);

/// Run `body` as the loop's root future, failing after [`LIMIT`].
fn run<T: 'static>(lp: &Loop, body: impl std::future::Future<Output = T> + 'static) -> T {
    let remote = lp.remote();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LIMIT) {
            let _ = remote.stop();
        }
    });
    let out = lp
        .run_until_complete(body)
        .expect("watchdog: the test ran past its limit");
    drop(tx);
    watchdog.join().unwrap();
    out
}

async fn hello(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello, {} bytes",
        body.len()
    )))))
}

/// A hyper server on `lp`: http1 or http2 per connection, with a read
/// timeout for the request head.
async fn serve(lp: &Loop, http2: bool, head_timeout: Duration) -> (Server, SocketAddr) {
    let exec = LoopExecutor::new(lp);
    let timer = LoopTimer::new(lp);
    let server = lp
        .start_server(
            move |r, w| {
                let io = HyperIo::new(Stream::join(r, w).unwrap());
                let service = hyper::service::service_fn(hello);
                let (exec, timer) = (exec.clone(), timer.clone());
                async move {
                    let _ = if http2 {
                        hyper::server::conn::http2::Builder::new(exec)
                            .timer(timer)
                            .serve_connection(io, service)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .timer(timer)
                            .header_read_timeout(head_timeout)
                            .serve_connection(io, service)
                            .await
                    };
                }
            },
            "127.0.0.1:0",
        )
        .await
        .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    (server, addr)
}

#[test]
fn http1_and_http2_servers_and_clients_on_one_thread() {
    let lp = Loop::new().unwrap();
    let got = run(&lp, async {
        let lp = oneloop::get_running_loop().unwrap();
        let mut got = Vec::new();
        for http2 in [false, true] {
            let (server, addr) = serve(&lp, http2, Duration::from_secs(5)).await;
            let io = HyperIo::new(lp.open_stream(addr).await.unwrap());
            let body = if http2 {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(LoopExecutor::new(&lp), io)
                        .await
                        .unwrap();
                lp.spawn(conn).unwrap();
                let req = Request::post("/")
                    .body(Full::new(Bytes::from("abc")))
                    .unwrap();
                sender
                    .send_request(req)
                    .await
                    .unwrap()
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
            } else {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                lp.spawn(conn).unwrap();
                let req = Request::post("/")
                    .body(Full::new(Bytes::from("abcd")))
                    .unwrap();
                sender
                    .send_request(req)
                    .await
                    .unwrap()
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
            };
            got.push(body.to_bytes());
            server.close();
        }
        got
    });
    assert_eq!(got, ["hello, 4 bytes", "hello, 3 bytes"]);
    lp.close().unwrap();
}

#[test]
fn header_read_timeout_closes_a_connection_whose_head_never_ends() {
    let lp = Loop::new().unwrap();
    let timeout = Duration::from_millis(50);
    let (waited, read) = run(&lp, async move {
        let lp = oneloop::get_running_loop().unwrap();
        let (server, addr) = serve(&lp, false, timeout).await;
        use futures::io::{AsyncReadExt, AsyncWriteExt};
        // Before connecting: hyper's head timer starts when it accepts.
        let start = Instant::now();
        let mut stream = lp.open_stream(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap(); // no blank line
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest).await.map(|_| rest);
        server.close();
        (start.elapsed(), read)
    });
    // hyper answers a head timeout by closing (optionally after a 408).
    let read = read.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    match &read {
        Ok(text) => assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    assert!(
        waited >= timeout,
        "closed after {waited:?}, before the {timeout:?} timeout"
    );
    lp.close().unwrap();
}

#[test]
fn a_peer_that_resets_mid_body_is_an_error_not_a_panic() {
    let lp = Loop::new().unwrap();
    // A raw server promises 1000 bytes, sends 10, then resets.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = [0; 1024];
        let _ = std::io::Read::read(&mut s, &mut head).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
            .unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // RST
    });
    let body = run(&lp, async move {
        let lp = oneloop::get_running_loop().unwrap();
        let io = HyperIo::new(lp.open_stream(addr).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        let conn = lp.spawn(conn).unwrap();
        let response = sender
            .send_request(Request::get("/").body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await;
        let _ = conn.await;
        body.map(|b| b.to_bytes())
    });
    peer.join().unwrap();
    let err = body.expect_err("the body was cut short");
    let io = std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
    assert!(err.is_incomplete_message() || io, "{err:?}");
    lp.close().unwrap();
}

#[test]
fn the_timer_never_fires_early_and_reset_moves_it_both_ways() {
    let lp = Loop::new().unwrap();
    let timer = LoopTimer::new(&lp);
    let order = run(&lp, async move {
        let lp = oneloop::get_running_loop().unwrap();
        let start = Instant::now();
        timer.sleep(Duration::from_millis(5)).await;
        assert!(
            start.elapsed() >= Duration::from_millis(5),
            "early: {:?}",
            start.elapsed()
        );
        // A long sleep brought forward, a short one pushed back: the loop
        // timer at 20 ms orders them.
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut brought_forward = timer.sleep(Duration::from_secs(3600));
        timer.reset(
            &mut brought_forward,
            Instant::now() + Duration::from_millis(2),
        );
        let mut pushed_back = timer.sleep(Duration::from_millis(1));
        timer.reset(&mut pushed_back, Instant::now() + Duration::from_secs(3600));
        let l = log.clone();
        lp.call_later(Duration::from_millis(20), move || {
            l.borrow_mut().push("20 ms loop timer")
        })
        .unwrap();
        let l = log.clone();
        let forward = lp
            .spawn(async move {
                brought_forward.await;
                l.borrow_mut().push("brought forward");
            })
            .unwrap();
        let l = log.clone();
        let back = lp
            .spawn(async move {
                pushed_back.await;
                l.borrow_mut().push("pushed back");
            })
            .unwrap();
        forward.await.unwrap();
        oneloop::sleep(Duration::from_millis(25)).await.unwrap();
        assert!(back.cancel());
        log.borrow().clone()
    });
    assert_eq!(order, ["brought forward", "20 ms loop timer"]);
    lp.close().unwrap();
}
