//! One fd per connection on every loop mode (issue 16 item 1): a server
//! whose process may open only its base fds plus [`CONNECTIONS`] more
//! serves [`CONNECTIONS`] echo connections held open at once. An adapter
//! that spent a second fd per watched socket (the tokio adapter used to
//! register a private duplicate of each) runs out halfway.
//!
//! The fd limit is process-wide, so each mode's server runs in a child
//! process (this binary, `--child MODE`) and the clients here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use oneloop::Protocol;
use oneloop_reliability::modes;

/// Connections held open at once.
const CONNECTIONS: usize = 1500;
/// fds the server may open beyond what it had before listening: its
/// listener, its loop's few fds (a selector, a wake, a runtime's), slack
/// for the host, and one per connection. Two per connection would need
/// `CONNECTIONS` more than that.
const SLACK: u64 = 48;

#[derive(Default)]
struct Echo(Option<oneloop::Transport>);

impl Protocol for Echo {
    fn connection_made(&mut self, t: &oneloop::Transport) {
        self.0 = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.0 {
            let _ = t.write(data);
        }
    }
    fn connection_lost(&mut self, _: Option<oneloop::Error>) {
        self.0 = None;
    }
}

/// The child: serve on `mode` under the fd limit until stdin closes;
/// print the port, then (when stdin closes) what the loop was told.
fn child(mode: &str) -> ExitCode {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let spec = modes::find(mode).expect("a known mode");
    let env = modes::env("fd-budget", &spec, Duration::from_secs(120));
    let lp = env.lp().clone();
    let server = env
        .run_until(lp.create_server_with(
            Echo::default,
            "127.0.0.1:0",
            oneloop::ServerOptions::new().backlog(CONNECTIONS as i32),
        ))
        .expect("create_server");
    let port = server.local_addrs()[0].as_inet().unwrap().port();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = open + CONNECTIONS as u64 + SLACK;
    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(limit),
            maximum: old.maximum,
        },
    )
    .expect("setrlimit");
    println!("{port}");
    std::io::stdout().flush().unwrap();
    // Serve until the parent closes our stdin (read on a thread).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_to_string(&mut sink);
        d.store(true, std::sync::atomic::Ordering::Release);
    });
    env.run_until_true(|| done.load(std::sync::atomic::Ordering::Acquire));
    let reports = env.take_reports();
    for r in &reports {
        println!("report: {r}");
    }
    server.close();
    ExitCode::SUCCESS
}

fn run_mode(exe: &std::path::Path, mode: &str) -> Result<(), String> {
    let mut child = Command::new(exe)
        .args(["--child", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let port: u16 = line
        .trim()
        .parse()
        .map_err(|_| format!("no port from the server: {line:?}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Every connection open at once, each echoing its own message.
    let mut conns = Vec::with_capacity(CONNECTIONS);
    let mut failed = Vec::new();
    for i in 0..CONNECTIONS {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => conns.push((i, c)),
            Err(e) => failed.push(format!("connect {i}: {e}")),
        }
    }
    for (i, c) in &mut conns {
        let msg = format!("hello {i:>8}\n");
        c.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1)),
        ))
        .unwrap();
        if let Err(e) = c.write_all(msg.as_bytes()) {
            failed.push(format!("write {i}: {e}"));
        }
    }
    let mut served = 0;
    for (i, c) in &mut conns {
        let want = format!("hello {i:>8}\n");
        let mut got = vec![0; want.len()];
        match c.read_exact(&mut got) {
            Ok(()) if got == want.as_bytes() => served += 1,
            Ok(()) => failed.push(format!("conn {i}: wrong bytes")),
            Err(e) => failed.push(format!("read {i}: {e}")),
        }
    }
    drop(conns);
    drop(child.stdin.take());
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    let status = child.wait().map_err(|e| e.to_string())?;
    let reports: Vec<&str> = rest.lines().filter(|l| l.starts_with("report:")).collect();
    if served == CONNECTIONS && failed.is_empty() && status.success() {
        Ok(())
    } else {
        failed.truncate(5);
        Err(format!(
            "{served} of {CONNECTIONS} connections served ({status}); first failures: {failed:?}; \
             the loop was told: {reports:?}"
        ))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1]);
    }
    if args.iter().any(|a| a == "--list") {
        for spec in modes::modes() {
            println!("{}::one_fd_per_connection: test", modes::slug(&spec));
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let exe = std::env::current_exe().unwrap();
    let mut failed = 0;
    let mut ran = 0;
    for spec in modes::modes() {
        let name = format!("{}::one_fd_per_connection", modes::slug(&spec));
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        match run_mode(&exe, &modes::slug(&spec)) {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n  {e}");
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        ran - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
