//! A stream polled by a task of smol's own executor, not a oneloop task:
//! its reads go straight to the socket and, while they wait, park the
//! smol task on the fd's readiness (core's `streams.rs`), whose wake must
//! reach smol's executor. (The stream echo on every loop mode, oneloop
//! tasks reading, is the interop matrix's first column.)

use std::rc::Rc;
use std::time::Duration;

use async_executor::LocalExecutor;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use oneloop::Loop;
use oneloop_smol::SmolBackend;

#[test]
fn a_stream_read_by_a_smol_task_is_woken() {
    let ex = Rc::new(LocalExecutor::new());
    let lp = Loop::with_backend(SmolBackend::with_executor(ex.clone()).unwrap()).unwrap();
    let l = lp.clone();
    let task = ex.spawn(async move {
        let server = l
            .start_server(
                |mut r: oneloop::StreamReader, mut w: oneloop::StreamWriter| async move {
                    let mut buf = [0u8; 7];
                    while let Ok(n @ 1..) = r.read(&mut buf).await {
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                },
                "127.0.0.1:0",
            )
            .await
            .unwrap();
        let addr = server.local_addrs()[0].as_inet().unwrap();
        let (mut r, mut w) = l.open_connection(addr).await.unwrap();
        for i in 0..100usize {
            let msg: Vec<u8> = (0..1 + (i * 7919) % 20_000).map(|k| k as u8).collect();
            w.write_all(&msg).await.unwrap();
            let mut back = vec![0; msg.len()];
            r.read_exact(&mut back).await.unwrap();
            assert!(back == msg, "round trip {i} differs");
        }
        server.close();
        100
    });
    let lp2 = lp.clone();
    let watchdog = lp
        .call_later(Duration::from_secs(30), move || lp2.stop())
        .unwrap();
    let done = lp.run_until_complete(task);
    watchdog.cancel();
    assert_eq!(
        done.expect("the echo hung: the watchdog stopped the loop"),
        100
    );
}
