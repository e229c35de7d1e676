//! The echo matrix: every server × loop cell at every message size, in
//! interleaved rounds (round 1 runs every cell once, then round 2, …, so
//! drift in the machine's load hits every cell alike), and the target
//! ratios computed **within each round**, then their median over rounds.
//!
//! Servers run pinned to one core and the load generator to the other
//! (`taskset`); the server's CPU time is read over its control channel
//! right before and right after each measured load run, so warm-up and
//! process start-up are not counted.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::control::ServerProcess;
use super::load::ParsedReport;
use super::server::{LoopKind, Server};

/// One server configuration: what runs on which loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    /// The server kind.
    pub server: Server,
    /// The loop it runs on.
    pub kind: LoopKind,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.server {
            Server::Protocol => write!(f, "protocol/{}", self.kind),
            Server::Streams => write!(f, "streams/{}", self.kind),
            Server::Raw => write!(f, "raw/{}", self.kind),
        }
    }
}

impl std::str::FromStr for Cell {
    type Err = String;
    /// `protocol/native`, `streams/tokio`, `raw/glib`, …
    fn from_str(s: &str) -> Result<Cell, String> {
        let (server, kind) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected server/loop, e.g. protocol/native"))?;
        Ok(Cell {
            server: server.parse()?,
            kind: kind.parse()?,
        })
    }
}

impl Cell {
    /// The default matrix: protocols on every loop, streams on the
    /// default loop and tokio, and every host's raw echo.
    pub fn default_matrix() -> Vec<Cell> {
        let mut cells = Vec::new();
        for kind in LoopKind::ALL {
            cells.push(Cell {
                server: Server::Protocol,
                kind,
            });
        }
        for kind in [LoopKind::Native, LoopKind::Tokio] {
            cells.push(Cell {
                server: Server::Streams,
                kind,
            });
        }
        for kind in LoopKind::ALL {
            cells.push(Cell {
                server: Server::Raw,
                kind,
            });
        }
        cells
            .into_iter()
            .filter(|c| super::server::supported(c.server, c.kind))
            .collect()
    }
}

/// How the matrix runs.
#[derive(Debug, Clone)]
pub struct MatrixConfig {
    /// The cells to run.
    pub cells: Vec<Cell>,
    /// Message sizes in bytes.
    pub sizes: Vec<usize>,
    /// Connections per load run.
    pub connections: usize,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Measured time per cell, size and round.
    pub secs: f64,
    /// Warm-up before each cell's first measurement at a size; a quarter
    /// of it before every later one (the other cells ran in between).
    pub warmup: f64,
    /// Pin servers to CPU 0 and load generators to CPU 1 with `taskset`.
    pub pin: bool,
    /// Where `bench_echo_server` and `bench_echo_load` are.
    pub bin_dir: PathBuf,
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// What the load generator saw.
    pub load: ParsedReport,
    /// Server CPU time during the measured run.
    pub server_cpu: Duration,
}

impl Sample {
    /// Server CPU microseconds per request.
    pub fn cpu_us_per_req(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.load.requests.max(1) as f64
    }
}

/// Samples by (cell, size), one per round, in round order.
pub type Results = BTreeMap<(Cell, usize), Vec<Sample>>;

/// Run the matrix, printing progress to stderr.
///
/// # Errors
/// If a server does not start, a load run fails (a wrong reply included),
/// or the server's CPU time cannot be read.
pub fn run(config: &MatrixConfig) -> io::Result<Results> {
    let mut servers = Vec::new();
    for &cell in &config.cells {
        let mut cmd = pinned(config.pin, "0", &config.bin_dir.join("bench_echo_server"));
        cmd.args([
            "--server",
            &cell.server.to_string(),
            "--loop",
            &cell.kind.to_string(),
        ]);
        let server = ServerProcess::start(cmd)
            .map_err(|e| io::Error::new(e.kind(), format!("{cell}: {e}")))?;
        servers.push((cell, server));
    }
    let mut results = Results::new();
    for round in 0..config.rounds {
        for &size in &config.sizes {
            // Rotate the order each round, so no cell always follows the same one.
            let n = servers.len();
            for i in 0..n {
                let (cell, server) = &mut servers[(i + round) % n];
                let warmup = if round == 0 {
                    config.warmup
                } else {
                    config.warmup / 4.0
                };
                if warmup > 0.0 {
                    load(config, server.port(), size, warmup)
                        .map_err(|e| io::Error::new(e.kind(), format!("{cell} warm-up: {e}")))?;
                }
                let before = server.cpu()?;
                let report = load(config, server.port(), size, config.secs)
                    .map_err(|e| io::Error::new(e.kind(), format!("{cell}, {size} B: {e}")))?;
                let server_cpu = server.cpu()?.saturating_sub(before);
                let sample = Sample {
                    load: report,
                    server_cpu,
                };
                eprintln!(
                    "round {} {size:>6} B {cell:<20} {:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  server {:>6.2} µs/req",
                    round + 1,
                    report.req_per_sec,
                    report.p50.as_secs_f64() * 1e6,
                    report.p99.as_secs_f64() * 1e6,
                    sample.cpu_us_per_req(),
                );
                results.entry((*cell, size)).or_default().push(sample);
            }
        }
    }
    for (cell, server) in servers {
        server
            .quit()
            .map_err(|e| io::Error::new(e.kind(), format!("{cell}: {e}")))?;
    }
    Ok(results)
}

fn pinned(pin: bool, cpu: &str, program: &Path) -> Command {
    if pin {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", cpu]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn load(config: &MatrixConfig, port: u16, size: usize, secs: f64) -> io::Result<ParsedReport> {
    let out = pinned(config.pin, "1", &config.bin_dir.join("bench_echo_load"))
        .args(["--port", &port.to_string()])
        .args(["--connections", &config.connections.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--secs", &secs.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "bench_echo_load failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    ParsedReport::parse(text.trim())
        .ok_or_else(|| io::Error::other(format!("bench_echo_load printed {text:?}")))
}

/// A target ratio: `numerator` over `denominator`, per round.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// What is measured.
    pub numerator: Cell,
    /// What it is compared with.
    pub denominator: Cell,
    /// Compare req/s (`false`: server CPU per request).
    pub throughput: bool,
    /// The bound: ≥ for throughput, ≤ for CPU.
    pub bound: f64,
}

/// The performance plan's echo targets whose cells are in `cells`.
pub fn targets(cells: &[Cell]) -> Vec<Target> {
    let c = |server, kind| Cell { server, kind };
    let mut t = vec![
        Target {
            numerator: c(Server::Protocol, LoopKind::Native),
            denominator: c(Server::Raw, LoopKind::Tokio),
            throughput: true,
            bound: 1.0,
        },
        Target {
            numerator: c(Server::Protocol, LoopKind::Native),
            denominator: c(Server::Raw, LoopKind::Tokio),
            throughput: false,
            bound: 1.0,
        },
    ];
    for kind in [
        LoopKind::Tokio,
        LoopKind::AsyncStd,
        LoopKind::Glib,
        LoopKind::Calloop,
    ] {
        for throughput in [true, false] {
            t.push(Target {
                numerator: c(Server::Protocol, kind),
                denominator: c(Server::Raw, kind),
                throughput,
                // The plan sets only the req/s bound for adapters; CPU is reported.
                bound: if throughput { 0.95 } else { f64::NAN },
            });
        }
    }
    for kind in [LoopKind::Native, LoopKind::Tokio] {
        for throughput in [true, false] {
            t.push(Target {
                numerator: c(Server::Streams, kind),
                denominator: c(Server::Protocol, kind),
                throughput,
                bound: if throughput { 0.85 } else { f64::NAN },
            });
        }
    }
    t.retain(|t| cells.contains(&t.numerator) && cells.contains(&t.denominator));
    t
}

/// The ratio of `target` in each round at `size`.
pub fn ratios(results: &Results, target: &Target, size: usize) -> Vec<f64> {
    let (Some(num), Some(den)) = (
        results.get(&(target.numerator, size)),
        results.get(&(target.denominator, size)),
    ) else {
        return Vec::new();
    };
    num.iter()
        .zip(den)
        .map(|(n, d)| {
            if target.throughput {
                n.load.req_per_sec / d.load.req_per_sec
            } else {
                n.cpu_us_per_req() / d.cpu_us_per_req()
            }
        })
        .collect()
}

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Print the results as markdown tables, then the ratios as
/// `ratio<TAB>group<TAB>function<TAB>param<TAB>value` lines (the format
/// `summarize` reads, one median per ratio and size).
pub fn print(config: &MatrixConfig, results: &Results) {
    println!(
        "\n### Echo: medians over {} rounds of {} s, {} connections\n",
        config.rounds, config.secs, config.connections
    );
    println!("| size | cell | req/s | p50 µs | p99 µs | server CPU µs/req |");
    println!("|---|---|---|---|---|---|");
    for &size in &config.sizes {
        for &cell in &config.cells {
            let Some(s) = results.get(&(cell, size)) else {
                continue;
            };
            let pick = |f: &dyn Fn(&Sample) -> f64| median(&s.iter().map(f).collect::<Vec<_>>());
            println!(
                "| {} | {cell} | {:.0} | {:.1} | {:.1} | {:.2} |",
                size_label(size),
                pick(&|s| s.load.req_per_sec),
                pick(&|s| s.load.p50.as_secs_f64() * 1e6),
                pick(&|s| s.load.p99.as_secs_f64() * 1e6),
                pick(&|s| s.cpu_us_per_req()),
            );
        }
    }
    println!("\n### Echo: same-round ratios (median, min–max over rounds)\n");
    println!("| ratio | size | median | min–max | target | verdict |");
    println!("|---|---|---|---|---|---|");
    let targets = targets(&config.cells);
    let mut lines = Vec::new();
    for t in &targets {
        for &size in &config.sizes {
            let r = ratios(results, t, size);
            if r.is_empty() {
                continue;
            }
            let m = median(&r);
            let (lo, hi) = r
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            let what = if t.throughput { "req/s" } else { "CPU/req" };
            let (target, verdict) = if t.bound.is_nan() {
                ("—".to_owned(), "—")
            } else if t.throughput {
                (
                    format!("≥ {:.2}", t.bound),
                    if m >= t.bound { "met" } else { "**missed**" },
                )
            } else {
                (
                    format!("≤ {:.2}", t.bound),
                    if m <= t.bound { "met" } else { "**missed**" },
                )
            };
            println!(
                "| {what} {} ÷ {} | {} | {m:.2} | {lo:.2}–{hi:.2} | {target} | {verdict} |",
                t.numerator,
                t.denominator,
                size_label(size)
            );
            let group = if t.throughput {
                "echo_req_s"
            } else {
                "echo_cpu_per_req"
            };
            lines.push(format!(
                "ratio\t{group}\t{}÷{}\t{size}\t{m:.4}",
                t.numerator, t.denominator
            ));
        }
    }
    println!();
    for l in lines {
        println!("{l}");
    }
}

fn size_label(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}
