//! The echo client example on every loop: stdin goes to the server, the
//! echo comes back on stdout, byte for byte.

mod util;

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;

use util::{Process, on_every_loop, wait_with_watchdog};

const CLIENT: &str = env!("CARGO_BIN_EXE_echo_client");
const SERVER: &str = env!("CARGO_BIN_EXE_echo_server");

/// Run the client on `loop_name` against `server` with `input` on stdin;
/// its exit status, stdout and stderr.
fn run_client(loop_name: &str, port: u16, input: Vec<u8>) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(CLIENT)
        .args(["--loop", loop_name, "--port", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeding = thread::spawn(move || {
        stdin.write_all(&input).unwrap();
        // Dropping stdin is the client's EOF.
    });
    let mut stdout = child.stdout.take().unwrap();
    let reading = thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).unwrap();
        out
    });
    let mut stderr = child.stderr.take().unwrap();
    let reading_err = thread::spawn(move || {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
        err
    });
    let status = wait_with_watchdog(&mut child);
    feeding.join().unwrap();
    (
        status.success(),
        reading.join().unwrap(),
        reading_err.join().unwrap(),
    )
}

/// Lines and a large binary tail sent through the client come back on its
/// stdout unchanged; it exits 0 after the server closes, with a summary.
fn echoes_stdin_to_stdout(loop_name: &str) {
    let server = Process::start(SERVER, &["--loop", loop_name, "--port", "0"]);
    let mut input = b"one\ntwo\n".to_vec();
    input.extend((0..300_000usize).map(|i| (i % 253) as u8));
    let (ok, out, err) = run_client(loop_name, server.addr.port(), input.clone());
    assert!(ok, "the client failed; stderr:\n{err}");
    assert_eq!(out.len(), input.len(), "stderr:\n{err}");
    assert!(out == input, "the echo differs from the input");
    let summary = format!("sent {n} bytes, received {n} bytes", n = input.len());
    assert!(err.contains(&summary), "{err}");

    server.interrupt();
    let (status, stderr) = server.wait();
    assert!(status.success(), "{stderr}");
}
on_every_loop!(echoes_stdin_to_stdout);

/// The server closing first ends the client even while its stdin stays
/// open: the chat server's `/quit` answers and closes.
#[test]
fn stops_when_the_server_closes() {
    const CHAT: &str = env!("CARGO_BIN_EXE_chat_server");
    let server = Process::start(CHAT, &["--port", "0"]);
    let mut child = Command::new(CLIENT)
        .args(["--port", &server.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"/quit\n").unwrap();
    // `stdin` stays open until the client has exited.
    let status = wait_with_watchdog(&mut child);
    drop(stdin);
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.starts_with("* welcome, you are guest1"), "{out}");
    assert!(out.ends_with("* bye\n"), "{out}");
}

/// No stdin at all: the client half-closes at once and exits 0.
#[test]
fn empty_input_is_a_clean_exchange() {
    let server = Process::start(SERVER, &["--port", "0"]);
    let (ok, out, err) = run_client("native", server.addr.port(), Vec::new());
    assert!(ok, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("sent 0 bytes, received 0 bytes"), "{err}");
}

/// Nobody listening: the client says so and exits 1.
#[test]
fn a_refused_connection_is_reported() {
    // Bound but not listening: connects are refused, and no server another
    // test starts can take the port meanwhile (bind-then-release races).
    let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    holder.bind(&loopback.into()).unwrap();
    let port = holder.local_addr().unwrap().as_socket().unwrap().port();
    let (ok, out, err) = run_client("native", port, Vec::new());
    assert!(
        !ok,
        "the client connected to a port nobody listens on: {err}"
    );
    assert!(out.is_empty());
    assert!(err.contains("echo_client: "), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
}
