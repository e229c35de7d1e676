//! A line-based chat room written as a PEP 3156 protocol: every line a
//! client sends goes to every other client. The same `Chat` protocol runs on
//! whichever loop `--loop` names.
//!
//! ```text
//! cargo run -p oneloop-examples --bin chat_server -- --loop calloop --port 7001
//! nc 127.0.0.1 7001          # in two or more terminals; type, read the others
//! ```
//!
//! In the room, a line is a message; `/nick NAME` renames you, `/who` lists
//! who is here, `/quit` leaves (so does Ctrl-D or closing the terminal).
//! Lines from others arrive as `<name> text`, news from the server as
//! `* text`.
//!
//! `--loop` is one of `native` (the default), `tokio`, `smol`, `glib`,
//! `calloop`; `--port 0` picks a free port; `--max-backlog BYTES` (default
//! 256 KiB) is how much the server buffers for one client that does not
//! read. It prints `listening on ADDRESS` on stdout once it accepts
//! connections, logs joins and leaves on stderr, and stops on Ctrl-C
//! (SIGINT) or SIGTERM: it tells everyone, closes each connection once its
//! goodbye is sent (aborting those still sending after `--grace` seconds,
//! 2 by default), and exits with status 0.
//!
//! What it shows:
//! - state shared by every connection (the room) in an `Rc<RefCell<..>>`:
//!   one thread, so no locks; borrows are short and never held while a
//!   transport is called, because a write can call a protocol back
//!   (`pause_writing`) before it returns;
//! - framing: TCP delivers bytes in arbitrary chunks, the protocol cuts
//!   them into lines itself and bounds a line's length;
//! - flow control for a broadcast: one client that stops reading must not
//!   stall the room (so the server cannot stop reading the senders) nor
//!   grow the server's memory without bound. Each client may have at most
//!   `--max-backlog` bytes waiting for it; past that it is disconnected,
//!   and the room is told. The server's memory is bounded by clients ×
//!   (backlog + one line).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use oneloop::{Loop, Protocol, Transport};
use oneloop_examples::{Interrupt, Options, drain};

const USAGE: &str = "\
usage: chat_server [--loop native|tokio|smol|glib|calloop] [--host HOST] [--port PORT]
                   [--max-backlog BYTES] [--grace SECONDS]

A line-based chat room: each line a client sends goes to all the others.
Stops on Ctrl-C.
  --loop         the event loop to run on (default: native)
  --host         the address to listen on (default: 127.0.0.1)
  --port         the port to listen on; 0 picks a free one (default: 7001)
  --max-backlog  bytes buffered for a client that does not read before it is
                 disconnected (default: 262144)
  --grace        at Ctrl-C, how long clients get to take their goodbye before
                 they are aborted (default: 2)";

/// The longest line accepted, in bytes; the rest of a longer one is dropped.
const MAX_LINE: usize = 2048;

/// The longest name `/nick` accepts, in characters.
const MAX_NAME: usize = 24;

/// How long clients get to take their goodbye after Ctrl-C, unless
/// `--grace` says otherwise.
const GRACE: Duration = Duration::from_secs(2);

/// Who is in the room.
struct Room {
    members: BTreeMap<u64, Member>,
    max_backlog: usize,
}

struct Member {
    name: String,
    transport: Transport,
}

type SharedRoom = Rc<RefCell<Room>>;

/// Send `line` to everyone in `room` but `except`.
fn broadcast(room: &SharedRoom, except: Option<u64>, line: &str) {
    let recipients: Vec<u64> = room
        .borrow()
        .members
        .keys()
        .copied()
        .filter(|id| Some(*id) != except)
        .collect();
    send(room, &recipients, line);
}

/// Send `line` to one client.
fn tell(room: &SharedRoom, id: u64, line: &str) {
    send(room, &[id], line);
}

/// Send `line` to each of `recipients` still in the room; disconnect whoever
/// already has more waiting than the backlog allows, and tell the others.
///
/// No borrow of the room is held while a transport is called: a write can
/// call the recipient's protocol back before it returns.
fn send(room: &SharedRoom, recipients: &[u64], line: &str) {
    let (transports, max_backlog) = {
        let r = room.borrow();
        let transports: Vec<(u64, Transport)> = recipients
            .iter()
            .filter_map(|id| r.members.get(id).map(|m| (*id, m.transport.clone())))
            .collect();
        (transports, r.max_backlog)
    };
    let mut too_slow = Vec::new();
    for (id, t) in transports {
        if t.write_buffer_size() + line.len() > max_backlog {
            too_slow.push(id);
        } else {
            // Fails only if the transport is closing: it is leaving anyway.
            let _ = t.write(line.as_bytes());
        }
    }
    for id in too_slow {
        // Removed now, so that it gets no more and its `connection_lost`
        // does not announce it a second time.
        let gone = room.borrow_mut().members.remove(&id);
        if let Some(m) = gone {
            let unread = m.transport.write_buffer_size();
            eprintln!("{} dropped: {unread} bytes unread", m.name);
            // Discards the backlog: a client this far behind is not reading.
            m.transport.abort();
            broadcast(
                room,
                None,
                &format!("* {} was dropped: not reading\n", m.name),
            );
        }
    }
}

/// One client's connection.
struct Chat {
    room: SharedRoom,
    id: u64,
    transport: Option<Transport>,
    /// The start of a line whose end has not arrived yet (at most `MAX_LINE`).
    partial: Vec<u8>,
    /// The current line was too long: drop bytes up to its end.
    skipping: bool,
}

impl Chat {
    fn name(&self) -> Option<String> {
        self.room
            .borrow()
            .members
            .get(&self.id)
            .map(|m| m.name.clone())
    }

    fn on_line(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches(['\r', '\n']);
        let Some(name) = self.name() else { return };
        let (command, arg) = match text.split_once(' ') {
            Some((c, a)) => (c, a.trim()),
            None => (text, ""),
        };
        match command {
            "" => {}
            "/nick" => self.rename(&name, arg),
            "/who" => {
                let names: Vec<String> = self
                    .room
                    .borrow()
                    .members
                    .values()
                    .map(|m| m.name.clone())
                    .collect();
                tell(
                    &self.room,
                    self.id,
                    &format!("* here: {}\n", names.join(", ")),
                );
            }
            "/quit" => {
                tell(&self.room, self.id, "* bye\n");
                if let Some(t) = &self.transport {
                    t.close();
                }
            }
            c if c.starts_with('/') => tell(
                &self.room,
                self.id,
                &format!("* unknown command {c}; try /nick NAME, /who, /quit\n"),
            ),
            _ => broadcast(&self.room, Some(self.id), &format!("<{name}> {text}\n")),
        }
    }

    fn rename(&mut self, old: &str, new: &str) {
        let valid = !new.is_empty()
            && new.chars().count() <= MAX_NAME
            && !new.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            let msg = format!("* /nick needs a name of 1 to {MAX_NAME} characters, no spaces\n");
            return tell(&self.room, self.id, &msg);
        }
        let taken = {
            let mut room = self.room.borrow_mut();
            let taken = room.members.values().any(|m| m.name == new);
            if !taken && let Some(me) = room.members.get_mut(&self.id) {
                me.name = new.to_owned();
            }
            taken
        };
        if taken {
            tell(&self.room, self.id, &format!("* {new} is taken\n"));
        } else {
            eprintln!("{old} is now {new}");
            broadcast(&self.room, None, &format!("* {old} is now {new}\n"));
        }
    }
}

impl Protocol for Chat {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        let name = format!("guest{}", self.id);
        let others: Vec<String> = {
            let mut room = self.room.borrow_mut();
            let others = room.members.values().map(|m| m.name.clone()).collect();
            room.members.insert(
                self.id,
                Member {
                    name: name.clone(),
                    transport: transport.clone(),
                },
            );
            others
        };
        let here = if others.is_empty() {
            "nobody else is here".to_owned()
        } else {
            format!("here: {}", others.join(", "))
        };
        let peer = transport
            .peername()
            .map(|a| a.to_string())
            .unwrap_or_default();
        eprintln!("{name} joined from {peer}");
        tell(
            &self.room,
            self.id,
            &format!("* welcome, you are {name}; {here}. Commands: /nick NAME, /who, /quit\n"),
        );
        broadcast(&self.room, Some(self.id), &format!("* {name} joined\n"));
    }

    fn data_received(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            // After `/quit` (or a drop), the lines behind it in this chunk
            // are not the room's any more.
            if self.transport.as_ref().is_none_or(|t| t.is_closing()) {
                return;
            }
            let Some(end) = data.iter().position(|&b| b == b'\n') else {
                if !self.skipping {
                    self.partial.extend_from_slice(data);
                    if self.partial.len() > MAX_LINE {
                        self.partial.clear();
                        self.skipping = true;
                        let msg = format!("* line too long (over {MAX_LINE} bytes): dropped\n");
                        tell(&self.room, self.id, &msg);
                    }
                }
                return;
            };
            let (head, rest) = data.split_at(end + 1);
            data = rest;
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            if self.partial.len() + head.len() > MAX_LINE + 2 {
                self.partial.clear();
                let msg = format!("* line too long (over {MAX_LINE} bytes): dropped\n");
                tell(&self.room, self.id, &msg);
                continue;
            }
            let line = if self.partial.is_empty() {
                head.to_vec()
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                line
            };
            self.on_line(&line);
        }
    }

    fn eof_received(&mut self) -> bool {
        // A last line without a newline still counts.
        let last = std::mem::take(&mut self.partial);
        if !last.is_empty() && !self.skipping {
            self.on_line(&last);
        }
        false
    }

    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        self.transport = None;
        // `None` if `broadcast` already dropped this client.
        let gone = self.room.borrow_mut().members.remove(&self.id);
        if let Some(m) = gone {
            match error {
                None => eprintln!("{} left", m.name),
                Some(e) => eprintln!("{} lost: {e}", m.name),
            }
            broadcast(&self.room, None, &format!("* {} left\n", m.name));
        }
    }
}

fn main() -> ExitCode {
    let mut settings = Settings {
        max_backlog: 256 * 1024,
        grace: GRACE,
    };
    let parsed = Options::parse(std::env::args().skip(1), 7001, |name, value| {
        match name {
            "--max-backlog" => settings.max_backlog = Options::number(name, value)?,
            "--grace" => settings.grace = Options::seconds(name, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    });
    let opts = match parsed {
        Ok(opts) => opts,
        Err(e) => return e.report(USAGE),
    };
    match run(&opts, &settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat_server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The chat server's own options.
struct Settings {
    max_backlog: usize,
    grace: Duration,
}

fn run(opts: &Options, settings: &Settings) -> oneloop::Result<()> {
    let lp = opts.loop_kind.build()?;
    let result = serve(&lp, opts, settings);
    lp.close()?;
    result
}

fn serve(lp: &Loop, opts: &Options, settings: &Settings) -> oneloop::Result<()> {
    let room = Rc::new(RefCell::new(Room {
        members: BTreeMap::new(),
        max_backlog: settings.max_backlog,
    }));
    let next_id = Cell::new(0);
    let factory = {
        let room = room.clone();
        move || {
            next_id.set(next_id.get() + 1);
            Chat {
                room: room.clone(),
                id: next_id.get(),
                transport: None,
                partial: Vec::new(),
                skipping: false,
            }
        }
    };
    // Before the address is printed, so whoever reads it may signal at once.
    let interrupt = Interrupt::install(lp)?;
    let server = lp.run_until_complete(lp.create_server(factory, opts.addr()))??;
    for addr in server.local_addrs() {
        println!("listening on {addr}");
    }
    eprintln!("chat server on the {} loop; Ctrl-C to stop", opts.loop_kind);

    lp.run_until_complete(async {
        let sig = interrupt.wait().await?;
        eprintln!("signal {sig}: closing the room");
        server.close();
        broadcast(&room, None, "* the server is shutting down\n");
        let open: Vec<Transport> = room
            .borrow()
            .members
            .values()
            .map(|m| m.transport.clone())
            .collect();
        for t in open {
            t.close();
        }
        drain(&server, settings.grace, || {
            let open: Vec<Transport> = room
                .borrow()
                .members
                .values()
                .map(|m| m.transport.clone())
                .collect();
            for t in open {
                t.abort();
            }
        })
        .await
    })??;
    eprintln!("bye");
    Ok(())
}
