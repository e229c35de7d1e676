//! The echo server's control channel, over its stdin and stdout so that a
//! driver needs no extra socket (which would share the server's loop):
//!
//! - the server prints `port <N>` once it listens;
//! - a line `cpu` on its stdin makes it print `cpu_ns <N>`, the process CPU
//!   time so far (all threads, user + system);
//! - `quit` or the end of stdin makes it print `cpu_ns <N>` and exit 0, so a
//!   driver that dies leaves no server behind.
//!
//! The control thread sleeps in `read` between commands and costs nothing
//! measurable.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::cpu::process_cpu_time;

/// Announce `port` on stdout and answer control commands from stdin on a
/// background thread, until `quit` or the end of stdin ends the process.
pub fn serve(port: u16) {
    println!("port {port}");
    thread::Builder::new()
        .name("echo-control".into())
        .spawn(|| {
            let stdin = io::stdin();
            for line in stdin.lock().lines() {
                match line.as_deref().map(str::trim) {
                    Ok("cpu") => println!("cpu_ns {}", process_cpu_time().as_nanos()),
                    Ok("quit") | Err(_) => break,
                    Ok(other) => eprintln!("bench_echo_server: unknown command `{other}`"),
                }
            }
            println!("cpu_ns {}", process_cpu_time().as_nanos());
            let _ = io::stdout().flush();
            std::process::exit(0);
        })
        .expect("spawn the control thread");
}

/// An `bench_echo_server` child process, seen from the driver.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl ServerProcess {
    /// Start `command` (an `bench_echo_server` invocation, possibly under
    /// `taskset`) and wait for it to announce its port.
    ///
    /// # Errors
    /// If the process cannot start, or exits or prints something else
    /// before its port.
    pub fn start(mut command: Command) -> io::Result<ServerProcess> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut server = ServerProcess {
            child,
            stdin,
            stdout,
            port: 0,
        };
        let line = server.line()?;
        server.port = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| bad(format!("expected `port <N>`, got {line:?}")))?;
        Ok(server)
    }

    /// The server's process id (of `valgrind` or `taskset` when wrapped:
    /// both exec, so it is the server's).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process CPU time so far.
    ///
    /// # Errors
    /// If the server is gone or answers something else.
    pub fn cpu(&mut self) -> io::Result<Duration> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| bad("server quit".into()))?;
        stdin.write_all(b"cpu\n")?;
        stdin.flush()?;
        self.cpu_line()
    }

    /// Ask the server to exit, and wait for it; returns its final CPU time.
    ///
    /// # Errors
    /// If the server does not answer or exits with a failure.
    pub fn quit(mut self) -> io::Result<Duration> {
        drop(self.stdin.take());
        let cpu = self.cpu_line();
        let status = self.child.wait()?;
        if !status.success() {
            return Err(bad(format!("bench_echo_server exited with {status}")));
        }
        cpu
    }

    fn cpu_line(&mut self) -> io::Result<Duration> {
        let line = self.line()?;
        line.strip_prefix("cpu_ns ")
            .and_then(|n| n.trim().parse().ok())
            .map(Duration::from_nanos)
            .ok_or_else(|| bad(format!("expected `cpu_ns <N>`, got {line:?}")))
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(bad("bench_echo_server closed its stdout".into()));
        }
        Ok(line)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin makes the server exit; a server that is stuck is killed.
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
