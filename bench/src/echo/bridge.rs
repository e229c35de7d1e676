//! The cost of the tokio bridge (`oneloop_tokio::enable`, issue 13): one
//! tokio `TcpStream` echo **client**, the same code on every row, run on a
//! plain tokio current-thread runtime (the reference) and inside oneloop
//! tasks on hosts that have no tokio of their own, through the bridge.
//!
//! | row | the client runs in |
//! |---|---|
//! | `tokio` | `LocalSet::block_on` on a current-thread runtime (`enable_all`): what a tokio user writes |
//! | `default+bridge` | a oneloop task on `Loop::new()` after `oneloop_tokio::enable` |
//! | `glib+bridge` | a oneloop task on `oneloop_glib::new_loop()` after `oneloop_tokio::enable` |
//! | `calloop+bridge` | a oneloop task on `oneloop_calloop::new_loop()` after `oneloop_tokio::enable` (not in the default rows) |
//!
//! The client opens `connections` tokio `TcpStream`s, one
//! `tokio::task::spawn_local` task each (also for one connection, so every
//! row runs the same code), each sending `size` bytes and reading the whole
//! echo back before the next request (strict request/response, every reply
//! compared with its request, two alternating patterns per connection as in
//! [`super::load`]).
//!
//! The server is the same separate process for every row (the raw tokio
//! echo of [`super::server`], pinned to CPU 0); the client process pins
//! itself to CPU 1, so the bridge's helper thread (the runtime's reactor,
//! `oneloop-tokio-bridge`) shares the client's core, and the client's
//! **process** CPU time ([`crate::cpu::process_cpu_time`]: every thread,
//! user + system, helper thread included) is the figure compared.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cpu::process_cpu_time;

/// Where the client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// A tokio current-thread runtime and a `LocalSet`: the reference row.
    Tokio,
    /// oneloop's default loop with the tokio bridge.
    Default,
    /// oneloop on glib with the tokio bridge.
    Glib,
    /// oneloop on calloop with the tokio bridge.
    Calloop,
}

impl Host {
    /// Every row, in table order.
    pub const ALL: [Host; 4] = [Host::Tokio, Host::Default, Host::Glib, Host::Calloop];

    /// The rows the issue asks for: the tokio reference, the default loop and glib.
    pub fn default_rows() -> Vec<Host> {
        [Host::Tokio, Host::Default, Host::Glib]
            .into_iter()
            .filter(|h| h.supported())
            .collect()
    }

    /// Whether this build has the row (the bridge needs the `tokio`
    /// feature, glib and calloop their own).
    pub fn supported(self) -> bool {
        match self {
            Host::Tokio => true,
            Host::Default => cfg!(feature = "tokio"),
            Host::Glib => cfg!(all(feature = "tokio", feature = "glib")),
            Host::Calloop => cfg!(all(feature = "tokio", feature = "calloop")),
        }
    }
}

impl FromStr for Host {
    type Err = String;
    fn from_str(s: &str) -> Result<Host, String> {
        match s {
            "tokio" => Ok(Host::Tokio),
            "default" | "native" | "default+bridge" => Ok(Host::Default),
            "glib" | "glib+bridge" => Ok(Host::Glib),
            "calloop" | "calloop+bridge" => Ok(Host::Calloop),
            _ => Err(format!(
                "unknown host `{s}` (tokio, default, glib, calloop)"
            )),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Host::Tokio => "tokio",
            Host::Default => "default+bridge",
            Host::Glib => "glib+bridge",
            Host::Calloop => "calloop+bridge",
        })
    }
}

/// When a connection stops sending.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// At this instant (each connection completes at least one request).
    Deadline(Instant),
    /// After this many requests per connection: a fixed amount of work, for
    /// instruction counts (callgrind) and the smoke test.
    Requests(u64),
}

/// What one client run measured.
#[derive(Debug, Clone, Default)]
pub struct ClientReport {
    /// Requests completed, over all connections.
    pub requests: u64,
    /// Wall time of the run (connecting included).
    pub elapsed: Duration,
    /// Process CPU time of the client during the run, every thread.
    pub cpu: Duration,
    /// Median request latency.
    pub p50: Duration,
}

impl ClientReport {
    /// Requests per second.
    pub fn req_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Client CPU microseconds per request.
    pub fn cpu_us_per_req(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

/// A client host, built once and used for several runs (warm-up, then the
/// measured run) so that building the loop, the runtime and the bridge's
/// thread is not measured.
#[derive(Debug)]
pub struct Client {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Tokio {
        rt: tokio::runtime::Runtime,
        local: tokio::task::LocalSet,
    },
    #[cfg(feature = "tokio")]
    Bridged(oneloop::Loop),
}

impl Client {
    /// Build `host` (for a bridge row: the loop, then `oneloop_tokio::enable`).
    ///
    /// # Errors
    /// If the runtime or the loop cannot be built, or the row is not in this build.
    pub fn new(host: Host) -> io::Result<Client> {
        let inner = match host {
            Host::Tokio => Inner::Tokio {
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
                local: tokio::task::LocalSet::new(),
            },
            #[cfg(feature = "tokio")]
            Host::Default | Host::Glib | Host::Calloop => {
                let lp = bridged_loop(host).map_err(io::Error::other)?;
                oneloop_tokio::enable(&lp).map_err(io::Error::other)?;
                Inner::Bridged(lp)
            }
            #[allow(unreachable_patterns)]
            _ => {
                return Err(io::Error::other(format!(
                    "the `{host}` row is not in this build"
                )));
            }
        };
        Ok(Client { inner })
    }

    /// Run the echo client against `addr`: `connections` connections of
    /// `size`-byte requests until `until`. The CPU time is read on the
    /// client's thread right before the connections start and right after
    /// the last one ends.
    ///
    /// # Errors
    /// If a connection fails, is closed early, or a reply differs from its
    /// request.
    pub fn run(
        &self,
        addr: SocketAddr,
        connections: usize,
        size: usize,
        until: Until,
    ) -> io::Result<ClientReport> {
        let work = clients(addr, connections, size, until);
        match &self.inner {
            Inner::Tokio { rt, local } => local.block_on(rt, work),
            #[cfg(feature = "tokio")]
            Inner::Bridged(lp) => {
                let task = lp.spawn(work).map_err(io::Error::other)?;
                lp.run_until_complete(task)
                    .map_err(io::Error::other)?
                    .map_err(io::Error::other)?
            }
        }
    }

    /// Close the loop (stopping the bridge's runtime and joining its
    /// thread) or shut the runtime down.
    ///
    /// # Errors
    /// If the loop fails to close.
    pub fn close(self) -> io::Result<()> {
        match self.inner {
            Inner::Tokio { rt, local } => {
                drop(local);
                drop(rt);
                Ok(())
            }
            #[cfg(feature = "tokio")]
            Inner::Bridged(lp) => lp.close().map_err(io::Error::other),
        }
    }
}

#[cfg(feature = "tokio")]
fn bridged_loop(host: Host) -> oneloop::Result<oneloop::Loop> {
    match host {
        Host::Default => oneloop::Loop::new(),
        #[cfg(feature = "glib")]
        Host::Glib => oneloop_glib::new_loop(),
        #[cfg(feature = "calloop")]
        Host::Calloop => oneloop_calloop::new_loop(),
        _ => Err(oneloop::Error::new(
            oneloop::ErrorKind::Unsupported,
            format!("the `{host}` row is not in this build"),
        )),
    }
}

/// The client: one `spawn_local` task per connection, awaited in order.
/// Must run inside a `LocalSet` (the tokio row) or a bridged loop.
async fn clients(
    addr: SocketAddr,
    connections: usize,
    size: usize,
    until: Until,
) -> io::Result<ClientReport> {
    let start = Instant::now();
    let cpu_before = process_cpu_time();
    let tasks: Vec<_> = (0..connections)
        .map(|i| tokio::task::spawn_local(connection(addr, i, size, until)))
        .collect();
    let mut latencies = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await.map_err(io::Error::other)? {
            Ok(l) => latencies.extend(l),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let elapsed = start.elapsed();
    if let Some(e) = first_error {
        return Err(e);
    }
    latencies.sort_unstable();
    let p50 = latencies
        .get(latencies.len().saturating_sub(1) / 2)
        .map_or(Duration::ZERO, |&ns| Duration::from_nanos(ns));
    Ok(ClientReport {
        requests: latencies.len() as u64,
        elapsed,
        cpu,
        p50,
    })
}

/// One connection's request/response loop: the latencies of its requests.
async fn connection(
    addr: SocketAddr,
    index: usize,
    size: usize,
    until: Until,
) -> io::Result<Vec<u64>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let patterns: [Vec<u8>; 2] = std::array::from_fn(|k| {
        let seed = index * 2 + k + 1;
        (0..size)
            .map(|j| (seed * 97 + j * 31 + (j >> 8) * 7) as u8)
            .collect()
    });
    let mut reply = vec![0u8; size];
    let mut latencies = Vec::with_capacity(match until {
        Until::Requests(n) => n as usize,
        Until::Deadline(_) => 1 << 16,
    });
    let mut n: u64 = 0;
    loop {
        let now = Instant::now();
        let done = match until {
            Until::Deadline(end) => now >= end && n > 0,
            Until::Requests(limit) => n >= limit,
        };
        if done {
            break;
        }
        let request = &patterns[(n & 1) as usize];
        stream.write_all(request).await?;
        stream.read_exact(&mut reply).await.map_err(|e| {
            io::Error::new(e.kind(), format!("connection {index}, request {n}: {e}"))
        })?;
        latencies.push(now.elapsed().as_nanos() as u64);
        if reply != *request {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("connection {index}, request {n}: the reply differs from the request"),
            ));
        }
        n += 1;
    }
    stream.shutdown().await?;
    let mut rest = [0u8; 64];
    if stream.read(&mut rest).await? != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("connection {index}: bytes after the last reply"),
        ));
    }
    Ok(latencies)
}

/// Pin the calling thread, and every thread it starts later (the bridge's
/// helper threads among them), to `cpu`.
///
/// # Errors
/// If the kernel refuses the affinity (no such CPU).
pub fn pin_to(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

/// One workload: message size and concurrent connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    /// Connections, one `spawn_local` task each.
    pub connections: usize,
    /// Bytes per request.
    pub size: usize,
}

impl fmt::Display for Workload {
    /// `c16/1024`: the parameter of the `ratio` lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}/{}", self.connections, self.size)
    }
}

/// One row's measurement in one round.
#[derive(Debug, Clone)]
pub struct Sample {
    /// What the client measured.
    pub client: ClientReport,
    /// The server's CPU time during the same run (the same server for
    /// every row: a check that the rows did the same work on its side).
    pub server_cpu: Duration,
}

impl Sample {
    /// Server CPU microseconds per request.
    pub fn server_us_per_req(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.client.requests.max(1) as f64
    }
}

/// How the bridge benchmark runs.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The rows; the first `tokio` row is the reference of the ratios.
    pub hosts: Vec<Host>,
    /// The workloads.
    pub workloads: Vec<Workload>,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Measured time per row, workload and round (ignored with `requests`).
    pub secs: f64,
    /// Warm-up on the same client before each measured run (ignored with `requests`).
    pub warmup: f64,
    /// A fixed number of requests per connection instead of a time, no warm-up.
    pub requests: Option<u64>,
}

/// Samples by (workload, host), one per round, in round order.
pub type Results = std::collections::BTreeMap<(Workload, Host), Vec<Sample>>;

/// Run every row on every workload in interleaved rounds (the row order
/// rotates each round) against `server`, printing progress to stderr. Each
/// sample builds its client afresh, warms it up, then measures.
///
/// # Errors
/// If a client cannot be built, a run fails (a wrong reply included), or
/// the server's CPU time cannot be read.
pub fn run(
    config: &BridgeConfig,
    server: &mut super::control::ServerProcess,
) -> io::Result<Results> {
    let addr: SocketAddr = ([127, 0, 0, 1], server.port()).into();
    let mut results = Results::new();
    let n = config.hosts.len();
    for round in 0..config.rounds {
        for &w in &config.workloads {
            for i in 0..n {
                let host = config.hosts[(i + round) % n];
                let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{host}, {w}: {e}"));
                let client = Client::new(host).map_err(ctx)?;
                let until = match config.requests {
                    Some(r) => Until::Requests(r),
                    None => {
                        if config.warmup > 0.0 {
                            let end = Instant::now() + Duration::from_secs_f64(config.warmup);
                            client
                                .run(addr, w.connections, w.size, Until::Deadline(end))
                                .map_err(ctx)?;
                        }
                        Until::Deadline(Instant::now() + Duration::from_secs_f64(config.secs))
                    }
                };
                let before = server.cpu()?;
                let report = client
                    .run(addr, w.connections, w.size, until)
                    .map_err(ctx)?;
                let server_cpu = server.cpu()?.saturating_sub(before);
                client.close().map_err(ctx)?;
                let sample = Sample {
                    client: report,
                    server_cpu,
                };
                eprintln!(
                    "round {} {w:<10} {host:<15} {:>8.0} req/s  p50 {:>6.1} µs  client {:>6.2} µs/req  server {:>5.2} µs/req",
                    round + 1,
                    sample.client.req_per_sec(),
                    sample.client.p50.as_secs_f64() * 1e6,
                    sample.client.cpu_us_per_req(),
                    sample.server_us_per_req(),
                );
                results.entry((w, host)).or_default().push(sample);
            }
        }
    }
    Ok(results)
}

/// The per-round ratio of `host` to the tokio row on `w`: client CPU per
/// request (`cpu`) or req/s.
pub fn ratios(results: &Results, w: Workload, host: Host, cpu: bool) -> Vec<f64> {
    let (Some(num), Some(den)) = (results.get(&(w, host)), results.get(&(w, Host::Tokio))) else {
        return Vec::new();
    };
    num.iter()
        .zip(den)
        .map(|(n, d)| {
            if cpu {
                n.client.cpu_us_per_req() / d.client.cpu_us_per_req()
            } else {
                n.client.req_per_sec() / d.client.req_per_sec()
            }
        })
        .collect()
}

/// The target: a bridged client costs at most this many times the
/// CPU per request of the same client on tokio.
pub const CPU_TARGET: f64 = 1.25;

/// Print the medians as markdown tables, then the ratios to the tokio row
/// as `ratio<TAB>group<TAB>function<TAB>param<TAB>value` lines (what
/// `summarize` reads; param is the workload, `c16/1024`).
pub fn print(config: &BridgeConfig, results: &Results) {
    use super::matrix::median;
    let what = match config.requests {
        Some(r) => format!("{r} requests per connection"),
        None => format!("{} s", config.secs),
    };
    println!(
        "\n### Bridge echo client: medians over {} rounds of {what}\n",
        config.rounds
    );
    println!("| workload | row | req/s | p50 µs | client CPU µs/req | server CPU µs/req |");
    println!("|---|---|---|---|---|---|");
    for &w in &config.workloads {
        for &host in &config.hosts {
            let Some(s) = results.get(&(w, host)) else {
                continue;
            };
            let pick = |f: &dyn Fn(&Sample) -> f64| median(&s.iter().map(f).collect::<Vec<_>>());
            println!(
                "| {} | {host} | {:.0} | {:.1} | {:.2} | {:.2} |",
                label(w),
                pick(&|s| s.client.req_per_sec()),
                pick(&|s| s.client.p50.as_secs_f64() * 1e6),
                pick(&|s| s.client.cpu_us_per_req()),
                pick(&|s| s.server_us_per_req()),
            );
        }
    }
    println!(
        "\n### Bridge echo client: same-round ratios to the tokio row (median, min–max over rounds)\n"
    );
    println!("| ratio | workload | median | min–max | target | verdict |");
    println!("|---|---|---|---|---|---|");
    let mut lines = Vec::new();
    for cpu in [true, false] {
        for &host in config.hosts.iter().filter(|h| **h != Host::Tokio) {
            for &w in &config.workloads {
                let r = ratios(results, w, host, cpu);
                if r.is_empty() {
                    continue;
                }
                let m = median(&r);
                let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let (target, verdict) = if cpu {
                    (
                        format!("≤ {CPU_TARGET:.2}"),
                        if m <= CPU_TARGET { "met" } else { "**missed**" },
                    )
                } else {
                    ("—".to_owned(), "—")
                };
                let name = if cpu { "client CPU/req" } else { "req/s" };
                println!(
                    "| {name} {host} ÷ tokio | {} | {m:.2} | {lo:.2}–{hi:.2} | {target} | {verdict} |",
                    label(w)
                );
                let group = if cpu {
                    "bridge_echo_cpu_per_req"
                } else {
                    "bridge_echo_req_s"
                };
                lines.push(format!("ratio\t{group}\t{host}÷tokio\t{w}\t{m:.4}"));
            }
        }
    }
    println!();
    for l in lines {
        println!("{l}");
    }
}

fn label(w: Workload) -> String {
    let size = if w.size.is_multiple_of(1024) {
        format!("{} KiB", w.size / 1024)
    } else {
        format!("{} B", w.size)
    };
    let conns = if w.connections == 1 {
        "1 connection".to_owned()
    } else {
        format!("{} connections", w.connections)
    };
    format!("{size}, {conns}")
}
