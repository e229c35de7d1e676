//! Stream transports under faults: fd exhaustion on accept (in a child
//! process: the fd limit is process-wide), a closed loop, panics under the
//! `Propagate` policy.
//!
//! Not the suite's: fault injection (a process-wide fd limit, in a child).

mod transport_fixtures;
mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use oneloop::{ErrorKind, Loop, PanicPolicy, Protocol, Transport};
use transport_fixtures::{Recorder, Shared, new_loop, record_exceptions, run, run_until};

const LIMIT: Duration = Duration::from_secs(10);
const CHILD_ENV: &str = "ONELOOP_TRANSPORT_CHILD";

/// Run the test `name` alone in a child process (this binary, exact filter,
/// an env marker), and fail if it fails there or does not run.
fn in_child(name: &str) -> bool {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        return true;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = util::wait_until(std::time::Instant::now() + Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// EMFILE on accept: the server reports it once, stops accepting for a
/// while and retries (no busy loop), and serves the waiting connection once
/// fds are free again.
#[test]
fn emfile_on_accept_backs_off_and_keeps_serving() {
    if in_child("emfile_on_accept_backs_off_and_keeps_serving") {
        emfile_on_accept(true);
    }
}

/// The same with the `Server` handle dropped at once: the loop keeps a
/// server serving until it is closed, through its back-off pause too (the
/// retry timer holds it, as the listeners' callbacks did).
#[test]
fn emfile_back_off_keeps_a_server_whose_handle_was_dropped() {
    if in_child("emfile_back_off_keeps_a_server_whose_handle_was_dropped") {
        emfile_on_accept(false);
    }
}

fn emfile_on_accept(keep_handle: bool) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lp = new_loop();
    let reports = record_exceptions(&lp);
    let server = run(
        &lp,
        LIMIT,
        lp.create_server(|| Recorder::echo(&Shared::new()), "127.0.0.1:0"),
    )
    .unwrap();
    let addr: SocketAddr = server.local_addrs()[0].as_inet().unwrap();
    let server = keep_handle.then_some(server);
    // The client's socket exists before the fds run out.
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();

    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(256),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }
    assert!(!hog.is_empty());
    client.connect(&addr.into()).unwrap(); // completes in the kernel backlog
    run(&lp, LIMIT, oneloop::sleep(Duration::from_millis(350))).unwrap();
    // Three retries fail in 350 ms: the handler is told once per pause.
    let during = reports.borrow().len();
    assert_eq!(during, 1, "one report per shortage, not per retry");
    assert!(reports.borrow()[0].message().contains("accept"));
    if let Some(server) = &server {
        assert!(!server.is_serving(), "backing off");
    }

    drop(hog);
    let mut client: std::net::TcpStream = client.into();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.write_all(b"after the drought").unwrap();
    if let Some(server) = &server {
        run_until(&lp, LIMIT, || server.active_connections() == 1);
        assert!(server.is_serving());
    }
    let reader = std::thread::spawn(move || {
        let mut buf = [0; 17];
        client.read_exact(&mut buf).unwrap();
        buf
    });
    run_until(&lp, LIMIT, || reader.is_finished());
    assert_eq!(&reader.join().unwrap(), b"after the drought");
    if let Some(server) = server {
        server.close();
    }
}

/// Transports and servers outlive their loop safely: every call after
/// `close()` is harmless.
#[test]
fn closing_the_loop_under_live_transports_is_safe() {
    let lp = new_loop();
    let server = run(
        &lp,
        LIMIT,
        lp.create_server(|| Recorder::echo(&Shared::new()), "127.0.0.1:0"),
    )
    .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.create_connection(move || Recorder::new(&s2), addr),
    )
    .unwrap();
    t.write(b"pending").unwrap();
    lp.close().unwrap();
    let _ = t.write(b"more");
    t.pause_reading();
    t.resume_reading();
    t.close();
    t.abort();
    server.close();
    assert!(t.is_closing());
    let err = run_closed(&lp);
    assert_eq!(err, ErrorKind::Closed);
}

fn run_closed(lp: &Loop) -> ErrorKind {
    lp.run_until_complete(async {}).unwrap_err().kind()
}

struct PanicOnData;

impl Protocol for PanicOnData {
    fn data_received(&mut self, _: &[u8]) {
        panic!("propagate me");
    }
}

/// With `PanicPolicy::Propagate`, a protocol panic still tears the
/// transport down, then resumes out of the run.
#[test]
fn a_protocol_panic_propagates_under_the_propagate_policy() {
    let lp = new_loop();
    lp.set_panic_policy(PanicPolicy::Propagate);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t: Transport = run(&lp, LIMIT, lp.create_connection(|| PanicOnData, addr)).unwrap();
    let (mut peer, _) = l.accept().unwrap();
    peer.write_all(b"x").unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = lp.run_until_complete(oneloop::sleep(LIMIT));
    }));
    let payload = caught.expect_err("the panic came out of the run");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"propagate me"));
    assert!(t.is_closing(), "torn down before propagating");
    lp.set_panic_policy(PanicPolicy::Report);
    run_until(&lp, LIMIT, || t.socket_fd().is_none());
}
