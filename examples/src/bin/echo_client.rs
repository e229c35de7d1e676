//! An echo client written with the streams API: the connection is a
//! `futures::io` reader and writer pair, driven with the ordinary
//! `AsyncReadExt` / `AsyncWriteExt` helpers, on whichever loop `--loop`
//! names.
//!
//! ```text
//! cargo run -p oneloop-examples --bin echo_server -- --port 7000 &
//! cargo run -p oneloop-examples --bin echo_client -- --loop tokio --port 7000
//! printf 'one\ntwo\n' | cargo run -p oneloop-examples --bin echo_client -- --loop calloop
//! ```
//!
//! It copies its stdin to the server and what the server sends back to its
//! stdout, like `nc -N`. At the end of stdin it half-closes the connection
//! (sends EOF after the data) and keeps printing until the server closes
//! its side; if the server closes first, it stops there. A summary goes to
//! stderr. Exit status 0 on a clean close, 1 on an error.
//!
//! What it shows:
//! - `open_connection` gives a `StreamReader` (`AsyncRead`) and a
//!   `StreamWriter` (`AsyncWrite`); `write_all`, `read`, `close` are the
//!   `futures::io` extension methods, so codecs written for `futures-io`
//!   run on any oneloop loop;
//! - the two directions run concurrently in one future (`select`);
//! - blocking input (stdin) stays off the loop: a thread reads it and hands
//!   chunks over a bounded channel, whose `await` works on every loop. The
//!   bound is the backpressure: a slow server slows the stdin reader.

use std::cell::Cell;
use std::io::{Read, Write};
use std::pin::pin;
use std::process::ExitCode;

use futures::channel::mpsc;
use futures::future::{Either, select};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::{SinkExt, StreamExt};
use oneloop::{StreamReader, StreamWriter};
use oneloop_examples::Options;

const USAGE: &str = "\
usage: echo_client [--loop native|tokio|smol|glib|calloop] [--host HOST] [--port PORT]

Send stdin to an echo server, print what comes back.
  --loop   the event loop to run on (default: native)
  --host   the server's address (default: 127.0.0.1)
  --port   the server's port (default: 7000)";

/// Chunks of stdin in flight between the reading thread and the loop.
const IN_FLIGHT: usize = 4;

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1), 7000, |_, _| Ok(false)) {
        Ok(opts) => opts,
        Err(e) => return e.report(USAGE),
    };
    match run(&opts) {
        Ok((sent, received)) => {
            eprintln!("sent {sent} bytes, received {received} bytes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let lp = opts.loop_kind.build()?;
    let input = stdin_chunks();
    let addr = opts.addr();
    let sent = Cell::new(0);
    let result = lp.run_until_complete(async {
        let (reader, writer) = oneloop::get_running_loop()?.open_connection(addr).await?;
        let send = pin!(send(input, writer, &sent));
        let receive = pin!(receive(reader));
        let received = match select(send, receive).await {
            // Input done and half-closed: the echo of it is still coming.
            Either::Left((done, receive)) => {
                done?;
                receive.await?
            }
            // The server closed: what is left of stdin has nowhere to go.
            Either::Right((received, _)) => received?,
        };
        Ok::<_, Box<dyn std::error::Error>>((sent.get(), received))
    });
    lp.close()?;
    result?
}

/// Stdin, read by a thread, as a stream of chunks.
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (mut tx, rx) = mpsc::channel(IN_FLIGHT);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Waits while the channel is full; fails once the loop side is gone.
            if futures::executor::block_on(tx.send(buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    rx
}

/// Write every chunk of `input`, counting the bytes in `sent`, then
/// half-close.
async fn send(
    mut input: mpsc::Receiver<Vec<u8>>,
    mut writer: StreamWriter,
    sent: &Cell<u64>,
) -> std::io::Result<()> {
    while let Some(chunk) = input.next().await {
        writer.write_all(&chunk).await?;
        sent.set(sent.get() + chunk.len() as u64);
    }
    writer.close().await
}

/// Copy everything the server sends to stdout until it closes; the bytes
/// received.
async fn receive(mut reader: StreamReader) -> std::io::Result<u64> {
    let mut buf = vec![0; 16 * 1024];
    let mut received = 0;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(received);
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
        received += n as u64;
    }
}
