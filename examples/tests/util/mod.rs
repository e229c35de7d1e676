//! What the example tests share: start an example server as a child
//! process, talk to it over std sockets, stop it, all under watchdogs.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long anything in these tests may take before it counts as a hang:
/// generous, since CI is a loaded 2-core machine running debug builds.
pub(crate) const WATCHDOG: Duration = Duration::from_secs(20);

/// Stamp `mod $body { fn native() .. fn calloop() }`, one `#[test]` per
/// loop, each calling `$body(loop_name)`.
macro_rules! on_every_loop {
    ($body:ident) => {
        mod $body {
            #[test]
            fn native() {
                super::$body("native")
            }
            #[test]
            fn tokio() {
                super::$body("tokio")
            }
            #[test]
            fn smol() {
                super::$body("smol")
            }
            #[test]
            fn glib() {
                super::$body("glib")
            }
            #[test]
            fn calloop() {
                super::$body("calloop")
            }
        }
    };
}
pub(crate) use on_every_loop;

/// A running example binary; killed on drop if it is still running, so a
/// failed test leaves nothing behind.
pub(crate) struct Process {
    child: Option<Child>,
    /// Where it listens, from its `listening on ADDRESS` line.
    pub(crate) addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    collector: Option<thread::JoinHandle<()>>,
}

impl Process {
    /// Start `bin` with `args` and wait (under the watchdog) for the
    /// `listening on` line it prints once it accepts connections.
    pub(crate) fn start(bin: &str, args: &[&str]) -> Process {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let collector = collect(child.stderr.take().unwrap(), stderr.clone());
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Process {
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr,
            collector: Some(collector),
        };
        match rx.recv_timeout(WATCHDOG) {
            Ok(line) => {
                let addr = line
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
                process.addr = addr.parse().expect("the address printed");
            }
            Err(e) => panic!(
                "{bin} printed no address ({e}); stderr:\n{}",
                process.stderr()
            ),
        }
        process
    }

    /// What the process wrote on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Send SIGINT, as Ctrl-C does.
    pub(crate) fn interrupt(&self) {
        let child = self.child.as_ref().expect("still running");
        let pid = rustix::process::Pid::from_child(child);
        rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("kill -INT");
    }

    /// Wait for the process to exit (under the watchdog); its status and
    /// all it wrote on stderr.
    pub(crate) fn wait(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("still running");
        let status = wait_with_watchdog(&mut child);
        // The stderr pipe closed with the process: the collector ends.
        if let Some(c) = self.collector.take() {
            c.join().expect("the stderr collector");
        }
        (status, self.stderr())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Read all of `from` into `into`, on a thread that ends at EOF.
fn collect(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

/// Wait for `child`, killing it and failing if it outlives the watchdog.
pub(crate) fn wait_with_watchdog(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {WATCHDOG:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Connect to `addr` with the watchdog as read and write timeout, so a
/// missing answer fails the test instead of hanging it.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    s.set_write_timeout(Some(WATCHDOG)).unwrap();
    s
}

/// A line-oriented client of the chat server.
pub(crate) struct LineClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl LineClient {
    /// Connect to `addr` (under the watchdog).
    pub(crate) fn connect(addr: SocketAddr) -> LineClient {
        let s = connect(addr);
        LineClient {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    /// Send `text` as is.
    pub(crate) fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("send");
    }

    /// The next line, without its newline; `None` at EOF. Fails on a
    /// timeout (the watchdog) or a read error.
    pub(crate) fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
            Err(e) => panic!("reading a line: {e}"),
        }
    }

    /// The next line, which must be there.
    pub(crate) fn expect_line(&mut self) -> String {
        self.line().expect("a line, not EOF")
    }

    /// Lines until EOF; fails on a timeout or error.
    pub(crate) fn rest(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(l) = self.line() {
            lines.push(l);
        }
        lines
    }

    /// The underlying stream, for half-closes and socket options.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.writer
    }
}
