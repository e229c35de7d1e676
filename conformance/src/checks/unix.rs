//! `UX`: Unix-domain stream sockets follow the TCP protocol sequence
//! (test_events.py `test_create_unix_server`, `test_create_unix_connection`).

use std::path::PathBuf;

use oneloop::SocketAddress;

use super::proto::{Event, Recorder, Shared};
use crate::Env;

/// A socket path in a fresh directory, removed afterwards.
struct TempSock(PathBuf);

impl TempSock {
    fn new(tag: &str) -> TempSock {
        let dir = std::env::temp_dir().join(format!(
            "oneloop-conformance-ux-{}-{tag}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
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

/// UX-01 (SHOULD): a Unix stream server and connection follow the TCP
/// protocol sequence (made, data, EOF, lost; one factory call per
/// connection; close refuses new connections). A path and a socket cannot
/// both be given: the API takes one or the other. A missing path fails
/// without making a protocol.
pub fn unix_stream_follows_tcp_sequence(env: &Env) {
    let lp = env.lp();
    let path = TempSock::new("echo");
    let served = Shared::new();
    let s2 = served.clone();
    let server = env
        .run_until(lp.create_unix_server(move || Recorder::echo(&s2), &path.0))
        .unwrap_or_else(|e| panic!("create_unix_server failed: {e}"));
    assert_eq!(
        server.local_addrs(),
        [SocketAddress::Unix(Some(path.0.clone()))]
    );
    let client = Shared::new();
    let c2 = client.clone();
    let t = env
        .run_until(lp.create_unix_connection(move || Recorder::new(&c2), &path.0))
        .unwrap_or_else(|e| panic!("create_unix_connection failed: {e}"));
    assert_eq!(
        client.events(),
        [Event::Made],
        "resolved before connection_made"
    );
    assert_eq!(
        t.peername(),
        Some(SocketAddress::Unix(Some(path.0.clone()))),
        "peername is the server's path"
    );
    t.write(b"over a unix socket").expect("write");
    t.write_eof();
    env.run_until_true(|| client.lost() && served.lost());
    assert_eq!(client.data(), b"over a unix socket");
    client.assert_complete();
    served.assert_complete();
    assert!(
        served.events().contains(&Event::Eof),
        "the server saw no EOF"
    );
    server.close();
    env.run_until(server.wait_closed())
        .unwrap_or_else(|e| panic!("wait_closed failed: {e}"));
    assert!(
        std::os::unix::net::UnixStream::connect(&path.0).is_err(),
        "a closed Unix server still accepts"
    );

    let missing = TempSock::new("missing");
    let err = env
        .run_until(lp.create_unix_connection(
            || -> Recorder { panic!("a protocol for a failed connect") },
            &missing.0,
        ))
        .expect_err("a connection to a missing path succeeded");
    assert_eq!(
        err.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::NotFound),
        "{err}"
    );
}
