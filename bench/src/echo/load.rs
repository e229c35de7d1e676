//! The load generator: `connections` blocking TCP connections, each sending
//! one message of `size` bytes and reading the whole echo back before the
//! next (strict request/response), for a fixed time. Every reply is
//! compared with what was sent: a wrong or missing byte fails the run.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// What one load run does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The echo server.
    pub addr: SocketAddr,
    /// Concurrent connections, one client thread each.
    pub connections: usize,
    /// Bytes per request (and per reply).
    pub size: usize,
    /// How long to send requests; requests in flight at the end complete.
    pub duration: Duration,
    /// Instead of a duration: this many requests in all, spread evenly over
    /// the connections (the instruction counts need a known number).
    pub requests: Option<u64>,
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Requests completed (reply read in full and checked).
    pub requests: u64,
    /// Wall time from the first connection to the last reply.
    pub elapsed: Duration,
    /// Request latencies, sorted, in nanoseconds.
    latencies: Vec<u64>,
}

impl LoadReport {
    /// Requests per second.
    pub fn req_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of the request latency (`0.5` = median).
    pub fn latency(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        Duration::from_nanos(self.latencies[i])
    }

    /// The report as one line, `key value` pairs, which `parse` reads back.
    pub fn to_line(&self) -> String {
        format!(
            "requests {} elapsed_ns {} p50_ns {} p99_ns {}",
            self.requests,
            self.elapsed.as_nanos(),
            self.latency(0.5).as_nanos(),
            self.latency(0.99).as_nanos(),
        )
    }
}

/// A report read back from [`LoadReport::to_line`].
#[derive(Debug, Clone, Copy)]
pub struct ParsedReport {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub req_per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl ParsedReport {
    /// Parse a line written by [`LoadReport::to_line`].
    pub fn parse(line: &str) -> Option<ParsedReport> {
        let mut words = line.split_whitespace();
        let mut field = |name: &str| -> Option<u64> {
            (words.next()? == name).then_some(())?;
            words.next()?.parse().ok()
        };
        let requests = field("requests")?;
        let elapsed = field("elapsed_ns")?;
        let p50 = field("p50_ns")?;
        let p99 = field("p99_ns")?;
        Some(ParsedReport {
            requests,
            req_per_sec: requests as f64 / (elapsed as f64 / 1e9),
            p50: Duration::from_nanos(p50),
            p99: Duration::from_nanos(p99),
        })
    }
}

/// Run the load against `config.addr`. Every connection completes at
/// least one request, so a run always checks the server's replies. With
/// [`requests`](LoadConfig::requests) set, each connection makes its share
/// of them (at least one) and the duration is not used.
///
/// # Errors
/// If a connection fails, times out (10 s without progress), is closed
/// early, or a reply differs from its request.
pub fn run(config: &LoadConfig) -> io::Result<LoadReport> {
    let start = Instant::now();
    let end = start + config.duration;
    let threads: Vec<_> = (0..config.connections)
        .map(|i| {
            let config = config.clone();
            thread::Builder::new()
                .name(format!("echo-load-{i}"))
                .spawn(move || connection(&config, i, end))
        })
        .collect::<io::Result<_>>()?;
    let mut requests = 0;
    let mut latencies = Vec::new();
    let mut first_error = None;
    for t in threads {
        match t.join().expect("load thread panicked") {
            Ok(l) => {
                requests += l.len() as u64;
                latencies.extend(l);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(LoadReport {
        requests,
        elapsed,
        latencies,
    })
}

/// One connection's request/response loop; the latencies of its requests.
fn connection(config: &LoadConfig, index: usize, end: Instant) -> io::Result<Vec<u64>> {
    let mut stream = TcpStream::connect(config.addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    // Two patterns per connection, alternated: a reply crossed between
    // connections or a stale one is caught, and filling costs nothing per
    // request (the client must not be the bottleneck at 100 KiB).
    let patterns: [Vec<u8>; 2] = std::array::from_fn(|k| {
        let seed = index * 2 + k + 1;
        (0..config.size)
            .map(|j| (seed * 97 + j * 31 + (j >> 8) * 7) as u8)
            .collect()
    });
    let mut reply = vec![0u8; config.size];
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut n: u64 = 0;
    let quota = config.requests.map(|total| {
        let c = config.connections.max(1) as u64;
        // The first `total % c` connections take one more: `total` in all.
        (total / c + u64::from((index as u64) < total % c)).max(1)
    });
    loop {
        let now = Instant::now();
        // At least one request per connection, however late it connected.
        let done = match quota {
            Some(q) => n >= q,
            None => now >= end && n > 0,
        };
        if done {
            break;
        }
        let request = &patterns[(n & 1) as usize];
        stream.write_all(request)?;
        stream.read_exact(&mut reply).map_err(|e| {
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
    // Shut down cleanly: the server sees EOF, not a reset.
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut rest = [0u8; 64];
    if stream.read(&mut rest)? != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("connection {index}: bytes after the last reply"),
        ));
    }
    Ok(latencies)
}
