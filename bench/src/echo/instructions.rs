//! The echo servers' instruction counts: a server runs under
//! `valgrind --tool=callgrind` (the Rust servers and the Python ones
//! alike), one connection makes a warm-up of requests, then
//! `callgrind_control --zero` zeroes the counters, the measured requests
//! run, and `callgrind_control --dump` writes them: the server process's
//! user-space instructions (every thread) per request.
//!
//! `callgrind_control` acts on every thread of the process, where a client
//! request (`crate::callgrind`) acts on the calling thread only; and it
//! needs no code in the server, so the Python servers are counted the same
//! way.
//!
//! One request in flight, and the next one sent only once the server's
//! main thread is back asleep in its loop's wait (`epoll_wait`, `poll`, a
//! futex: read from `/proc/<pid>/syscall`), make each request exactly one
//! wake-up of the server, so the count does not depend on timing. Without
//! that wait the count depends on how fast the client is: a server slowed
//! down by callgrind finds the next request already there when it reads
//! again after its reply, and a server that reads until `WouldBlock` (the
//! raw tokio and async-io echoes) then never waits at all, which made them
//! look cheaper than the bare-epoll floor. (The timed rounds use ten
//! connections and no such wait: that is throughput, this is cost.)

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::control::ServerProcess;
use super::matrix::{Cell, MatrixConfig};

/// Instructions per request by (cell, size).
pub type Counts = BTreeMap<(Cell, usize), f64>;

/// How the instruction pass runs.
#[derive(Debug, Clone)]
pub struct CountConfig {
    /// Requests counted per cell and size (Rust servers).
    pub requests: u64,
    /// Requests counted per cell and size for the Python servers (about
    /// 30× slower under callgrind).
    pub python_requests: u64,
    /// Requests before the counters are zeroed, at each size.
    pub warmup: u64,
    /// Where the callgrind files go.
    pub dir: PathBuf,
}

/// Count every cell of `config` at every size.
///
/// # Errors
/// If valgrind or a server fails, or a dump cannot be read.
pub fn run(config: &MatrixConfig, counts: &CountConfig) -> io::Result<Counts> {
    let mut out = Counts::new();
    for &cell in &config.cells {
        let n = if cell.is_python() {
            counts.python_requests
        } else {
            counts.requests
        };
        let per_size = count_server(
            &cell.command(config)?,
            &config.sizes,
            counts.warmup,
            n,
            &counts.dir,
            &cell.to_string().replace('/', "-"),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("{cell} under callgrind: {e}")))?;
        for (&size, per_req) in config.sizes.iter().zip(per_size) {
            eprintln!("instructions {size:>6} B {cell:<20} {per_req:>10.0} per request");
            out.insert((cell, size), per_req);
        }
    }
    Ok(out)
}

/// Start the echo server `argv` under callgrind (its files `<stem>.*` in
/// `dir`), and count its instructions per request at each of `sizes`:
/// `warmup` requests, zero, `requests` requests, dump.
///
/// # Errors
/// If valgrind or the server fails, a reply is wrong, or a dump cannot be
/// read.
pub fn count_server(
    argv: &[String],
    sizes: &[usize],
    warmup: u64,
    requests: u64,
    dir: &Path,
    stem: &str,
) -> io::Result<Vec<f64>> {
    std::fs::create_dir_all(dir)?;
    let out_file = dir.join(format!("{stem}.out"));
    clear(dir, &format!("{stem}.out"))?;
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        // Absolute names and line numbers: the dumps are read by hand too.
        .args(["--compress-strings=no", "--compress-pos=no"])
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(format!(
            "--log-file={}",
            dir.join(format!("{stem}.log")).display()
        ))
        .args(argv)
        // Nothing from the environment moves the stack or seeds a hash:
        // only PATH, and a fixed hash seed for the Python servers.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PYTHONHASHSEED", "0");
    let server = ServerProcess::start(cmd)?;
    let pid = server.id();
    let mut per_size = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        // One connection for the warm-up and the counted requests: the
        // server's accept and per-connection set-up are not counted.
        let mut client = Client::connect(server.port(), size)?;
        for _ in 0..warmup {
            client.request()?;
            wait_until_asleep(pid)?;
        }
        control(pid, "--zero")?;
        for _ in 0..requests {
            client.request()?;
            wait_until_asleep(pid)?;
        }
        control(pid, &format!("--dump=echo-{size}"))?;
        drop(client);
        let dump = PathBuf::from(format!("{}.{}", out_file.display(), k + 1));
        let total = wait_for_summary(&dump)?;
        per_size.push(total as f64 / requests as f64);
    }
    server.quit()?;
    Ok(per_size)
}

/// The syscalls a loop sleeps in: `read`, `poll`, `select`, `futex`,
/// `epoll_wait`, `ppoll`, `pselect6`, `epoll_pwait`, `epoll_pwait2`
/// (x86_64 and aarch64 numbers). `read` counts only on a low fd: valgrind
/// parks a thread that waits for its turn in a `read` of its own pipe, on
/// an fd above 1000.
fn sleeping_in_wait(syscall: &str) -> bool {
    let mut words = syscall.split_whitespace();
    let Some(Ok(nr)) = words.next().map(str::parse::<i64>) else {
        return false;
    };
    let arg0 = words
        .next()
        .and_then(|a| i64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .unwrap_or(-1);
    if cfg!(target_arch = "x86_64") {
        matches!(nr, 7 | 23 | 202 | 232 | 270 | 271 | 281 | 441) || (nr == 0 && arg0 < 1000)
    } else {
        // aarch64: ppoll, pselect6, futex, epoll_pwait, epoll_pwait2, read.
        matches!(nr, 73 | 72 | 98 | 22 | 441) || (nr == 63 && arg0 < 1000)
    }
}

/// Wait (60 s at most) until the server's main thread sleeps in its
/// loop's wait.
fn wait_until_asleep(pid: u32) -> io::Result<()> {
    let path = format!("/proc/{pid}/task/{pid}/syscall");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = std::fs::read_to_string(&path)?;
        if sleeping_in_wait(&now) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server never went back to sleep (last: {})", now.trim()),
            ));
        }
        std::thread::yield_now();
    }
}

/// A blocking client with one request in flight, every reply checked.
struct Client {
    stream: TcpStream,
    requests: [Vec<u8>; 2],
    reply: Vec<u8>,
    sent: u64,
}

impl Client {
    fn connect(port: u16, size: usize) -> io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        // Two patterns, alternated: a stale or crossed reply fails.
        let requests =
            std::array::from_fn(|k| (0..size).map(|i| (i * 31 + k * 7 + 1) as u8).collect());
        Ok(Client {
            stream,
            requests,
            reply: vec![0; size],
            sent: 0,
        })
    }

    fn request(&mut self) -> io::Result<()> {
        let request = &self.requests[(self.sent & 1) as usize];
        self.stream.write_all(request)?;
        self.stream.read_exact(&mut self.reply)?;
        if self.reply != *request {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("request {}: the reply differs from the request", self.sent),
            ));
        }
        self.sent += 1;
        Ok(())
    }
}

/// Remove earlier files of `prefix` in `dir`.
fn clear(dir: &Path, prefix: &str) -> io::Result<()> {
    for f in std::fs::read_dir(dir)? {
        let f = f?;
        if f.file_name().to_string_lossy().starts_with(prefix) {
            std::fs::remove_file(f.path())?;
        }
    }
    Ok(())
}

/// `callgrind_control <action> <pid>`.
fn control(pid: u32, action: &str) -> io::Result<()> {
    let out = Command::new("callgrind_control")
        .arg(action)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("OK") {
        return Err(io::Error::other(format!(
            "callgrind_control {action} {pid}: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The `summary:` of a dump, once callgrind has written all of it.
fn wait_for_summary(path: &Path) -> io::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // `totals:` is the last line callgrind writes.
        if let Ok(text) = std::fs::read_to_string(path)
            && text.lines().any(|l| l.starts_with("totals:"))
            && let Some(n) = text
                .lines()
                .find_map(|l| l.strip_prefix("summary:"))
                .and_then(|n| n.trim().parse().ok())
        {
            return Ok(n);
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no callgrind dump {} after 60 s", path.display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
