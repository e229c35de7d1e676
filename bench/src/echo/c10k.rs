//! The 10 000-connection cell (issue 17 item 5): how a server copes with
//! many concurrent connections, on the default loop and every adapter.
//!
//! For each cell, a fresh `bench_echo_server` (pinned to CPU 0) and this
//! process as the client (pinned to CPU 1), two phases:
//!
//! 1. **connect**: open [`C10kConfig::connections`] connections to the
//!    server, each sending one [`C10kConfig::size`]-byte request and
//!    reading the echo back, with at most [`C10kConfig::in_flight`]
//!    connections opened and not yet echoed at any time. That bound keeps
//!    the server's accept queue (asyncio's backlog of 100) from
//!    overflowing: a full queue drops the handshake and the client retries
//!    one second later, so an unbounded burst measures TCP's retransmission
//!    timer, not the loop. The phase ends when the last first echo is
//!    back: it times accepting, registering and serving a new connection.
//! 2. **echo**: with every connection open, each sends one more request at
//!    once (every socket written before any reply is read) and reads its
//!    echo back: one request on each of N concurrently active connections.
//!
//! Per phase: its wall time and the server's process CPU time (read over
//! the control channel before and after), and CPU per connection or per
//! request. Every reply is compared byte for byte with its request; each
//! connection sends its own pattern, so a crossed reply fails the run.
//! Connections close with `SO_LINGER` 0 (a reset: no `TIME_WAIT` left on
//! the client's ports, which 10 000 connections a round would exhaust in
//! a few rounds), and each sample uses a fresh server on a fresh port.
//!
//! Both processes raise their soft `RLIMIT_NOFILE` to the hard limit (it
//! is not raised: 20 000 on the project's machine, which 10 000
//! connections and a few fds of each process's own fit). The cells run in
//! interleaved rounds (the order rotates each round); the table gives the
//! median of each figure and of each same-round ratio to the default
//! loop's cell.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::epoll;

use super::control::ServerProcess;
use super::matrix::{Cell, pinned};
use super::server::{LoopKind, Server};

/// How the cell runs.
#[derive(Debug, Clone)]
pub struct C10kConfig {
    /// The cells (server × loop) to run.
    pub cells: Vec<Cell>,
    /// Concurrent connections.
    pub connections: usize,
    /// Bytes per request (and per reply).
    pub size: usize,
    /// Connections opened and not yet echoed, at most, while connecting.
    pub in_flight: usize,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Pin the server to CPU 0 and this process to CPU 1.
    pub pin: bool,
    /// Where `bench_echo_server` is.
    pub bin_dir: PathBuf,
    /// A phase that makes no progress for this long fails the run.
    pub stall: Duration,
}

impl C10kConfig {
    /// The cells of the issue: oneloop's protocol echo on the default loop
    /// and on every adapter of this build, and the bare-epoll floor.
    pub fn default_cells() -> Vec<Cell> {
        let mut v = vec![Cell::FLOOR];
        for kind in LoopKind::ALL {
            if super::server::supported(Server::Protocol, kind) {
                v.push(Cell {
                    server: Server::Protocol,
                    kind,
                });
            }
        }
        v
    }

    /// The fds this process needs: one per connection and a few of its own.
    pub fn fds_needed(&self) -> u64 {
        self.connections as u64 + 64
    }
}

/// One sample of one cell.
#[derive(Debug, Clone, Copy)]
pub struct C10kSample {
    /// Wall time of the connect phase.
    pub connect_wall: Duration,
    /// Server CPU time during the connect phase.
    pub connect_cpu: Duration,
    /// Wall time of the echo phase.
    pub echo_wall: Duration,
    /// Server CPU time during the echo phase.
    pub echo_cpu: Duration,
}

/// Samples by cell, one per round, in round order.
pub type C10kResults = BTreeMap<Cell, Vec<C10kSample>>;

/// Raise this process's soft `RLIMIT_NOFILE` to its hard limit (the hard
/// limit is left alone); the soft limit now.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Run the rounds, printing each sample to stderr.
///
/// # Errors
/// If the fd limit is too low, a server does not start, a phase stalls, a
/// reply is wrong, or a server's CPU time cannot be read.
pub fn run(config: &C10kConfig) -> io::Result<C10kResults> {
    let limit = raise_nofile();
    if limit < config.fds_needed() {
        return Err(io::Error::other(format!(
            "{} connections need {} fds; RLIMIT_NOFILE allows {limit} (the hard limit; raise it, or pass --connections)",
            config.connections,
            config.fds_needed()
        )));
    }
    if config.pin {
        pin_self(1)?;
    }
    let patterns = Patterns::new(config.size);
    let mut results = C10kResults::new();
    for round in 0..config.rounds {
        let n = config.cells.len();
        for i in 0..n {
            let cell = config.cells[(i + round) % n];
            let sample = one(config, cell, &patterns).map_err(|e| {
                io::Error::new(e.kind(), format!("{cell}, round {}: {e}", round + 1))
            })?;
            eprintln!(
                "round {} {cell:<20} connect {:>7.1} ms, server {:>7.1} ms CPU ({:>5.1} µs/conn); echo {:>7.1} ms, server {:>7.1} ms CPU ({:>5.1} µs/req)",
                round + 1,
                ms(sample.connect_wall),
                ms(sample.connect_cpu),
                us(sample.connect_cpu) / config.connections as f64,
                ms(sample.echo_wall),
                ms(sample.echo_cpu),
                us(sample.echo_cpu) / config.connections as f64,
            );
            results.entry(cell).or_default().push(sample);
        }
    }
    Ok(results)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Pin this process (every thread made from now on too) to `cpu`.
fn pin_self(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(io::Error::from)
}

/// One sample: a fresh server, both phases, then every connection reset
/// and the server asked to quit.
fn one(config: &C10kConfig, cell: Cell, patterns: &Patterns) -> io::Result<C10kSample> {
    let argv = [
        config
            .bin_dir
            .join("bench_echo_server")
            .display()
            .to_string(),
        "--server".into(),
        cell.server.to_string(),
        "--loop".into(),
        cell.kind.to_string(),
    ];
    let mut server = ServerProcess::start(pinned(config.pin, "0", &argv))?;
    let addr: SocketAddr = ([127, 0, 0, 1], server.port()).into();
    let mut client = Client::new(config, patterns)?;
    let cpu0 = server.cpu()?;
    let t0 = Instant::now();
    client.connect_all(addr)?;
    let connect_wall = t0.elapsed();
    let cpu1 = server.cpu()?;
    let t1 = Instant::now();
    client.echo_all()?;
    let echo_wall = t1.elapsed();
    let cpu2 = server.cpu()?;
    drop(client);
    server.quit()?;
    Ok(C10kSample {
        connect_wall,
        connect_cpu: cpu1.saturating_sub(cpu0),
        echo_wall,
        echo_cpu: cpu2.saturating_sub(cpu1),
    })
}

/// One request's bytes per pattern: connection `i` sends pattern
/// `i % COUNT`, so neighbouring connections never send the same bytes.
struct Patterns(Vec<Vec<u8>>);

impl Patterns {
    /// Distinct patterns (a prime, so that no stride of connections maps
    /// onto one pattern).
    const COUNT: usize = 251;

    fn new(size: usize) -> Patterns {
        Patterns(
            (0..Self::COUNT)
                .map(|k| (0..size).map(|j| (j * 7 + k * 13 + 1) as u8).collect())
                .collect(),
        )
    }

    fn of(&self, conn: usize) -> &[u8] {
        &self.0[conn % Self::COUNT]
    }
}

/// Where a connection is in its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Writing the request: this many bytes sent so far.
    Sending(usize),
    /// Reading the echo: this many bytes back so far.
    Receiving(usize),
    /// Echo complete; waiting for the next phase.
    Idle,
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    /// `EPOLLOUT` is in its interest (a partial write is pending).
    wants_out: bool,
}

/// The client: every connection on one epoll set, one thread.
struct Client<'a> {
    config: &'a C10kConfig,
    patterns: &'a Patterns,
    ep: rustix::fd::OwnedFd,
    conns: Vec<Conn>,
    /// Connections whose current request is not yet echoed back.
    busy: usize,
    scratch: Vec<u8>,
    events: Vec<epoll::Event>,
}

impl Drop for Client<'_> {
    fn drop(&mut self) {
        // Reset rather than close: no TIME_WAIT on this side's ports.
        for c in &self.conns {
            let _ = rustix::net::sockopt::set_socket_linger(&c.stream, Some(Duration::ZERO));
        }
    }
}

impl<'a> Client<'a> {
    fn new(config: &'a C10kConfig, patterns: &'a Patterns) -> io::Result<Client<'a>> {
        Ok(Client {
            config,
            patterns,
            ep: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            conns: Vec::with_capacity(config.connections),
            busy: 0,
            scratch: vec![0; 256 * 1024],
            events: Vec::with_capacity(1024),
        })
    }

    /// Phase 1: open every connection, `in_flight` at a time, each with its
    /// first request echoed.
    fn connect_all(&mut self, addr: SocketAddr) -> io::Result<()> {
        while self.conns.len() < self.config.connections || self.busy > 0 {
            while self.busy < self.config.in_flight && self.conns.len() < self.config.connections {
                self.open(addr)?;
            }
            self.turn()?;
        }
        Ok(())
    }

    /// Phase 2: one more request on every connection at once.
    fn echo_all(&mut self) -> io::Result<()> {
        for i in 0..self.conns.len() {
            self.conns[i].phase = Phase::Sending(0);
            self.busy += 1;
            self.send(i)?;
        }
        while self.busy > 0 {
            self.turn()?;
        }
        Ok(())
    }

    fn open(&mut self, addr: SocketAddr) -> io::Result<()> {
        // A blocking connect: on loopback it returns once the handshake is
        // done, which never waits while the accept queue has room (the
        // in-flight bound sees to that).
        let stream = TcpStream::connect(addr)?;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let i = self.conns.len();
        epoll::add(
            &self.ep,
            &stream,
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN,
        )?;
        self.conns.push(Conn {
            stream,
            phase: Phase::Sending(0),
            wants_out: false,
        });
        self.busy += 1;
        self.send(i)
    }

    /// Write what the socket takes of connection `i`'s request.
    fn send(&mut self, i: usize) -> io::Result<()> {
        let request = self.patterns.of(i);
        let conn = &mut self.conns[i];
        let Phase::Sending(mut sent) = conn.phase else {
            return Ok(());
        };
        while sent < request.len() {
            match (&conn.stream).write(&request[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let done = sent == request.len();
        conn.phase = if done {
            Phase::Receiving(0)
        } else {
            Phase::Sending(sent)
        };
        if conn.wants_out == done {
            conn.wants_out = !done;
            let flags = if done {
                epoll::EventFlags::IN
            } else {
                epoll::EventFlags::IN | epoll::EventFlags::OUT
            };
            epoll::modify(
                &self.ep,
                &conn.stream,
                epoll::EventData::new_u64(i as u64),
                flags,
            )?;
        }
        Ok(())
    }

    /// Read what is there of connection `i`'s echo, checking every byte.
    fn receive(&mut self, i: usize) -> io::Result<()> {
        let request = self.patterns.of(i);
        let conn = &mut self.conns[i];
        loop {
            let n = match (&conn.stream).read(&mut self.scratch) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection {i}: the server closed it"),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let Phase::Receiving(got) = conn.phase else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("connection {i}: {n} bytes before its request was sent"),
                ));
            };
            let end = got + n;
            if end > request.len() || self.scratch[..n] != request[got..end] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("connection {i}: the echo differs from the request"),
                ));
            }
            if end == request.len() {
                conn.phase = Phase::Idle;
                self.busy -= 1;
                return Ok(());
            }
            conn.phase = Phase::Receiving(end);
        }
    }

    /// Wait for events (failing after `stall` without any) and serve them.
    fn turn(&mut self) -> io::Result<()> {
        self.events.clear();
        let timeout = rustix::time::Timespec::try_from(self.config.stall).ok();
        match epoll::wait(
            &self.ep,
            rustix::buffer::spare_capacity(&mut self.events),
            timeout.as_ref(),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if self.events.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no progress for {:?}: {} of {} connections open, {} waiting for their echo",
                    self.config.stall,
                    self.conns.len(),
                    self.config.connections,
                    self.busy
                ),
            ));
        }
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            let i = ev.data.u64() as usize;
            // A copy: `epoll::Event` is packed.
            let flags = ev.flags;
            if flags.contains(epoll::EventFlags::OUT) {
                self.send(i)?;
            }
            if flags
                .intersects(epoll::EventFlags::IN | epoll::EventFlags::HUP | epoll::EventFlags::ERR)
            {
                self.receive(i)?;
            }
        }
        self.events = events;
        Ok(())
    }
}

/// The median of `v` (sorted in place); 0 for none.
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// A figure of a sample: its column title, its `ratio` group, and how it
/// is read off a sample.
type Figure = (
    &'static str,
    &'static str,
    fn(&C10kSample, &C10kConfig) -> f64,
);

/// The figures of a sample, in table order.
const FIGURES: [Figure; 4] = [
    ("connect, wall ms", "c10k_connect_wall", |s, _| {
        ms(s.connect_wall)
    }),
    (
        "connect, server CPU µs/conn",
        "c10k_connect_cpu",
        |s, c| us(s.connect_cpu) / c.connections as f64,
    ),
    ("echo, wall ms", "c10k_echo_wall", |s, _| ms(s.echo_wall)),
    ("echo, server CPU µs/req", "c10k_echo_cpu", |s, c| {
        us(s.echo_cpu) / c.connections as f64
    }),
];

/// The markdown report: medians of each figure over the rounds, and the
/// median of each same-round ratio to the default loop's cell, with the
/// issue's bound (≤ 1.5× on connect time and server CPU) on the adapters;
/// then the ratios as `ratio<TAB>group<TAB>cell÷base<TAB>connections<TAB>value`
/// lines, which `summarize` reads.
pub fn report(config: &C10kConfig, results: &C10kResults) -> String {
    let mut s = String::new();
    let mut lines = String::new();
    let native = Cell {
        server: Server::Protocol,
        kind: LoopKind::Native,
    };
    let _ = writeln!(
        s,
        "{} connections × {} B echo, at most {} connecting at once; medians of {} interleaved rounds (ratios: median of same-round ratios to {native})\n",
        config.connections, config.size, config.in_flight, config.rounds
    );
    let _ = write!(s, "| cell |");
    for (name, ..) in FIGURES {
        let _ = write!(s, " {name} | × {native} |");
    }
    let _ = writeln!(s, " ≤ 1.5× {native} |");
    let _ = write!(s, "|---|");
    for _ in FIGURES {
        let _ = write!(s, "---|---|");
    }
    let _ = writeln!(s, "---|");
    let base = results.get(&native);
    for (cell, samples) in results {
        let _ = write!(s, "| {cell} |");
        let mut worst: f64 = 0.0;
        for (_, group, figure) in FIGURES {
            let mut values: Vec<f64> = samples.iter().map(|x| figure(x, config)).collect();
            let value = median(&mut values);
            let ratio = base.map(|b| {
                let mut r: Vec<f64> = samples
                    .iter()
                    .zip(b)
                    .map(|(x, y)| figure(x, config) / figure(y, config))
                    .collect();
                median(&mut r)
            });
            match ratio {
                Some(r) => {
                    // The bound is on connect time and server CPU; the
                    // echo phase's wall time is reported, not judged.
                    if group != "c10k_echo_wall" {
                        worst = worst.max(r);
                    }
                    let _ = write!(s, " {value:.1} | {r:.2} |");
                    if *cell == native {
                        continue;
                    }
                    let _ = writeln!(
                        lines,
                        "ratio\t{group}\t{cell}÷{native}\t{}\t{r:.4}",
                        config.connections
                    );
                }
                None => {
                    let _ = write!(s, " {value:.1} | — |");
                }
            }
        }
        let verdict = if *cell == native || cell.server != Server::Protocol || base.is_none() {
            "—"
        } else if worst <= 1.5 {
            "met"
        } else {
            "**missed**"
        };
        let _ = writeln!(s, " {verdict} |");
    }
    s.push('\n');
    s.push_str(&lines);
    s
}
