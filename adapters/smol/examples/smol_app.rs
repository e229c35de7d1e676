//! A smol program with oneloop attached: a smol TCP echo server and a
//! oneloop "library" (timers, callbacks, a task using smol's sockets) share
//! one thread and one reactor.
//!
//! Run with: `cargo run -p oneloop-smol --example smol_app`

use std::time::Duration;

use async_executor::LocalExecutor;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use oneloop::Loop;
use oneloop_smol::SmolBackend;

/// Code written against oneloop only: it runs on whatever loop it is given.
fn start_pinger(
    lp: &Loop,
    addr: std::net::SocketAddr,
) -> oneloop::Result<oneloop::Task<std::io::Result<()>>> {
    // A repeating oneloop timer, as a library would use one.
    fn tick(lp: Loop, n: u32) {
        println!("oneloop timer tick {n}");
        if n < 3 {
            let next = lp.clone();
            let _ = lp.call_later(Duration::from_millis(20), move || tick(next, n + 1));
        }
    }
    let first = lp.clone();
    lp.call_soon(move || tick(first, 1))?;
    lp.spawn(async move {
        let mut conn = smol::net::TcpStream::connect(addr).await?;
        for word in ["one", "loop", "on", "smol"] {
            conn.write_all(word.as_bytes()).await?;
            let mut back = vec![0; word.len()];
            conn.read_exact(&mut back).await?;
            println!("echoed {:?}", String::from_utf8_lossy(&back));
            oneloop::sleep(Duration::from_millis(15))
                .await
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ex = LocalExecutor::new();
    let lp = Loop::with_backend(SmolBackend::attach(&ex)?)?;
    smol::block_on(ex.run(async {
        // The smol side: an echo server, as the application already had.
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        ex.spawn(async move {
            // One connection at a time is enough here.
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        })
        .detach();
        // The oneloop side, on the same thread.
        start_pinger(&lp, addr)?.await??;
        Ok::<_, Box<dyn std::error::Error>>(())
    }))?;
    lp.close()?;
    Ok(())
}
