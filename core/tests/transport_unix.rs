//! Unix-domain stream sockets on the default loop: UX-01.

mod transport_fixtures;

use std::path::PathBuf;
use std::time::Duration;

use oneloop::{ErrorKind, SocketAddress};
use transport_fixtures::{Event, Recorder, Shared, new_loop, run, run_until};

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

#[test]
fn ux01_unix_server_and_connection_follow_the_tcp_sequence() {
    let lp = new_loop();
    let path = TempSock::new("echo");
    let served = Shared::new();
    let s2 = served.clone();
    let server = run(
        &lp,
        LIMIT,
        lp.create_unix_server(move || Recorder::echo(&s2), &path.0),
    )
    .unwrap();
    assert_eq!(
        server.local_addrs(),
        [SocketAddress::Unix(Some(path.0.clone()))]
    );
    let client = Shared::new();
    let c2 = client.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_unix_connection(move || Recorder::new(&c2), &path.0),
    )
    .unwrap();
    assert_eq!(
        t.peername(),
        Some(SocketAddress::Unix(Some(path.0.clone())))
    );
    t.write(b"over a unix socket").unwrap();
    t.write_eof();
    run_until(&lp, LIMIT, || client.lost() && served.lost());
    assert_eq!(client.data(), b"over a unix socket");
    client.assert_complete();
    served.assert_complete();
    assert!(served.events().contains(&Event::Eof));
    server.close();
    run(&lp, LIMIT, server.wait_closed()).unwrap();
    assert!(!path.0.exists(), "the socket file is removed on close");
}

#[test]
fn ux01_a_stale_socket_file_is_replaced_but_a_regular_file_is_not() {
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

#[test]
fn ux01_connecting_to_a_missing_path_fails_without_a_protocol() {
    let lp = new_loop();
    let path = TempSock::new("missing");
    let err = run(
        &lp,
        LIMIT,
        lp.create_unix_connection(|| -> Recorder { unreachable!("no protocol") }, &path.0),
    )
    .unwrap_err();
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
}

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
