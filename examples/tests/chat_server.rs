//! The chat server example on every loop: lines are broadcast to the
//! others, names and departures are announced, a client that does not read
//! is dropped at its backlog, and Ctrl-C ends the room cleanly.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use util::{LineClient, Process, on_every_loop};

const BIN: &str = env!("CARGO_BIN_EXE_chat_server");

fn start(loop_name: &str, extra: &[&str]) -> Process {
    let mut args = vec!["--loop", loop_name, "--port", "0"];
    args.extend_from_slice(extra);
    Process::start(BIN, &args)
}

/// Two clients: each is welcomed, hears of the other, gets the other's
/// lines (and not its own), sees renames and departures; Ctrl-C tells
/// everyone and closes; the server exits 0.
fn broadcasts_between_clients(loop_name: &str) {
    let server = start(loop_name, &[]);
    let mut ann = LineClient::connect(server.addr);
    assert_eq!(
        ann.expect_line(),
        "* welcome, you are guest1; nobody else is here. Commands: /nick NAME, /who, /quit"
    );
    let mut bob = LineClient::connect(server.addr);
    assert_eq!(
        bob.expect_line(),
        "* welcome, you are guest2; here: guest1. Commands: /nick NAME, /who, /quit"
    );
    assert_eq!(ann.expect_line(), "* guest2 joined");

    ann.send("/nick ann\n");
    assert_eq!(ann.expect_line(), "* guest1 is now ann");
    assert_eq!(bob.expect_line(), "* guest1 is now ann");
    bob.send("/nick ann\r\n");
    assert_eq!(bob.expect_line(), "* ann is taken");
    bob.send("/nick bob\n");
    assert_eq!(bob.expect_line(), "* guest2 is now bob");
    assert_eq!(ann.expect_line(), "* guest2 is now bob");

    // A line in pieces is one message; two lines in one write are two.
    ann.send("hel");
    ann.send("lo bob\nsecond\n");
    assert_eq!(bob.expect_line(), "<ann> hello bob");
    assert_eq!(bob.expect_line(), "<ann> second");
    bob.send("/who\n");
    assert_eq!(bob.expect_line(), "* here: ann, bob");

    // An over-long line is refused whole; the next one goes through.
    bob.send(&"x".repeat(5000));
    bob.send("\nhi ann\n");
    assert_eq!(
        bob.expect_line(),
        "* line too long (over 2048 bytes): dropped"
    );
    assert_eq!(ann.expect_line(), "<bob> hi ann");

    // A third client leaves by closing its socket.
    let mut cy = LineClient::connect(server.addr);
    assert!(cy.expect_line().starts_with("* welcome, you are guest3"));
    assert_eq!(ann.expect_line(), "* guest3 joined");
    assert_eq!(bob.expect_line(), "* guest3 joined");
    cy.stream().shutdown(Shutdown::Both).unwrap();
    assert_eq!(ann.expect_line(), "* guest3 left");
    assert_eq!(bob.expect_line(), "* guest3 left");

    server.interrupt();
    assert_eq!(ann.rest(), ["* the server is shutting down"]);
    assert_eq!(bob.rest(), ["* the server is shutting down"]);
    let (status, stderr) = server.wait();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(stderr.trim_end().ends_with("bye"), "{stderr}");
}
on_every_loop!(broadcasts_between_clients);

/// `/quit` says goodbye and closes; the others are told.
fn quit_leaves_the_room(loop_name: &str) {
    let server = start(loop_name, &[]);
    let mut ann = LineClient::connect(server.addr);
    ann.expect_line();
    let mut bob = LineClient::connect(server.addr);
    bob.expect_line();
    assert_eq!(ann.expect_line(), "* guest2 joined");

    // Lines behind `/quit` in the same write are not sent to the room.
    bob.send("/quit\nstill here?\n");
    assert_eq!(bob.rest(), ["* bye"]);
    assert_eq!(ann.expect_line(), "* guest2 left");
    ann.send("/dance\n");
    assert_eq!(
        ann.expect_line(),
        "* unknown command /dance; try /nick NAME, /who, /quit"
    );
}
on_every_loop!(quit_leaves_the_room);

/// A client that stops reading while another floods the room is dropped
/// once its backlog passes `--max-backlog`, with no more than that
/// buffered for it, and the room is told; the flooder is unaffected.
fn drops_a_client_that_does_not_read(loop_name: &str) {
    const BACKLOG: usize = 64 * 1024;
    let server = start(loop_name, &["--max-backlog", &BACKLOG.to_string()]);
    let mut sleepy = LineClient::connect(server.addr);
    sleepy.expect_line();
    let mut flooder = LineClient::connect(server.addr);
    flooder.expect_line();
    assert_eq!(sleepy.expect_line(), "* guest2 joined");
    // From here on `sleepy` reads nothing until it is dropped.

    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = flooder.stream().try_clone().unwrap();
    let flooding = {
        let stop = stop.clone();
        thread::spawn(move || {
            let line = format!("{}\n", "spam ".repeat(200));
            // Bounded, so a server that never drops anyone fails the test
            // below instead of making this thread run forever.
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) || writer.write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        })
    };
    assert_eq!(flooder.expect_line(), "* guest1 was dropped: not reading");
    stop.store(true, Ordering::Relaxed);
    flooding.join().unwrap();

    // The dropped client's connection ends: EOF, or a reset since its
    // backlog was discarded; a timeout (the watchdog) would fail here.
    let mut sink = Vec::new();
    match sleepy.stream().try_clone().unwrap().read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }

    flooder.send("/who\n");
    assert_eq!(flooder.expect_line(), "* here: guest2");

    server.interrupt();
    let (status, stderr) = server.wait();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    let unread: usize = stderr
        .lines()
        .find_map(|l| l.strip_prefix("guest1 dropped: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop logged:\n{stderr}"));
    assert!(
        unread <= BACKLOG,
        "{unread} bytes were buffered for a client allowed {BACKLOG}"
    );
}
on_every_loop!(drops_a_client_that_does_not_read);
