// A stream echo on this host: the stream's reads go straight to the socket
// and a waiting read is parked on the fd's readiness callback (core's
// streams.rs, FdCallback::park); on the native backend that is tested in
// core/tests/streams.rs, here on this adapter's readiness. Small read
// buffers on the server make partial reads; sizes vary; then a half-close.

use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use oneloop::{Loop, StreamReader, StreamWriter};

async fn echo(mut r: StreamReader, mut w: StreamWriter) {
    let mut buf = [0u8; 7];
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
    let _ = w.close().await;
}

/// The client side: 300 round trips, then a half-close; 300 when done.
pub(crate) async fn round_trips(lp: Loop) -> usize {
    let server = lp.start_server(echo, "127.0.0.1:0").await.unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let (mut r, mut w) = lp.open_connection(addr).await.unwrap();
    for i in 0..300usize {
        let len = 1 + (i * 7919) % 20000;
        let msg: Vec<u8> = (0..len).map(|k| (k * 31 + i) as u8).collect();
        w.write_all(&msg).await.unwrap();
        let mut back = vec![0; len];
        r.read_exact(&mut back).await.unwrap();
        assert!(back == msg, "round trip {i} differs");
    }
    w.close().await.unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    server.close();
    server.wait_closed().await.unwrap();
    300
}

/// Run `fut` on `lp`, failing (not hanging) if it takes over 30 s.
pub(crate) fn with_watchdog<F: std::future::Future<Output = usize>>(lp: &Loop, fut: F) {
    let lp2 = lp.clone();
    let watchdog = lp
        .call_later(Duration::from_secs(30), move || lp2.stop())
        .unwrap();
    let out = lp.run_until_complete(fut);
    watchdog.cancel();
    assert_eq!(
        out.expect("the echo hung: the watchdog stopped the loop"),
        300
    );
}
