//! An echo server written as a PEP 3156 protocol: every byte a client sends
//! comes back to it. The same `Echo` protocol runs on whichever loop
//! `--loop` names.
//!
//! ```text
//! cargo run -p oneloop-examples --bin echo_server -- --loop glib --port 7000
//! nc 127.0.0.1 7000          # type lines, they come back; Ctrl-D to leave
//! ```
//!
//! `--loop` is one of `native` (the default), `tokio`, `smol`, `glib`,
//! `calloop`; `--port 0` picks a free port. The server prints
//! `listening on ADDRESS` on stdout once it accepts connections, logs
//! connections on stderr, and stops on Ctrl-C (SIGINT) or SIGTERM: it stops
//! accepting, closes each connection once what it owes has been sent
//! (aborting those still sending after `--grace` seconds, 2 by default),
//! and exits with status 0.
//!
//! What it shows:
//! - a protocol is plain code: `connection_made`, `data_received`,
//!   `eof_received`, `connection_lost`, called by the transport;
//! - flow control: a client that sends but does not read would make the
//!   server buffer its echo without bound, so on `pause_writing` the
//!   protocol stops reading from that client (the kernel then slows the
//!   client down), and reads again on `resume_writing`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use oneloop::{Loop, Protocol, Transport};
use oneloop_examples::{Interrupt, Options, drain};

const USAGE: &str = "\
usage: echo_server [--loop native|tokio|smol|glib|calloop] [--host HOST] [--port PORT]
                   [--grace SECONDS]

Echo every byte back to its sender. Stops on Ctrl-C.
  --loop   the event loop to run on (default: native)
  --host   the address to listen on (default: 127.0.0.1)
  --port   the port to listen on; 0 picks a free one (default: 7000)
  --grace  at Ctrl-C, how long open connections get to take what they are
           owed before they are aborted (default: 2)";

/// How long open connections get to finish after Ctrl-C before they are
/// aborted, unless `--grace` says otherwise.
const GRACE: Duration = Duration::from_secs(2);

/// The open connections, so that shutdown can close them.
type Connections = Rc<RefCell<HashMap<u64, Transport>>>;

/// One client's connection. Only the transport is state: echoing needs no
/// buffer of its own, the transport buffers what the socket cannot take.
struct Echo {
    id: u64,
    connections: Connections,
    transport: Option<Transport>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        eprintln!("[{}] connected", peer(transport));
        self.connections
            .borrow_mut()
            .insert(self.id, transport.clone());
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            // Fails only once the transport is closing: nothing to echo to.
            let _ = t.write(data);
        }
    }

    fn eof_received(&mut self) -> bool {
        if let Some(t) = &self.transport {
            eprintln!("[{}] sent EOF", peer(t));
        }
        // Let the transport close: it sends what is still buffered first.
        false
    }

    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        if let Some(t) = self.transport.take() {
            match error {
                None => eprintln!("[{}] closed", peer(&t)),
                Some(e) => eprintln!("[{}] lost: {e}", peer(&t)),
            }
        }
        self.connections.borrow_mut().remove(&self.id);
    }

    fn pause_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.resume_reading();
        }
    }
}

fn peer(t: &Transport) -> String {
    t.peername()
        .map_or_else(|| "?".to_owned(), |a| a.to_string())
}

fn main() -> ExitCode {
    let mut grace = GRACE;
    let parsed = Options::parse(std::env::args().skip(1), 7000, |name, value| {
        if name != "--grace" {
            return Ok(false);
        }
        grace = Options::seconds(name, value)?;
        Ok(true)
    });
    let opts = match parsed {
        Ok(opts) => opts,
        Err(e) => return e.report(USAGE),
    };
    match run(&opts, grace) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options, grace: Duration) -> oneloop::Result<()> {
    let lp = opts.loop_kind.build()?;
    let result = serve(&lp, opts, grace);
    lp.close()?;
    result
}

fn serve(lp: &Loop, opts: &Options, grace: Duration) -> oneloop::Result<()> {
    let connections = Connections::default();
    let next_id = Cell::new(0);
    let factory = {
        let connections = connections.clone();
        move || {
            next_id.set(next_id.get() + 1);
            Echo {
                id: next_id.get(),
                connections: connections.clone(),
                transport: None,
            }
        }
    };
    // Before the address is printed, so whoever reads it may signal at once.
    let interrupt = Interrupt::install(lp)?;
    let server = lp.run_until_complete(lp.create_server(factory, opts.addr()))??;
    for addr in server.local_addrs() {
        println!("listening on {addr}");
    }
    eprintln!("echo server on the {} loop; Ctrl-C to stop", opts.loop_kind);

    lp.run_until_complete(async {
        let sig = interrupt.wait().await?;
        eprintln!("signal {sig}: closing");
        server.close();
        // Collected first: no borrow of the map is held while transports act.
        let open: Vec<Transport> = connections.borrow().values().cloned().collect();
        for t in open {
            t.close();
        }
        drain(&server, grace, || {
            let open: Vec<Transport> = connections.borrow().values().cloned().collect();
            eprintln!("{} connection(s) still sending: aborted", open.len());
            for t in open {
                t.abort();
            }
        })
        .await
    })??;
    eprintln!("bye");
    Ok(())
}
