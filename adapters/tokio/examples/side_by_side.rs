//! A tokio program that also runs a oneloop-based component on its thread:
//! a tokio TCP echo server and client next to a oneloop ticker and a
//! oneloop fd reader, all on one `LocalSet`.
//!
//! Run with `cargo run -p oneloop-tokio --example side_by_side`.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        // The oneloop side: attach to the LocalSet this program runs.
        let lp = oneloop_tokio::attach()?;
        let ticks = Rc::new(Cell::new(0u32));
        fn tick(lp: oneloop::Loop, ticks: Rc<Cell<u32>>) {
            ticks.set(ticks.get() + 1);
            let lp2 = lp.clone();
            let _ = lp.call_later(Duration::from_millis(10), move || tick(lp2, ticks));
        }
        tick(lp.clone(), ticks.clone());
        let (mut tx, rx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        let rx = Rc::new(rx);
        let rx2 = rx.clone();
        lp.add_reader(&*rx, move || {
            let mut buf = [0u8; 64];
            if let Ok(n) = (&*rx2).read(&mut buf) {
                println!(
                    "oneloop reader got {:?}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }
        })?;
        tx.write_all(b"hello from a socketpair")?;

        // The tokio side: an echo server and a client, as usual.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::task::spawn_local(async move {
            let (mut s, _) = listener.accept().await?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await?;
            s.write_all(&buf).await?;
            std::io::Result::Ok(())
        });
        let mut client = tokio::net::TcpStream::connect(addr).await?;
        client.write_all(b"hello").await?;
        let mut echoed = [0u8; 5];
        client.read_exact(&mut echoed).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        println!(
            "tokio echo got {:?}; the oneloop ticker ticked {} times meanwhile",
            String::from_utf8_lossy(&echoed),
            ticks.get()
        );
        lp.remove_reader(&*rx);
        lp.close()?; // detach; the LocalSet (and this program) go on
        Ok(())
    })
}
