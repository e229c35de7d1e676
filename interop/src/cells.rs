//! The columns of the matrix: one body each, run on every mode.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use bytes::Bytes;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use http_body_util::{BodyExt, Full};
use oneloop::{ErrorKind, Loop};
use oneloop_conformance::Env;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{DEADLINE, Guest};

/// The columns, in report order.
pub static GUESTS: &[Guest] = &[
    Guest {
        name: "oneloop callbacks, timers, tasks, streams",
        needs_host: false,
        run: oneloop_own,
    },
    Guest {
        name: "tokio libraries (bridge): net, time, sync, spawn_local",
        needs_host: false,
        run: tokio_libraries,
    },
    Guest {
        name: "tokio I/O in a cancelled task",
        needs_host: false,
        run: tokio_cancelled,
    },
    Guest {
        name: "hyper server + client: http1, http2, header_read_timeout",
        needs_host: false,
        run: hyper_server_and_client,
    },
    Guest {
        name: "hyper-util pooled client (tokio-based, via the bridge)",
        needs_host: false,
        run: hyper_util_client,
    },
    Guest {
        name: "async-tungstenite WebSocket (futures-io)",
        needs_host: false,
        run: websocket,
    },
    Guest {
        name: "glib guest: a gio future and a GLib timeout on this loop",
        needs_host: false,
        run: glib_guest,
    },
    Guest {
        name: "calloop guest: a calloop Timer and a Generic fd source on this loop",
        needs_host: false,
        run: calloop_guest,
    },
    Guest {
        name: "host-native code side by side",
        needs_host: true,
        run: host_native,
    },
];

/// Spawn `body` as a oneloop task (so it runs inside the loop's batches,
/// whatever the mode) and drive the loop until it is done.
fn run_task<T: 'static>(env: &Env, body: impl Future<Output = T> + 'static) -> T {
    let task = env.lp().spawn(body).expect("spawn on a fresh loop");
    env.run_until(task).expect("the task failed")
}

fn oneloop_own(env: &Env) {
    let lp = env.lp().clone();
    let order = Rc::new(RefCell::new(Vec::new()));
    let push = |n| {
        let order = order.clone();
        move || order.borrow_mut().push(n)
    };
    lp.call_later(Duration::from_millis(2), push(3)).unwrap();
    lp.call_soon(push(1)).unwrap();
    lp.call_soon(push(2)).unwrap();
    let echoed = run_task(env, async move {
        let lp = oneloop::get_running_loop().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut a, mut b) = (
            lp.adopt_stream(a).await.unwrap(),
            lp.adopt_stream(b).await.unwrap(),
        );
        a.write_all(b"ping").await.unwrap();
        let mut got = [0; 4];
        b.read_exact(&mut got).await.unwrap();
        oneloop::sleep(Duration::from_millis(3)).await.unwrap();
        got
    });
    assert_eq!(&echoed, b"ping");
    assert_eq!(*order.borrow(), [1, 2, 3]);
    assert_eq!(run_task(env, stream_round_trips()), ROUND_TRIPS);
}

const ROUND_TRIPS: usize = 300;

/// A stream echo over TCP on the loop: 300 round trips of 1 byte to 20 KB
/// through a server reading 7 bytes at a time (partial reads, reads that
/// wait, reads straight into the caller's buffer, reads parked on the fd's
/// readiness: `core/src/streams.rs`), then a half-close. Returns the round
/// trips made.
async fn stream_round_trips() -> usize {
    async fn echo(mut r: oneloop::StreamReader, mut w: oneloop::StreamWriter) {
        let mut buf = [0u8; 7];
        while let Ok(n @ 1..) = r.read(&mut buf).await {
            if w.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = w.close().await;
    }
    let lp = oneloop::get_running_loop().unwrap();
    let server = lp.start_server(echo, "127.0.0.1:0").await.unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let (mut r, mut w) = lp.open_connection(addr).await.unwrap();
    for i in 0..ROUND_TRIPS {
        let len = 1 + (i * 7919) % 20_000;
        let msg: Vec<u8> = (0..len).map(|k| (k * 31 + i) as u8).collect();
        w.write_all(&msg).await.unwrap();
        let mut back = vec![0; len];
        r.read_exact(&mut back).await.unwrap();
        assert!(back == msg, "round trip {i} differs");
    }
    w.close().await.unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "the server's half-close came with bytes");
    server.close();
    server.wait_closed().await.unwrap();
    ROUND_TRIPS
}

/// tokio's I/O, timers, channels and `spawn_local`, inside oneloop tasks and
/// callbacks; every result is delivered on the loop's thread.
fn tokio_libraries(env: &Env) {
    let lp = env.lp().clone();
    oneloop_tokio::enable(&lp).unwrap();
    assert!(oneloop_tokio::is_enabled(&lp));
    let loop_thread = std::thread::current().id();
    // A callback (not a task) may spawn tokio local tasks too.
    let from_callback = Rc::new(Cell::new(false));
    lp.call_soon({
        let flag = from_callback.clone();
        move || {
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                flag.set(true);
            });
        }
    })
    .unwrap();
    let (threads, slept, echoed, from_thread) = run_task(env, async move {
        let mut threads: Vec<ThreadId> = Vec::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::task::spawn_local(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            std::thread::current().id()
        });
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        threads.push(std::thread::current().id());
        c.write_all(b"hello").await.unwrap();
        let mut back = vec![0; 5];
        c.read_exact(&mut back).await.unwrap();
        threads.push(std::thread::current().id());
        threads.push(server.await.unwrap());
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let slept = start.elapsed();
        threads.push(std::thread::current().id());
        // A value sent from another thread through a tokio channel.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        std::thread::spawn(move || tx.blocking_send(42).unwrap());
        let from_thread = rx.recv().await;
        threads.push(std::thread::current().id());
        (threads, slept, back, from_thread)
    });
    assert!(
        threads.iter().all(|t| *t == loop_thread),
        "a result was delivered off the loop thread"
    );
    assert!(
        slept >= Duration::from_millis(10),
        "tokio::time::sleep returned early: {slept:?}"
    );
    assert_eq!(echoed, b"hello");
    assert_eq!(from_thread, Some(42));
    env.run_until_true(|| from_callback.get());
}

/// A task cancelled while it awaits tokio I/O drops it: the listener it
/// owned is closed (connecting is refused) and the loop goes on.
fn tokio_cancelled(env: &Env) {
    let lp = env.lp().clone();
    oneloop_tokio::enable(&lp).unwrap();
    let addr = Rc::new(Cell::new(None));
    let task = lp
        .spawn({
            let addr = addr.clone();
            async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr.set(Some(listener.local_addr().unwrap()));
                let _ = listener.accept().await;
                unreachable!("nobody connects");
            }
        })
        .unwrap();
    env.run_until_true(|| addr.get().is_some());
    assert!(task.cancel());
    let err = env.run_until(task).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let addr = addr.get().unwrap();
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The bridge still works after the cancellation.
    let n = run_task(env, async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        7
    });
    assert_eq!(n, 7);
}

/// The host's own callbacks and timers interleave with oneloop's on one
/// thread.
fn host_native(env: &Env) {
    let host = env.host().expect("the mode has a host (Guest::needs_host)");
    let lp: Loop = env.lp().clone();
    let log = Rc::new(RefCell::new(Vec::new()));
    let thread = std::thread::current().id();
    let mark = |what: &'static str| {
        let log = log.clone();
        move || {
            assert_eq!(std::thread::current().id(), thread);
            log.borrow_mut().push(what)
        }
    };
    host.post(Box::new(mark("host post")));
    host.add_timeout(Duration::from_millis(2), Box::new(mark("host timer")));
    lp.call_soon(mark("oneloop call_soon")).unwrap();
    lp.call_later(Duration::from_millis(2), mark("oneloop timer"))
        .unwrap();
    env.run_until_true(|| log.borrow().len() == 4);
    let log = log.borrow();
    for what in [
        "host post",
        "host timer",
        "oneloop call_soon",
        "oneloop timer",
    ] {
        assert!(log.contains(&what), "{what} never ran: {log:?}");
    }
}

/// A hyper server on the loop: http1 (with a read timeout for the request
/// head) or http2 per connection; answers with the request body's length.
async fn hyper_server(
    lp: &Loop,
    http2: bool,
    head_timeout: Duration,
) -> (oneloop::Server, SocketAddr) {
    use oneloop_hyper::{HyperIo, LoopExecutor, LoopTimer};
    let (exec, timer) = (LoopExecutor::new(lp), LoopTimer::new(lp));
    let server = lp
        .start_server(
            move |r, w| {
                let io = HyperIo::new(oneloop::Stream::join(r, w).unwrap());
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                            format!("{} bytes", body.len()),
                        ))))
                    },
                );
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

/// hyper's http1 and http2 servers and clients on the loop's thread, and
/// `header_read_timeout` closing a connection whose head never ends.
fn hyper_server_and_client(env: &Env) {
    use oneloop_hyper::{HyperIo, LoopExecutor};
    let loop_thread = std::thread::current().id();
    let (bodies, waited) = run_task(env, async move {
        let lp = oneloop::get_running_loop().unwrap();
        let mut bodies = Vec::new();
        for http2 in [false, true] {
            let (server, addr) = hyper_server(&lp, http2, Duration::from_secs(5)).await;
            let io = HyperIo::new(lp.open_stream(addr).await.unwrap());
            let req = hyper::Request::post("/")
                .body(Full::new(Bytes::from("abc")))
                .unwrap();
            let response = if http2 {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(LoopExecutor::new(&lp), io)
                        .await
                        .unwrap();
                lp.spawn(conn).unwrap();
                send.send_request(req).await.unwrap()
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                lp.spawn(conn).unwrap();
                send.send_request(req).await.unwrap()
            };
            bodies.push(response.into_body().collect().await.unwrap().to_bytes());
            assert_eq!(std::thread::current().id(), loop_thread);
            server.close();
        }
        let timeout = Duration::from_millis(30);
        let (server, addr) = hyper_server(&lp, false, timeout).await;
        // Before connecting: hyper's head timer starts when it accepts.
        let start = Instant::now();
        let mut stream = lp.open_stream(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap(); // no blank line
        // hyper closes the connection (or resets it) when the head times out.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        let waited = start.elapsed();
        server.close();
        assert!(
            waited >= timeout,
            "closed after {waited:?}, before the {timeout:?} head timeout"
        );
        (bodies, waited)
    });
    assert_eq!(bodies, ["3 bytes", "3 bytes"]);
    assert!(waited < DEADLINE);
}

/// A tokio-based library: hyper-util's pooled client (a `Send` executor,
/// tokio's `HttpConnector`) awaited in a oneloop task, against a hyper
/// server over oneloop on the same loop; the response arrives on the
/// loop's thread.
fn hyper_util_client(env: &Env) {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    oneloop_tokio::enable(env.lp()).unwrap();
    let loop_thread = std::thread::current().id();
    let bodies = run_task(env, async move {
        let lp = oneloop::get_running_loop().unwrap();
        let (server, addr) = hyper_server(&lp, false, Duration::from_secs(5)).await;
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut bodies = Vec::new();
        // Two requests: the second reuses the pooled connection.
        for body in ["a", "bcde"] {
            let req = hyper::Request::post(format!("http://{addr}/"))
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = client.request(req).await.unwrap();
            bodies.push(response.into_body().collect().await.unwrap().to_bytes());
            assert_eq!(std::thread::current().id(), loop_thread);
        }
        drop(client);
        server.close();
        bodies
    });
    assert_eq!(bodies, ["1 bytes", "4 bytes"]);
}

/// async-tungstenite over oneloop streams: a WebSocket server and client on
/// the loop, a text and a binary message echoed, a clean close.
fn websocket(env: &Env) {
    use async_tungstenite::tungstenite::Message;
    use futures::StreamExt;
    let echoed = run_task(env, async move {
        let lp = oneloop::get_running_loop().unwrap();
        let server = lp
            .start_server(
                |r, w| async move {
                    let stream = oneloop::Stream::join(r, w).unwrap();
                    let mut ws = async_tungstenite::accept_async(stream).await.unwrap();
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() || msg.is_binary() {
                            ws.send(msg).await.unwrap();
                        }
                    }
                },
                "127.0.0.1:0",
            )
            .await
            .unwrap();
        let addr = server.local_addrs()[0].as_inet().unwrap();
        let stream = lp.open_stream(addr).await.unwrap();
        let (mut ws, _) = async_tungstenite::client_async(format!("ws://{addr}/"), stream)
            .await
            .unwrap();
        let mut echoed = Vec::new();
        for msg in [Message::text("hello"), Message::binary(vec![1, 2, 3])] {
            ws.send(msg).await.unwrap();
            echoed.push(ws.next().await.unwrap().unwrap());
        }
        ws.close(None).await.unwrap();
        // The server's close frame answers ours.
        while let Some(Ok(msg)) = ws.next().await {
            assert!(msg.is_close(), "{msg:?}");
        }
        server.close();
        echoed
    });
    assert_eq!(
        echoed,
        [Message::text("hello"), Message::binary(vec![1, 2, 3])]
    );
}

/// A GLib context as a guest of the loop: a gio future (a file read, which
/// gio completes through the context) awaited in a oneloop task, and a
/// GLib timeout source, never early.
fn glib_guest(env: &Env) {
    let lp = env.lp().clone();
    let ctx = glib::MainContext::new();
    let guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let path = std::env::temp_dir().join(format!("oneloop-interop-guest-{}", std::process::id()));
    let path = path.with_extension(
        format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_alphanumeric(), ""),
    );
    std::fs::write(&path, b"read by gio").unwrap();
    let (tx, rx) = futures::channel::oneshot::channel();
    let start = Instant::now();
    let tx = std::sync::Mutex::new(Some(tx));
    glib::timeout_source_new(
        Duration::from_millis(10),
        None,
        glib::Priority::DEFAULT,
        move || {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(start.elapsed());
            }
            glib::ControlFlow::Break
        },
    )
    .attach(Some(&ctx));
    let file_path = path.clone();
    let (contents, fired_after) = run_task(env, async move {
        use gio::prelude::FileExtManual;
        let file = gio::File::for_path(&file_path);
        let (bytes, _etag) = file.load_contents_future().await.unwrap();
        (bytes.to_vec(), rx.await.unwrap())
    });
    let _ = std::fs::remove_file(&path);
    assert_eq!(contents, b"read by gio");
    assert!(
        fired_after >= Duration::from_millis(10),
        "the GLib timeout was early: {fired_after:?}"
    );
    assert!(guest.detach());
}

/// A calloop event loop as a guest of the loop: a `Generic` fd source fed
/// from another thread and a calloop `Timer` (made with the guest's
/// `GuestTimers`, so its deadline is a loop timer), never early.
fn calloop_guest(env: &Env) {
    use calloop::generic::Generic;
    use calloop::timer::{TimeoutAction, Timer};
    use calloop::{EventLoop, Interest, Mode, PostAction};
    use std::io::{Read, Write};

    #[derive(Default)]
    struct State {
        read: Vec<u8>,
        timer_after: Option<Duration>,
        threads: Vec<ThreadId>,
    }
    let lp = env.lp().clone();
    let event_loop: EventLoop<'static, State> = EventLoop::try_new().unwrap();
    let handle = event_loop.handle();
    let guest = oneloop_calloop::guest(&lp, event_loop, State::default()).unwrap();
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    handle
        .insert_source(
            Generic::new(theirs, Interest::READ, Mode::Level),
            |_, sock, s: &mut State| {
                let mut buf = [0u8; 64];
                if let Ok(n) = (&**sock).read(&mut buf) {
                    s.read.extend_from_slice(&buf[..n]);
                }
                s.threads.push(std::thread::current().id());
                Ok(PostAction::Continue)
            },
        )
        .unwrap();
    let start = Instant::now();
    let timer = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_millis(10)));
    handle
        .insert_source(timer, move |_, _, s: &mut State| {
            s.timer_after = Some(start.elapsed());
            s.threads.push(std::thread::current().id());
            TimeoutAction::Drop
        })
        .unwrap();
    drop(handle);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2));
        ours.write_all(b"from a Generic source").unwrap();
        ours
    });
    let g = Rc::new(guest);
    let g2 = g.clone();
    run_task(env, async move {
        while g2
            .with_data(|s| s.read.len() < 21 || s.timer_after.is_none())
            .unwrap()
        {
            oneloop::sleep(Duration::from_millis(1)).await.unwrap();
        }
    });
    let _ours = writer.join().unwrap();
    let loop_thread = std::thread::current().id();
    g.with_data(|s| {
        assert_eq!(s.read, b"from a Generic source");
        let after = s.timer_after.unwrap();
        assert!(
            after >= Duration::from_millis(10),
            "the calloop timer was early: {after:?}"
        );
        assert!(
            s.threads.iter().all(|t| *t == loop_thread),
            "a calloop callback ran off the loop's thread"
        );
    })
    .unwrap();
    assert!(g.detach().is_some());
}
