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
