//! The echo server example on every loop: it echoes, it pushes back on a
//! client that does not read, and it stops cleanly on Ctrl-C.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use util::{Process, connect, on_every_loop};

const BIN: &str = env!("CARGO_BIN_EXE_echo_server");

fn start(loop_name: &str) -> Process {
    Process::start(BIN, &["--loop", loop_name, "--port", "0"])
}

/// The period of the test stream: a prime, so no write size shares it and
/// a lost, doubled or reordered chunk shows.
const PERIOD: usize = 251;

/// `len` bytes of the test stream from byte `offset` on.
fn pattern(offset: usize, len: usize) -> Vec<u8> {
    // Built by whole periods: byte-wise arithmetic is slow in debug builds.
    let period: Vec<u8> = (0..PERIOD as u8).collect();
    let start = offset % PERIOD;
    period
        .iter()
        .cycle()
        .skip(start)
        .take(len)
        .copied()
        .collect()
}

fn check_pattern(data: &[u8], offset: usize) {
    const CHUNK: usize = 64 * 1024;
    for (n, chunk) in data.chunks(CHUNK).enumerate() {
        let at = offset + n * CHUNK;
        assert!(
            chunk == pattern(at, chunk.len()),
            "the echo differs from what was sent within bytes {at}..{}",
            at + chunk.len()
        );
    }
}

/// Two clients at once get their own bytes back, a big one included;
/// EOF closes the connection after the echo; SIGINT ends the server with
/// status 0.
fn echoes_each_client_and_stops_on_sigint(loop_name: &str) {
    let server = start(loop_name);
    let mut small = connect(server.addr);
    let mut big = connect(server.addr);

    const BIG: usize = 1 << 20;
    let mut writer = big.try_clone().unwrap();
    let sending = thread::spawn(move || {
        let data = pattern(0, BIG);
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });

    small.write_all(b"hello\n").unwrap();
    let mut back = [0; 6];
    small.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello\n");

    let mut echoed = Vec::new();
    big.read_to_end(&mut echoed).expect("the echo, then EOF");
    sending.join().unwrap();
    assert_eq!(echoed.len(), BIG);
    check_pattern(&echoed, 0);

    small.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    small.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing more after EOF: {rest:?}");

    server.interrupt();
    let (status, stderr) = server.wait();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("echo server on the {loop_name} loop")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("connected").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("] closed").count(), 2, "{stderr}");
    assert!(stderr.trim_end().ends_with("bye"), "{stderr}");
}
on_every_loop!(echoes_each_client_and_stops_on_sigint);

/// A client that writes without reading is pushed back: the server stops
/// reading from it (its writes stall once the kernel buffers are full)
/// instead of buffering the echo without bound; once the client reads,
/// every byte comes back in order and the server reads again.
fn pushes_back_on_a_client_that_does_not_read(loop_name: &str) {
    let server = start(loop_name);
    let mut client = connect(server.addr);
    // Without push-back the server would take everything: 256 MiB is far
    // beyond what the kernel buffers on both sides hold.
    const CAP: usize = 256 << 20;
    // A correct server never drains the client again until it reads, so
    // this only bounds how long the test waits to notice the stall; a stall
    // seen too early (a server short of CPU) only makes the test check less.
    client
        .set_write_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let chunk_len = 64 * 1024 + 7;
    let mut written = 0;
    let stalled = loop {
        if written >= CAP {
            break false;
        }
        let chunk = pattern(written, chunk_len);
        match client.write(&chunk) {
            Ok(n) => written += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break true;
            }
            Err(e) => panic!("write: {e}"),
        }
    };
    assert!(
        stalled,
        "the server took {written} bytes without pushing back"
    );

    client.set_write_timeout(Some(util::WATCHDOG)).unwrap();
    let mut echoed = vec![0; written];
    client.read_exact(&mut echoed).expect("every byte echoed");
    check_pattern(&echoed, 0);

    // Reading resumed: more data still comes back.
    let tail = pattern(written, 1000);
    client.write_all(&tail).unwrap();
    let mut back = vec![0; tail.len()];
    client.read_exact(&mut back).unwrap();
    assert_eq!(back, tail);

    drop(client);
    server.interrupt();
    let (status, stderr) = server.wait();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
}
on_every_loop!(pushes_back_on_a_client_that_does_not_read);

/// A client still connected at Ctrl-C is closed by the server, which then
/// exits with status 0.
fn closes_open_connections_on_sigint(loop_name: &str) {
    let server = start(loop_name);
    let mut client = connect(server.addr);
    client.write_all(b"ping").unwrap();
    let mut back = [0; 4];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");

    server.interrupt();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("EOF from the server");
    assert!(rest.is_empty());
    let (status, stderr) = server.wait();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(stderr.contains("signal 2: closing"), "{stderr}");
}
on_every_loop!(closes_open_connections_on_sigint);

/// At Ctrl-C, a client that does not read cannot hold the server up: what
/// it is owed is dropped after the grace period, and the server exits 0.
fn aborts_a_silent_client_after_the_grace_period(loop_name: &str) {
    let server = Process::start(BIN, &["--loop", loop_name, "--port", "0", "--grace", "0.2"]);
    let mut client = connect(server.addr);
    client
        .set_write_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    // Write until the server stops reading: it has then more echo buffered
    // than the kernel buffers take (its high-water mark), which a graceful
    // close cannot deliver. Two timeouts in a row with no progress, so that
    // a server merely starved of CPU for a second does not pass for paused.
    let chunk = vec![7; 64 * 1024];
    let (mut written, mut strikes) = (0usize, 0);
    while strikes < 2 {
        assert!(written < 256 << 20, "the server never pushed back");
        match client.write(&chunk) {
            Ok(n) => {
                written += n;
                strikes = 0;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                strikes += 1;
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    server.interrupt();
    let (status, stderr) = server.wait();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("1 connection(s) still sending: aborted"),
        "{stderr}"
    );
}
on_every_loop!(aborts_a_silent_client_after_the_grace_period);

/// Usage mistakes exit with status 2 and say what is wrong; `--help` exits 0.
#[test]
fn usage_errors_are_reported() {
    let out = std::process::Command::new(BIN)
        .args(["--loop", "uvloop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown loop \"uvloop\""), "{stderr}");
    assert!(stderr.contains("usage: echo_server"), "{stderr}");

    let out = std::process::Command::new(BIN)
        .args(["--port", "seventy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--loop"));
}

/// A port in use is an error (status 1) naming the address, not a panic.
#[test]
fn a_port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = std::process::Command::new(BIN)
        .args(["--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}
