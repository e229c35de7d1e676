//! Unix-domain stream sockets on the default loop, beyond the conformance
//! suite's UX-01: the socket file, and streams.

mod transport_fixtures;

use std::path::PathBuf;
use std::time::Duration;

use oneloop::ErrorKind;
use transport_fixtures::{Recorder, Shared, new_loop, run};

const LIMIT: Duration = Duration::from_secs(10);

/// A fresh socket path in a fresh directory, removed afterwards.
struct TempSock(PathBuf);

impl TempSock {
    fn new(tag: &str) -> TempSock {
        let dir = std::env::temp_dir().join(format!(
            "oneloop-ux-{}-{tag}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempSock(dir.join("s.sock"))
    }
}

impl Drop for TempSock {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// UX-01 does not say what becomes of the socket file: a closed server
/// removes it (asyncio 3.13's `cleanup_socket`).
#[test]
fn a_closed_unix_server_removes_its_socket_file() {
    let lp = new_loop();
    let path = TempSock::new("cleanup");
    let server = run(
        &lp,
        LIMIT,
        lp.create_unix_server(|| Recorder::new(&Shared::new()), &path.0),
    )
    .unwrap();
    assert!(path.0.exists());
    server.close();
    run(&lp, LIMIT, server.wait_closed()).unwrap();
    assert!(!path.0.exists(), "the socket file is removed on close");
}

/// UX-01 does not cover a path already taken: a stale socket file is
/// replaced, any other file is left alone and the call fails.
#[test]
fn a_stale_socket_file_is_replaced_but_a_regular_file_is_not() {
    let lp = new_loop();
    let path = TempSock::new("stale");
    // A stale socket: bound, then its listener gone.
    drop(std::os::unix::net::UnixListener::bind(&path.0).unwrap());
    assert!(path.0.exists());
    let server = run(
        &lp,
        LIMIT,
        lp.create_unix_server(|| Recorder::new(&Shared::new()), &path.0),
    )
    .unwrap();
    server.close();

    std::fs::write(&path.0, b"not a socket").unwrap();
    let err = run(
        &lp,
        LIMIT,
        lp.create_unix_server(|| Recorder::new(&Shared::new()), &path.0),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        std::fs::read(&path.0).unwrap(),
        b"not a socket",
        "left alone"
    );
}

/// The stream API (`start_unix_server`, `open_unix_connection`): no PEP 3156
/// guarantee.
#[test]
fn unix_streams_round_trip() {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    let lp = new_loop();
    let path = TempSock::new("streams");
    let server = run(
        &lp,
        LIMIT,
        lp.start_unix_server(
            |r, mut w| async move {
                futures::io::copy(r, &mut w).await.unwrap();
            },
            &path.0,
        ),
    )
    .unwrap();
    let lp2 = lp.clone();
    let p = path.0.clone();
    let back = run(&lp, LIMIT, async move {
        let (mut r, mut w) = lp2.open_unix_connection(p).await.unwrap();
        w.write_all(b"ping").await.unwrap();
        w.close().await.unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        back
    });
    assert_eq!(back, b"ping");
    server.close();
}

/// A Unix stream connect never completes in the background: on Linux a
/// non-blocking `connect` to a listener whose backlog is full answers
/// EAGAIN and the socket stays unconnected (unlike TCP's EINPROGRESS). The
/// connection must then fail, not be reported made on an unconnected
/// socket (which then dies at its first read or write with ENOTCONN).
#[test]
fn a_unix_connect_to_a_full_backlog_fails() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let path = TempSock::new("full");
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    listener.bind(&SockAddr::unix(&path.0).unwrap()).unwrap();
    listener.listen(0).unwrap();
    // Fill the backlog (nothing accepts) until a connect is refused.
    let mut queued = Vec::new();
    loop {
        let c = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        match c.connect(&SockAddr::unix(&path.0).unwrap()) {
            Ok(()) => queued.push(c),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("unexpected connect error {e}"),
        }
        assert!(queued.len() < 1000, "the backlog never filled");
    }
    let lp = new_loop();
    let shared = Shared::new();
    let s2 = shared.clone();
    let got = run(
        &lp,
        LIMIT,
        lp.create_unix_connection(move || Recorder::new(&s2), &path.0),
    );
    match got {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Io, "{e}"),
        Ok(t) => panic!(
            "a connection was reported made (peer {:?}) on a full backlog",
            t.peername()
        ),
    }
    drop(queued);
}

/// A server closes only its own socket file: if another server (a
/// successor in a restart, another process) has bound the path since,
/// the file is that server's and stays, as asyncio 3.13 checks by inode
/// (`_stop_serving`). Before the fix the closing server removed the
/// successor's live socket, leaving it unreachable.
#[test]
fn a_closing_unix_server_leaves_a_successors_socket_file() {
    let lp = new_loop();
    let path = TempSock::new("successor");
    let first = run(
        &lp,
        LIMIT,
        lp.create_unix_server(|| Recorder::new(&Shared::new()), &path.0),
    )
    .unwrap();
    // The successor binds the same path (replacing the socket file).
    let successor = std::os::unix::net::UnixListener::bind(&path.0)
        .or_else(|_| {
            std::fs::remove_file(&path.0)?;
            std::os::unix::net::UnixListener::bind(&path.0)
        })
        .unwrap();
    first.close();
    run(&lp, LIMIT, first.wait_closed()).unwrap();
    assert!(path.0.exists(), "the successor's socket file was removed");
    std::os::unix::net::UnixStream::connect(&path.0).expect("the successor is unreachable");
    drop(successor);
}
