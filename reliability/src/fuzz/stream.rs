//! Stream transports, TCP and Unix: a server and one to four clients on one
//! loop, every byte checked.
//!
//! Each connection follows a plan drawn from the seed: the client writes a
//! random number of random-sized chunks (1 B to 256 KiB) with random pauses,
//! obeying `pause_writing` or not, under random water marks, then ends with
//! `close()`, `write_eof()`, `abort()` (mid-write: its buffer is usually
//! full) or a reset (`SO_LINGER` 0, then abort). The server echoes or
//! swallows, pauses reading in storms at random offsets (toggling
//! `pause_reading`/`resume_reading` in one callback, then holding), and may
//! itself abort, reset or close at a random offset. A quarter of the
//! clients use the stream API instead (`open_stream`), reading with random
//! buffer sizes and delays: random read chunking.
//!
//! Checked: every byte that arrives is the right one (a pattern per
//! connection: nothing lost, doubled or reordered); a connection that ended
//! cleanly delivered everything it was given, and one that did not either
//! got a reported error or had a fault injected; each protocol's calls keep
//! PEP 3156's order; every transport is lost exactly once; with flow
//! control obeyed, a client's buffer stays within its high-water mark plus
//! one write; a write after close/abort/`write_eof` is refused; the server
//! closes, its Unix socket file is removed.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use oneloop::{ErrorKind, Loop, Protocol, Server, Transport};
use oneloop_conformance::Env;

use super::common::{
    Faults, Life, Phase, SharedTally, Tally, delay_ms, first_mismatch, pattern, write_size,
};
use super::sockopt::reset_on_close;

/// TCP or a Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// TCP on 127.0.0.1.
    Tcp,
    /// A Unix stream socket in the temporary directory.
    Unix,
}

/// How a protocol client ends its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `close()`: flush, then lost.
    Close,
    /// `write_eof()`, then read the echo to the end.
    WriteEof,
    /// `abort()` right after the last write (the buffer is dropped).
    Abort,
    /// `SO_LINGER` 0, then `abort()`: the peer gets a reset.
    Reset,
}

/// A fault the server injects when it has received a given number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerFault {
    Abort,
    Reset,
    Close,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    len: usize,
    delay_ms: u8,
}

#[derive(Debug, Clone)]
enum Client {
    /// A `Protocol` client over `create_connection`.
    Protocol {
        end: End,
        obey_flow: bool,
        limits: Option<(usize, usize)>,
    },
    /// A stream client over `open_stream`: writer and reader tasks, the
    /// reader with these buffer sizes and delays (cycled).
    Stream { reads: Vec<(usize, u8)> },
}

#[derive(Debug, Clone, Copy)]
struct ReadPause {
    at: u64,
    storm: u8,
    hold_ms: u8,
}

#[derive(Debug, Clone)]
struct ConnPlan {
    /// The pattern's stream id.
    id: u64,
    echo: bool,
    writes: Vec<Step>,
    client: Client,
    pauses: Vec<ReadPause>,
    fault: Option<(u64, ServerFault)>,
    /// The echo server pauses reading while its own writing is paused.
    server_obeys_flow: bool,
}

impl ConnPlan {
    fn total(&self) -> u64 {
        self.writes.iter().map(|s| s.len as u64).sum()
    }

    fn end(&self) -> Option<End> {
        match self.client {
            Client::Protocol { end, .. } => Some(end),
            Client::Stream { .. } => None,
        }
    }

    /// Whether the client lets the connection end without a fault of its own.
    fn client_clean(&self) -> bool {
        !matches!(self.end(), Some(End::Abort | End::Reset))
    }
}

/// At most this many bytes per connection, so a run stays short.
const MAX_PER_CONN: u64 = 768 * 1024;

fn draw_plan(rng: &mut fastrand::Rng) -> Vec<ConnPlan> {
    let conns = rng.usize(1..=4);
    (0..conns)
        .map(|_| {
            let id = rng.u64(..);
            let echo = rng.bool();
            let mut writes = Vec::new();
            let mut total = 0u64;
            for _ in 0..rng.usize(0..=24) {
                let len = write_size(rng);
                if total + len as u64 > MAX_PER_CONN {
                    break;
                }
                total += len as u64;
                writes.push(Step {
                    len,
                    delay_ms: delay_ms(rng),
                });
            }
            let client = if rng.u8(0..4) == 0 {
                // At least one read takes 4 KiB or more, so that tiny reads
                // with pauses cannot make a run crawl.
                let mut reads: Vec<(usize, u8)> = (0..rng.usize(0..=7))
                    .map(|_| (write_size(rng).min(70_000), delay_ms(rng)))
                    .collect();
                reads.insert(
                    rng.usize(0..=reads.len()),
                    (rng.usize(4096..=70_000), delay_ms(rng)),
                );
                Client::Stream { reads }
            } else {
                let end = match rng.u8(0..100) {
                    0..35 => End::Close,
                    35..70 => End::WriteEof,
                    70..85 => End::Abort,
                    _ => End::Reset,
                };
                let limits = (rng.u8(0..10) < 3).then(|| {
                    let high = rng.usize(0..=256 * 1024);
                    (high, rng.usize(0..=high))
                });
                Client::Protocol {
                    end,
                    obey_flow: rng.bool(),
                    limits,
                }
            };
            let pauses = (0..rng.usize(0..=4))
                .map(|_| ReadPause {
                    at: rng.u64(0..=total),
                    storm: rng.u8(0..=5),
                    hold_ms: rng.u8(0..=5),
                })
                .collect::<Vec<_>>();
            let mut pauses = pauses;
            pauses.sort_by_key(|p| p.at);
            // A client that closes stops reading: a server that also closes
            // gracefully with echo still to send would wait on it forever
            // (as two asyncio peers would), so it aborts or resets instead.
            let client_closes = matches!(
                client,
                Client::Protocol {
                    end: End::Close,
                    ..
                }
            );
            let fault = (rng.u8(0..100) < 15).then(|| {
                let kind = match rng.u8(0..3) {
                    0 => ServerFault::Abort,
                    1 => ServerFault::Reset,
                    _ if echo && client_closes => ServerFault::Abort,
                    _ => ServerFault::Close,
                };
                (rng.u64(0..=total), kind)
            });
            // Only a client that keeps reading can take a flow-obeying echo.
            let server_obeys_flow =
                echo && matches!(
                    client,
                    Client::Stream { .. }
                        | Client::Protocol {
                            end: End::WriteEof,
                            ..
                        }
                ) && rng.bool();
            ConnPlan {
                id,
                echo,
                writes,
                client,
                pauses,
                fault,
                server_obeys_flow,
            }
        })
        .collect()
}

/// How a side's `connection_lost` came, once it came.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lost {
    Clean,
    Error(String),
}

/// One connection's record, both sides.
#[derive(Debug)]
struct Conn {
    plan: ConnPlan,
    client: Life,
    server: Life,
    client_t: Option<Transport>,
    server_t: Option<Transport>,
    /// Bytes the client's `write` accepted.
    sent: u64,
    /// Bytes the server received (checked against the pattern).
    received: u64,
    /// Bytes the server echoed.
    echoed: u64,
    /// Bytes of echo the client received (checked).
    back: u64,
    client_eof: bool,
    server_eof: bool,
    client_lost: Option<Lost>,
    server_lost: Option<Lost>,
    next_write: usize,
    /// The delay before `next_write` has passed.
    delay_done: bool,
    client_ended: bool,
    next_pause: usize,
    holds: u32,
    flow_paused: bool,
    faulted: bool,
    /// Largest client buffer seen, and the bound it had to stay under.
    worst_buffer: Option<(usize, usize)>,
}

struct Run {
    lp: Loop,
    conns: RefCell<Vec<Conn>>,
    faults: Faults,
    tally: SharedTally,
    /// Sides still to be lost; the run is over at zero.
    remaining: std::cell::Cell<usize>,
    done: oneloop::LoopFuture<()>,
    /// Servers accept in connect order: the next accepted connection's index.
    accepted: std::cell::Cell<usize>,
}

impl Run {
    fn side_lost(&self) {
        let left = self.remaining.get() - 1;
        self.remaining.set(left);
        if left == 0 {
            let _ = self.done.set_result(());
        }
    }
}

fn lost_of(e: Option<oneloop::Error>) -> Lost {
    match e {
        None => Lost::Clean,
        Some(e) => Lost::Error(e.to_string()),
    }
}

// ---- the protocol client ----

struct ClientProto {
    run: Rc<Run>,
    i: usize,
}

impl Protocol for ClientProto {
    fn connection_made(&mut self, t: &Transport) {
        let limits = {
            let mut conns = self.run.conns.borrow_mut();
            let c = &mut conns[self.i];
            c.client.made();
            c.client_t = Some(t.clone());
            match c.plan.client {
                Client::Protocol { limits, .. } => limits,
                Client::Stream { .. } => None,
            }
        };
        if let Some((high, low)) = limits
            && let Err(e) = t.set_write_buffer_limits(Some(high), Some(low))
        {
            self.run
                .faults
                .add(format!("conn {}: set_write_buffer_limits: {e}", self.i));
        }
        client_step(&self.run, self.i);
    }

    fn data_received(&mut self, data: &[u8]) {
        let mut conns = self.run.conns.borrow_mut();
        let c = &mut conns[self.i];
        c.client.data(data.len(), false);
        if let Some(at) = first_mismatch(c.plan.id, c.back, data) {
            self.run.faults.add(format!(
                "conn {}: echo byte {} is wrong (a byte lost, doubled or reordered)",
                self.i,
                c.back + at as u64
            ));
        }
        c.back += data.len() as u64;
    }

    fn eof_received(&mut self) -> bool {
        let mut conns = self.run.conns.borrow_mut();
        let c = &mut conns[self.i];
        c.client.eof();
        c.client_eof = true;
        false
    }

    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        {
            let mut conns = self.run.conns.borrow_mut();
            let c = &mut conns[self.i];
            c.client.lost();
            c.client_lost = Some(lost_of(error));
            c.client_t = None;
        }
        self.run.side_lost();
    }

    fn pause_writing(&mut self) {
        self.run.conns.borrow_mut()[self.i].client.pause();
        self.run.tally.borrow_mut().write_pauses += 1;
    }

    fn resume_writing(&mut self) {
        self.run.conns.borrow_mut()[self.i].client.resume();
        let run = self.run.clone();
        let i = self.i;
        let _ = self.run.lp.call_soon(move || client_step(&run, i));
    }
}

/// Write what the plan says next, until a delay, a pause or the end.
fn client_step(run: &Rc<Run>, i: usize) {
    loop {
        let (t, step, obey_flow, id, offset) = {
            let mut conns = run.conns.borrow_mut();
            let c = &mut conns[i];
            if c.client_ended || c.client_lost.is_some() {
                return;
            }
            let Some(t) = c.client_t.clone() else { return };
            let obey_flow = matches!(
                c.plan.client,
                Client::Protocol {
                    obey_flow: true,
                    ..
                }
            );
            let Some(step) = c.plan.writes.get(c.next_write).copied() else {
                drop(conns);
                client_end(run, i, &t);
                return;
            };
            if step.delay_ms > 0 && !c.delay_done {
                c.delay_done = true;
                let run2 = run.clone();
                let delay = Duration::from_millis(step.delay_ms.into());
                if run
                    .lp
                    .call_later(delay, move || client_step(&run2, i))
                    .is_err()
                {
                    run.faults.add(format!("conn {i}: call_later failed"));
                }
                return;
            }
            (t, step, obey_flow, c.plan.id, c.sent)
        };
        if obey_flow && t.is_writing_paused() {
            // resume_writing steps again.
            return;
        }
        let data = pattern(id, offset, step.len);
        let res = t.write(&data);
        let mut conns = run.conns.borrow_mut();
        let c = &mut conns[i];
        c.next_write += 1;
        c.delay_done = false;
        match res {
            Ok(()) => c.sent += step.len as u64,
            Err(e) if e.kind() == ErrorKind::InvalidState && t.is_closing() => {
                // The connection failed under us (a server fault): later
                // writes are refused, as they must be.
            }
            Err(e) => run.faults.add(format!("conn {i}: write failed: {e}")),
        }
        if obey_flow {
            let (_, high) = t.write_buffer_limits();
            let size = t.write_buffer_size();
            let bound = high + step.len;
            if c.worst_buffer.is_none_or(|(w, _)| size > w) {
                c.worst_buffer = Some((size, bound));
            }
        }
    }
}

fn client_end(run: &Rc<Run>, i: usize, t: &Transport) {
    let end = {
        let mut conns = run.conns.borrow_mut();
        let c = &mut conns[i];
        c.client_ended = true;
        c.plan.end()
    };
    match end {
        Some(End::Close) => t.close(),
        Some(End::WriteEof) => t.write_eof(),
        Some(End::Abort) => t.abort(),
        Some(End::Reset) => {
            reset_on_close(t);
            t.abort();
        }
        None => {}
    }
    if matches!(end, Some(End::Abort | End::Reset)) {
        run.tally.borrow_mut().faults_injected += 1;
    }
    // Bad input on the way: writing after the end is refused, never lost
    // silently, never a panic.
    match t.write(b"late") {
        Err(e) if e.kind() == ErrorKind::InvalidState => {}
        other => run.faults.add(format!(
            "conn {i}: a write after {end:?} gave {other:?}, not InvalidState"
        )),
    }
}

// ---- the server's protocol ----

struct ServerProto {
    run: Rc<Run>,
    i: usize,
}

impl Protocol for ServerProto {
    fn connection_made(&mut self, t: &Transport) {
        let mut conns = self.run.conns.borrow_mut();
        let Some(c) = conns.get_mut(self.i) else {
            self.run
                .faults
                .add(format!("server: an unexpected connection {}", self.i));
            t.abort();
            return;
        };
        c.server.made();
        c.server_t = Some(t.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        let run = &self.run;
        let i = self.i;
        let (t, echo) = {
            let mut conns = run.conns.borrow_mut();
            let c = &mut conns[i];
            c.server.data(data.len(), false);
            if let Some(at) = first_mismatch(c.plan.id, c.received, data) {
                run.faults.add(format!(
                    "conn {i}: server byte {} is wrong (a byte lost, doubled or reordered)",
                    c.received + at as u64
                ));
            }
            c.received += data.len() as u64;
            let Some(t) = c.server_t.clone() else { return };
            (t, c.plan.echo && !c.faulted)
        };
        if echo {
            match t.write(data) {
                Ok(()) => run.conns.borrow_mut()[i].echoed += data.len() as u64,
                Err(e) if t.is_closing() && e.kind() == ErrorKind::InvalidState => {}
                Err(e) => run.faults.add(format!("conn {i}: echo write failed: {e}")),
            }
        }
        server_after_data(run, i, &t);
    }

    fn eof_received(&mut self) -> bool {
        let mut conns = self.run.conns.borrow_mut();
        let c = &mut conns[self.i];
        c.server.eof();
        c.server_eof = true;
        false
    }

    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        {
            let mut conns = self.run.conns.borrow_mut();
            let c = &mut conns[self.i];
            c.server.lost();
            c.server_lost = Some(lost_of(error));
            c.server_t = None;
        }
        self.run.side_lost();
    }

    fn pause_writing(&mut self) {
        self.run.conns.borrow_mut()[self.i].server.pause();
        self.run.tally.borrow_mut().write_pauses += 1;
    }

    fn resume_writing(&mut self) {
        let t = {
            let mut conns = self.run.conns.borrow_mut();
            let c = &mut conns[self.i];
            c.server.resume();
            c.flow_paused = false;
            c.server_t.clone()
        };
        if let Some(t) = t {
            update_reading(&self.run, self.i, &t);
        }
    }
}

/// The server's read pauses, flow control and fault, after each chunk.
fn server_after_data(run: &Rc<Run>, i: usize, t: &Transport) {
    let (storms, fault) = {
        let mut conns = run.conns.borrow_mut();
        let c = &mut conns[i];
        let mut storms = Vec::new();
        while let Some(p) = c.plan.pauses.get(c.next_pause).copied()
            && p.at <= c.received
        {
            c.next_pause += 1;
            storms.push(p);
        }
        if c.plan.server_obeys_flow && t.is_writing_paused() {
            c.flow_paused = true;
        }
        let fault = match c.plan.fault {
            Some((at, kind)) if !c.faulted && at <= c.received => {
                c.faulted = true;
                Some(kind)
            }
            _ => None,
        };
        c.holds += storms.len() as u32;
        (storms, fault)
    };
    for p in &storms {
        for _ in 0..p.storm {
            t.pause_reading();
            t.resume_reading();
        }
        t.pause_reading();
        run.tally.borrow_mut().read_pauses += u64::from(p.storm) * 2 + 2;
        let run2 = run.clone();
        let t2 = t.clone();
        let hold = Duration::from_millis(p.hold_ms.into());
        let armed = run.lp.call_later(hold, move || {
            run2.conns.borrow_mut()[i].holds -= 1;
            update_reading(&run2, i, &t2);
        });
        if armed.is_err() {
            run.faults.add(format!("conn {i}: call_later failed"));
        }
    }
    update_reading(run, i, t);
    if let Some(kind) = fault {
        run.tally.borrow_mut().faults_injected += 1;
        match kind {
            ServerFault::Abort => t.abort(),
            ServerFault::Reset => {
                reset_on_close(t);
                t.abort();
            }
            ServerFault::Close => t.close(),
        }
    }
}

fn update_reading(run: &Rc<Run>, i: usize, t: &Transport) {
    let paused = {
        let conns = run.conns.borrow();
        let c = &conns[i];
        c.holds > 0 || c.flow_paused
    };
    if paused {
        t.pause_reading();
    } else {
        t.resume_reading();
    }
}

// ---- the stream client ----

/// The writer and reader tasks of a stream client; ends the client's side.
async fn stream_client(
    run: Rc<Run>,
    i: usize,
    (mut reader, mut writer): (oneloop::StreamReader, oneloop::StreamWriter),
) {
    let plan = run.conns.borrow()[i].plan.clone();
    let Client::Stream { reads } = plan.client.clone() else {
        unreachable!("a stream plan")
    };
    run.conns.borrow_mut()[i].client.made();
    let writing = {
        let run = run.clone();
        async move {
            for step in &plan.writes {
                if step.delay_ms > 0 {
                    let _ = oneloop::sleep(Duration::from_millis(step.delay_ms.into())).await;
                }
                let offset = run.conns.borrow()[i].sent;
                let data = pattern(plan.id, offset, step.len);
                let mut done = 0;
                while done < data.len() {
                    match writer.write(&data[done..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => done += n,
                    }
                }
                run.conns.borrow_mut()[i].sent += done as u64;
                if done < data.len() {
                    return writer;
                }
            }
            let _ = writer.close().await;
            writer
        }
    };
    let reading = {
        let run = run.clone();
        async move {
            let mut buf = vec![0u8; 70_000];
            for k in 0.. {
                let (size, delay) = reads[k % reads.len()];
                // A pause before one read in 16: the reader falls behind now
                // and then (the transport pauses reading), not all the time.
                if delay > 0 && k % 16 == 0 {
                    let _ = oneloop::sleep(Duration::from_millis(delay.into())).await;
                }
                match reader.read(&mut buf[..size.max(1)]).await {
                    Ok(0) => {
                        run.conns.borrow_mut()[i].client_eof = true;
                        return (reader, None);
                    }
                    Ok(n) => {
                        let mut conns = run.conns.borrow_mut();
                        let c = &mut conns[i];
                        c.client.data(n, false);
                        if let Some(at) = first_mismatch(c.plan.id, c.back, &buf[..n]) {
                            run.faults.add(format!(
                                "conn {i}: stream read byte {} is wrong",
                                c.back + at as u64
                            ));
                        }
                        c.back += n as u64;
                    }
                    Err(e) => return (reader, Some(e.to_string())),
                }
            }
            unreachable!("the reads end with EOF or an error")
        }
    };
    let (writer, (reader, error)) = futures::join!(writing, reading);
    let transport = reader.transport().clone();
    drop((reader, writer));
    // Both halves are gone: the transport closes after flushing. Its
    // connection_lost is internal; wait until the socket is released.
    while transport.socket_fd().is_some() {
        if oneloop::sleep(Duration::from_millis(1)).await.is_err() {
            break;
        }
    }
    {
        let mut conns = run.conns.borrow_mut();
        let c = &mut conns[i];
        if c.client_eof {
            c.client.eof();
        }
        c.client.lost();
        c.client_lost = Some(match error {
            None => Lost::Clean,
            Some(e) => Lost::Error(e),
        });
    }
    run.side_lost();
}

// ---- the run ----

static UNIX_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn unix_path() -> PathBuf {
    let n = UNIX_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("oneloop-fuzz-{}-{n}.sock", std::process::id()))
}

enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// One seeded run of the stream scenario on `env`'s loop.
///
/// # Panics
/// On any broken property, with the plan.
pub(crate) fn run(env: &Env, family: Family, seed: u64) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let plans = draw_plan(&mut rng);
    let lp = env.lp().clone();
    let faults = Faults::default();
    let tally: SharedTally = Rc::default();
    let run = Rc::new(Run {
        lp: lp.clone(),
        conns: RefCell::new(
            plans
                .iter()
                .enumerate()
                .map(|(i, plan)| Conn {
                    plan: plan.clone(),
                    client: Life::new(format!("conn {i} client"), &faults),
                    server: Life::new(format!("conn {i} server"), &faults),
                    client_t: None,
                    server_t: None,
                    sent: 0,
                    received: 0,
                    echoed: 0,
                    back: 0,
                    client_eof: false,
                    server_eof: false,
                    client_lost: None,
                    server_lost: None,
                    next_write: 0,
                    delay_done: false,
                    client_ended: false,
                    next_pause: 0,
                    holds: 0,
                    flow_paused: false,
                    faulted: false,
                    worst_buffer: None,
                })
                .collect(),
        ),
        faults: faults.clone(),
        tally: tally.clone(),
        remaining: std::cell::Cell::new(plans.len() * 2),
        done: lp.create_future(),
        accepted: std::cell::Cell::new(0),
    });
    let factory = {
        let run = run.clone();
        move || {
            let i = run.accepted.get();
            run.accepted.set(i + 1);
            ServerProto {
                run: run.clone(),
                i,
            }
        }
    };
    let (server, addr) = match family {
        Family::Tcp => {
            let server = env
                .run_until(lp.create_server(factory, "127.0.0.1:0"))
                .unwrap_or_else(|e| panic!("create_server: {e}"));
            let addr = server.local_addrs()[0].as_inet().expect("an inet address");
            (server, Addr::Tcp(addr))
        }
        Family::Unix => {
            let path = unix_path();
            let server = env
                .run_until(lp.create_unix_server(factory, &path))
                .unwrap_or_else(|e| panic!("create_unix_server: {e}"));
            (server, Addr::Unix(path))
        }
    };
    // Connect one at a time, so the server accepts in plan order.
    let connecting = {
        let run = run.clone();
        let lp = lp.clone();
        let addr = match &addr {
            Addr::Tcp(a) => Addr::Tcp(*a),
            Addr::Unix(p) => Addr::Unix(p.clone()),
        };
        async move {
            for (i, plan) in plans.iter().enumerate() {
                let made = match (&plan.client, &addr) {
                    (Client::Protocol { .. }, Addr::Tcp(a)) => {
                        let proto = ClientProto {
                            run: run.clone(),
                            i,
                        };
                        lp.create_connection(move || proto, *a).await.map(drop)
                    }
                    (Client::Protocol { .. }, Addr::Unix(p)) => {
                        let proto = ClientProto {
                            run: run.clone(),
                            i,
                        };
                        lp.create_unix_connection(move || proto, p).await.map(drop)
                    }
                    (Client::Stream { .. }, Addr::Tcp(a)) => lp
                        .open_stream(*a)
                        .await
                        .and_then(|s| lp.spawn(stream_client(run.clone(), i, s.into_split())))
                        .map(drop),
                    (Client::Stream { .. }, Addr::Unix(p)) => lp
                        .open_unix_connection(p)
                        .await
                        .and_then(|halves| lp.spawn(stream_client(run.clone(), i, halves)))
                        .map(drop),
                };
                if let Err(e) = made {
                    run.faults.add(format!("conn {i}: connecting failed: {e}"));
                    let _ = run.done.set_result(());
                    return;
                }
            }
        }
    };
    let connector = lp.spawn(connecting).expect("spawn the connector");
    let describe = || describe(seed, &run);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.run_until(run.done.clone())
    }));
    if out.is_err() || !faults.is_empty() {
        connector.cancel();
        panic!(
            "{}\n  {}\n{}",
            if out.is_err() {
                "the run did not finish (a side was never lost)"
            } else {
                "properties broken:"
            },
            faults.report(),
            describe()
        );
    }
    drop(connector);
    close_server(env, &server, &addr);
    check_outcomes(&run, &tally);
    if !faults.is_empty() {
        panic!("properties broken:\n  {}\n{}", faults.report(), describe());
    }
    let mut t = *tally.borrow();
    t.runs = 1;
    t.channels = run.conns.borrow().len() as u64;
    t
}

fn close_server(env: &Env, server: &Server, addr: &Addr) {
    server.close();
    env.run_until(server.wait_closed())
        .unwrap_or_else(|e| panic!("wait_closed: {e}"));
    assert_eq!(
        server.active_connections(),
        0,
        "connections left after wait_closed"
    );
    if let Addr::Unix(p) = addr {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "the Unix server left its socket file {} behind",
            p.display()
        );
    }
}

/// What each connection's plan lets us require of its end.
fn check_outcomes(run: &Rc<Run>, tally: &SharedTally) {
    let conns = run.conns.borrow();
    let mut t = tally.borrow_mut();
    for (i, c) in conns.iter().enumerate() {
        let f = &run.faults;
        t.bytes_sent += c.sent + c.echoed;
        t.bytes_received += c.received + c.back;
        for lost in [&c.client_lost, &c.server_lost] {
            if matches!(lost, Some(Lost::Error(_))) {
                t.errors_reported += 1;
            }
        }
        if c.client.phase() != Phase::Lost || c.server.phase() != Phase::Lost {
            f.add(format!("conn {i}: a side was not lost"));
        }
        if c.received > c.sent {
            f.add(format!(
                "conn {i}: the server got {} bytes of {} sent",
                c.received, c.sent
            ));
        }
        if c.back > c.echoed {
            f.add(format!(
                "conn {i}: the client got {} bytes of echo, {} echoed",
                c.back, c.echoed
            ));
        }
        if let Some((size, bound)) = c.worst_buffer
            && size > bound
        {
            f.add(format!(
                "conn {i}: obeying flow control, the client's buffer reached {size} bytes (bound {bound})"
            ));
        }
        let clean = c.plan.client_clean() && c.plan.fault.is_none();
        if !clean {
            continue;
        }
        let server_error = matches!(c.server_lost, Some(Lost::Error(_)));
        let client_error = matches!(c.client_lost, Some(Lost::Error(_)));
        let client_reads_to_end = !matches!(c.plan.end(), Some(End::Close));
        if c.plan.echo && !client_reads_to_end {
            // The client closed with echo unread: its kernel resets the
            // connection, which may drop what it had not yet sent. Either
            // everything arrived or the server was told.
            if c.received < c.sent && !server_error {
                t.bytes_lost += c.sent - c.received;
                f.add(format!(
                    "conn {i}: {} of {} bytes arrived and the server was told of no error",
                    c.received, c.sent
                ));
            }
            continue;
        }
        if c.received != c.sent || !c.server_eof || server_error || client_error {
            t.bytes_lost += c.sent - c.received;
            f.add(format!(
                "conn {i}: a clean connection delivered {} of {} bytes (server eof {}, server lost {:?}, client lost {:?})",
                c.received, c.sent, c.server_eof, c.server_lost, c.client_lost
            ));
        }
        if c.plan.echo && (c.back != c.sent || !c.client_eof) {
            t.bytes_lost += c.sent.saturating_sub(c.back);
            f.add(format!(
                "conn {i}: a clean echo returned {} of {} bytes (client eof {})",
                c.back, c.sent, c.client_eof
            ));
        }
    }
}

fn describe(seed: u64, run: &Rc<Run>) -> String {
    let conns = run.conns.borrow();
    let mut s = format!("seed {seed}: {} connection(s)\n", conns.len());
    for (i, c) in conns.iter().enumerate() {
        let _ = writeln!(
            s,
            "  conn {i}: echo {} | {} writes, {} bytes | client {:?} | read pauses at {:?} | server fault {:?} | server obeys flow {} || sent {} received {} echoed {} back {} | client {:?} eof {} lost {:?} | server {:?} eof {} lost {:?}",
            c.plan.echo,
            c.plan.writes.len(),
            c.plan.total(),
            c.plan.client,
            c.plan.pauses.iter().map(|p| p.at).collect::<Vec<_>>(),
            c.plan.fault,
            c.plan.server_obeys_flow,
            c.sent,
            c.received,
            c.echoed,
            c.back,
            c.client.phase(),
            c.client_eof,
            c.client_lost,
            c.server.phase(),
            c.server_eof,
            c.server_lost,
        );
    }
    s
}
