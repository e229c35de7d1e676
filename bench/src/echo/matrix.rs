//! The echo matrix: every server × loop cell at every message size, in
//! interleaved rounds (round 1 runs every cell once, then round 2, …, so
//! drift in the machine's load hits every cell alike), and the target
//! ratios computed **within each round**, then their median over rounds.
//!
//! Servers run pinned to one core and the load generator to the other
//! (`taskset`); the server's CPU time is read over its control channel
//! right before and right after each measured load run, so warm-up and
//! process start-up are not counted. The user-space instructions per
//! request come from a separate pass under callgrind
//! ([`instructions`](super::instructions)), which this machine's noise
//! cannot blur.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::control::ServerProcess;
use super::instructions::Counts;
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
        let server = match self.server {
            Server::Protocol => "protocol",
            Server::Streams => "streams",
            Server::Callbacks => "callbacks",
            Server::Raw => "raw",
            Server::Floor => "floor",
        };
        write!(f, "{server}/{}", self.kind)
    }
}

impl std::str::FromStr for Cell {
    type Err = String;
    /// `protocol/native`, `streams/tokio`, `raw/glib`, `floor/native`,
    /// `protocol/uvloop`, …
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
    const fn new(server: Server, kind: LoopKind) -> Cell {
        Cell { server, kind }
    }

    /// The bare-epoll floor.
    pub const FLOOR: Cell = Cell::new(Server::Floor, LoopKind::Native);

    /// The default matrix: the floor, protocols and streams on every loop,
    /// every host's raw echo, and (with `python`) uvloop's and CPython's
    /// asyncio protocol echo.
    pub fn default_matrix(python: bool) -> Vec<Cell> {
        let mut cells = vec![Cell::FLOOR];
        for server in [Server::Protocol, Server::Streams, Server::Raw] {
            for kind in LoopKind::ALL {
                cells.push(Cell::new(server, kind));
            }
        }
        cells.retain(|c| super::server::supported(c.server, c.kind));
        if python {
            for kind in LoopKind::PYTHON {
                cells.push(Cell::new(Server::Protocol, kind));
            }
        }
        cells
    }

    /// Whether the Python script serves this cell (else `bench_echo_server`).
    pub fn is_python(&self) -> bool {
        self.kind.is_python()
    }

    /// The command that starts this cell's server (not yet pinned or
    /// wrapped in valgrind): `[program, args…]`.
    ///
    /// # Errors
    /// A Python cell without a Python interpreter.
    pub fn command(&self, config: &MatrixConfig) -> io::Result<Vec<String>> {
        if self.is_python() {
            let python = config.python.as_ref().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{self}: needs `--python` (a venv with uvloop: `make bench-echo`)"),
                )
            })?;
            let server = match self.server {
                Server::Streams => "streams",
                _ => "protocol",
            };
            return Ok(vec![
                python.display().to_string(),
                config.python_script.display().to_string(),
                "--loop".into(),
                self.kind.to_string(),
                "--server".into(),
                server.into(),
            ]);
        }
        Ok(vec![
            config
                .bin_dir
                .join("bench_echo_server")
                .display()
                .to_string(),
            "--server".into(),
            self.server.to_string(),
            "--loop".into(),
            self.kind.to_string(),
        ])
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
    /// Interleaved rounds (0: no timed runs, instruction counts only).
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
    /// The Python interpreter of the Python cells (a venv with uvloop).
    pub python: Option<PathBuf>,
    /// `bench/python/echo_server.py`.
    pub python_script: PathBuf,
}

impl MatrixConfig {
    /// The Python echo server of this checkout.
    pub fn default_python_script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("python/echo_server.py")
    }
}

/// One timed measurement.
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

/// Timed samples by (cell, size), one per round, in round order.
pub type Results = BTreeMap<(Cell, usize), Vec<Sample>>;

/// Run the timed rounds, printing progress to stderr.
///
/// # Errors
/// If a server does not start, a load run fails (a wrong reply included),
/// or the server's CPU time cannot be read.
pub fn run(config: &MatrixConfig) -> io::Result<Results> {
    let mut results = Results::new();
    if config.rounds == 0 {
        return Ok(results);
    }
    let mut servers = Vec::new();
    for &cell in &config.cells {
        let cmd = pinned(config.pin, "0", &cell.command(config)?);
        let server = ServerProcess::start(cmd)
            .map_err(|e| io::Error::new(e.kind(), format!("{cell}: {e}")))?;
        servers.push((cell, server));
    }
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
                    load(config, server.port(), size, Amount::Secs(warmup))
                        .map_err(|e| io::Error::new(e.kind(), format!("{cell} warm-up: {e}")))?;
                }
                let before = server.cpu()?;
                let report = load(config, server.port(), size, Amount::Secs(config.secs))
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

/// `argv`, under `taskset -c cpu` when pinning.
pub(crate) fn pinned(pin: bool, cpu: &str, argv: &[String]) -> Command {
    let mut cmd = if pin {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", cpu]).arg(&argv[0]);
        cmd
    } else {
        Command::new(&argv[0])
    };
    cmd.args(&argv[1..]);
    cmd
}

/// How much load one `bench_echo_load` run makes.
#[derive(Debug, Clone, Copy)]
enum Amount {
    /// For this long.
    Secs(f64),
}

/// One `bench_echo_load` run against `port`.
fn load(config: &MatrixConfig, port: u16, size: usize, amount: Amount) -> io::Result<ParsedReport> {
    let (connections, amount) = match amount {
        Amount::Secs(s) => (config.connections, ["--secs".to_owned(), s.to_string()]),
    };
    let argv = [
        config.bin_dir.join("bench_echo_load").display().to_string(),
        "--port".into(),
        port.to_string(),
        "--connections".into(),
        connections.to_string(),
        "--size".into(),
        size.to_string(),
    ];
    let out = pinned(config.pin, "1", &argv).args(amount).output()?;
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

/// What a target compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Requests per second (higher is better).
    ReqPerSec,
    /// Server CPU per request (lower is better).
    CpuPerReq,
    /// User-space instructions per request, from callgrind (lower is better).
    Instructions,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::ReqPerSec => "req/s",
            Metric::CpuPerReq => "CPU/req",
            Metric::Instructions => "instr/req",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Metric::ReqPerSec => "echo_req_s",
            Metric::CpuPerReq => "echo_cpu_per_req",
            Metric::Instructions => "echo_instructions",
        }
    }
}

/// A target: `numerator` over `denominator` (or, without one, the
/// numerator's own value) against a bound.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// What is measured.
    pub numerator: Cell,
    /// What it is compared with; `None`: an absolute bound on the numerator.
    pub denominator: Option<Cell>,
    /// The figure compared.
    pub metric: Metric,
    /// The bound: ≥ for req/s, ≤ otherwise; NaN: reported, no bound.
    pub bound: f64,
    /// Where the bound comes from: `plan` (PERFORMANCE.md) or `issue 17`.
    pub source: &'static str,
}

/// The echo targets of the performance plan and of issue 17 whose cells
/// are in `cells`.
pub fn targets(cells: &[Cell]) -> Vec<Target> {
    let c = Cell::new;
    let native = c(Server::Protocol, LoopKind::Native);
    let adapters = [
        LoopKind::Tokio,
        LoopKind::Smol,
        LoopKind::Glib,
        LoopKind::Calloop,
    ];
    let t = |numerator, denominator, metric, bound, source| Target {
        numerator,
        denominator,
        metric,
        bound,
        source,
    };
    let mut v = vec![
        // Issue 17, goal 2: CPU per request on the floor's heels…
        t(
            native,
            Some(Cell::FLOOR),
            Metric::CpuPerReq,
            1.05,
            "issue 17",
        ),
    ];
    for kind in adapters {
        v.push(t(
            c(Server::Protocol, kind),
            Some(Cell::FLOOR),
            Metric::CpuPerReq,
            1.15,
            "issue 17",
        ));
    }
    // … and user-space instructions: ≤ 400 per request, ≤ 0.1× uvloop.
    v.push(t(native, None, Metric::Instructions, 400.0, "issue 17"));
    v.push(t(
        native,
        Some(c(Server::Protocol, LoopKind::Uvloop)),
        Metric::Instructions,
        0.1,
        "issue 17",
    ));
    v.push(t(
        native,
        Some(Cell::FLOOR),
        Metric::Instructions,
        f64::NAN,
        "issue 17",
    ));
    for kind in LoopKind::ALL {
        v.push(t(
            c(Server::Streams, kind),
            Some(c(Server::Protocol, kind)),
            Metric::Instructions,
            1.2,
            "issue 17",
        ));
    }
    for kind in adapters {
        v.push(t(
            c(Server::Protocol, kind),
            Some(c(Server::Raw, kind)),
            Metric::Instructions,
            1.0,
            "issue 17",
        ));
    }
    // The performance plan's timed targets.
    let raw_tokio = c(Server::Raw, LoopKind::Tokio);
    v.push(t(native, Some(raw_tokio), Metric::ReqPerSec, 1.0, "plan"));
    v.push(t(native, Some(raw_tokio), Metric::CpuPerReq, 1.0, "plan"));
    for kind in adapters {
        v.push(t(
            c(Server::Protocol, kind),
            Some(c(Server::Raw, kind)),
            Metric::ReqPerSec,
            0.95,
            "plan",
        ));
        v.push(t(
            c(Server::Protocol, kind),
            Some(c(Server::Raw, kind)),
            Metric::CpuPerReq,
            f64::NAN,
            "plan",
        ));
    }
    for kind in LoopKind::ALL {
        v.push(t(
            c(Server::Streams, kind),
            Some(c(Server::Protocol, kind)),
            Metric::ReqPerSec,
            0.85,
            "plan",
        ));
    }
    v.retain(|t| cells.contains(&t.numerator) && t.denominator.is_none_or(|d| cells.contains(&d)));
    v
}

/// The values of `target` at `size`: one per round for timed metrics (the
/// ratio within each round), one for instructions (deterministic).
pub fn values(results: &Results, counts: &Counts, target: &Target, size: usize) -> Vec<f64> {
    if target.metric == Metric::Instructions {
        let Some(n) = counts.get(&(target.numerator, size)) else {
            return Vec::new();
        };
        return match target.denominator {
            None => vec![*n],
            Some(d) => counts
                .get(&(d, size))
                .map(|d| vec![n / d])
                .unwrap_or_default(),
        };
    }
    let Some(num) = results.get(&(target.numerator, size)) else {
        return Vec::new();
    };
    let pick = |s: &Sample| match target.metric {
        Metric::ReqPerSec => s.load.req_per_sec,
        _ => s.cpu_us_per_req(),
    };
    match target.denominator {
        None => num.iter().map(pick).collect(),
        Some(d) => {
            let Some(den) = results.get(&(d, size)) else {
                return Vec::new();
            };
            num.iter()
                .zip(den)
                .map(|(n, d)| pick(n) / pick(d))
                .collect()
        }
    }
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

/// The results as markdown tables, then the ratios as
/// `ratio<TAB>group<TAB>function<TAB>param<TAB>value` lines (the format
/// `summarize` reads, one median per ratio and size).
pub fn report(config: &MatrixConfig, results: &Results, counts: &Counts) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let w = &mut out;
    if !results.is_empty() {
        let _ = writeln!(
            w,
            "\n### Echo: medians over {} interleaved rounds of {} s, {} connections\n",
            config.rounds, config.secs, config.connections
        );
        let _ = writeln!(
            w,
            "| size | cell | req/s | p50 µs | p99 µs | server CPU µs/req | × floor |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for &size in &config.sizes {
            for &cell in &config.cells {
                let Some(s) = results.get(&(cell, size)) else {
                    continue;
                };
                let pick =
                    |f: &dyn Fn(&Sample) -> f64| median(&s.iter().map(f).collect::<Vec<_>>());
                let floor = results.get(&(Cell::FLOOR, size)).map(|f| {
                    median(
                        &s.iter()
                            .zip(f)
                            .map(|(a, b)| a.cpu_us_per_req() / b.cpu_us_per_req())
                            .collect::<Vec<_>>(),
                    )
                });
                let _ = writeln!(
                    w,
                    "| {} | {cell} | {:.0} | {:.1} | {:.1} | {:.2} | {} |",
                    size_label(size),
                    pick(&|s| s.load.req_per_sec),
                    pick(&|s| s.load.p50.as_secs_f64() * 1e6),
                    pick(&|s| s.load.p99.as_secs_f64() * 1e6),
                    pick(&|s| s.cpu_us_per_req()),
                    floor.map_or("—".into(), |f| format!("{f:.2}")),
                );
            }
        }
    }
    if !counts.is_empty() {
        let _ = writeln!(
            w,
            "\n### Echo: user-space instructions per request (callgrind, one connection)\n"
        );
        let mut head = "| cell |".to_owned();
        let mut rule = "|---|".to_owned();
        for &size in &config.sizes {
            let _ = write!(head, " {} | × floor |", size_label(size));
            rule.push_str("---|---|");
        }
        let _ = writeln!(w, "{head}\n{rule}");
        for &cell in &config.cells {
            if !config
                .sizes
                .iter()
                .any(|&s| counts.contains_key(&(cell, s)))
            {
                continue;
            }
            let mut row = format!("| {cell} |");
            for &size in &config.sizes {
                let n = counts.get(&(cell, size));
                let f = counts.get(&(Cell::FLOOR, size));
                let _ = write!(
                    row,
                    " {} | {} |",
                    n.map_or("—".into(), |n| format!("{n:.0}")),
                    match (n, f) {
                        (Some(n), Some(f)) => format!("{:.1}", n / f),
                        _ => "—".into(),
                    }
                );
            }
            let _ = writeln!(w, "{row}");
        }
    }
    let _ = writeln!(
        w,
        "\n### Echo: targets (timed: median and min–max of same-round ratios; instructions: exact)\n"
    );
    let _ = writeln!(
        w,
        "| figure | size | value | min–max | target | verdict | from |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let mut lines = Vec::new();
    for t in &targets(&config.cells) {
        for &size in &config.sizes {
            let r = values(results, counts, t, size);
            if r.is_empty() {
                continue;
            }
            let m = median(&r);
            let (lo, hi) = r
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            let higher_is_better = t.metric == Metric::ReqPerSec;
            let (target, verdict) = if t.bound.is_nan() {
                ("—".to_owned(), "—")
            } else if higher_is_better {
                (
                    format!("≥ {}", t.bound),
                    if m >= t.bound { "met" } else { "**missed**" },
                )
            } else {
                (
                    format!("≤ {}", t.bound),
                    if m <= t.bound { "met" } else { "**missed**" },
                )
            };
            let what = match t.denominator {
                Some(d) => format!("{} {} ÷ {d}", t.metric.label(), t.numerator),
                None => format!("{} {}", t.metric.label(), t.numerator),
            };
            let digits = if t.denominator.is_none() { 0 } else { 2 };
            let spread = if r.len() > 1 {
                format!("{lo:.digits$}–{hi:.digits$}")
            } else {
                "(exact)".to_owned()
            };
            let _ = writeln!(
                w,
                "| {what} | {} | {m:.digits$} | {spread} | {target} | {verdict} | {} |",
                size_label(size),
                t.source
            );
            let function = match t.denominator {
                Some(d) => format!("{}÷{d}", t.numerator),
                None => t.numerator.to_string(),
            };
            lines.push(format!(
                "ratio\t{}\t{function}\t{size}\t{m:.4}",
                t.metric.group()
            ));
        }
    }
    let _ = writeln!(w);
    for l in lines {
        let _ = writeln!(w, "{l}");
    }
    out
}

/// Everything measured, as JSON (what `bench/python/plot.py` draws).
pub fn to_json(config: &MatrixConfig, results: &Results, counts: &Counts) -> serde_json::Value {
    let mut cells = Vec::new();
    for &cell in &config.cells {
        let mut sizes = serde_json::Map::new();
        for &size in &config.sizes {
            let timed = results.get(&(cell, size));
            let pick = |f: &dyn Fn(&Sample) -> f64| {
                timed.map(|s| median(&s.iter().map(f).collect::<Vec<_>>()))
            };
            sizes.insert(
                size.to_string(),
                serde_json::json!({
                    "instructions_per_req": counts.get(&(cell, size)),
                    "cpu_us_per_req": pick(&|s| s.cpu_us_per_req()),
                    "req_per_sec": pick(&|s| s.load.req_per_sec),
                    "p50_us": pick(&|s| s.load.p50.as_secs_f64() * 1e6),
                    "p99_us": pick(&|s| s.load.p99.as_secs_f64() * 1e6),
                    "cpu_us_per_req_rounds": timed.map(|s| s.iter().map(Sample::cpu_us_per_req).collect::<Vec<_>>()),
                }),
            );
        }
        cells.push(serde_json::json!({ "cell": cell.to_string(), "sizes": sizes }));
    }
    serde_json::json!({
        "rounds": config.rounds,
        "secs": config.secs,
        "connections": config.connections,
        "sizes": config.sizes,
        "cells": cells,
    })
}

/// `1 KiB`, `100 KiB`, `7 B`.
pub fn size_label(size: usize) -> String {
    if size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}
