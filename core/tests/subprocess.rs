//! Child processes on the default loop: SP-01…SP-07.
//!
//! Exit is detected through a pidfd (or a `waitpid` thread), which touches no
//! process-wide state, so these checks run in-process.

mod transport_fixtures;

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{
    Error, ErrorKind, Loop, Redirect, SubprocessProtocol, SubprocessStdio, SubprocessTransport,
};
use transport_fixtures::{new_loop, run, run_until};

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Made,
    Data(i32),
    PipeLost(i32),
    Exited,
    Lost,
}

#[derive(Default)]
struct Seen {
    events: Vec<Ev>,
    out: [Vec<u8>; 3],
    violations: Vec<String>,
    transport: Option<SubprocessTransport>,
}

#[derive(Clone, Default)]
struct Log(Rc<RefCell<Seen>>);

impl Log {
    fn events(&self) -> Vec<Ev> {
        self.0.borrow().events.clone()
    }
    fn out(&self, fd: usize) -> Vec<u8> {
        self.0.borrow().out[fd].clone()
    }
    fn has(&self, e: &Ev) -> bool {
        self.0.borrow().events.contains(e)
    }
    fn lost(&self) -> bool {
        self.has(&Ev::Lost)
    }
    /// SP-01: made first, lost last, once each; exited once; each pipe lost once.
    fn assert_complete(&self) {
        let s = self.0.borrow();
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        let ev = &s.events;
        assert_eq!(ev.first(), Some(&Ev::Made));
        assert_eq!(ev.last(), Some(&Ev::Lost));
        assert_eq!(ev.iter().filter(|e| **e == Ev::Lost).count(), 1);
        assert_eq!(ev.iter().filter(|e| **e == Ev::Exited).count(), 1);
        for fd in 0..3 {
            assert!(ev.iter().filter(|e| **e == Ev::PipeLost(fd)).count() <= 1);
        }
    }
    fn push(&self, e: Ev) {
        let mut s = self.0.borrow_mut();
        if s.events.contains(&Ev::Lost) {
            s.violations.push(format!("{e:?} after connection_lost"));
        }
        if e != Ev::Made && !s.events.contains(&Ev::Made) {
            s.violations.push(format!("{e:?} before connection_made"));
        }
        if let Ev::Data(fd) = e
            && s.events.contains(&Ev::PipeLost(fd))
        {
            s.violations
                .push(format!("data on fd {fd} after its pipe was lost"));
        }
        s.events.push(e);
    }
}

struct Proto(Log);

impl SubprocessProtocol for Proto {
    fn connection_made(&mut self, t: &SubprocessTransport) {
        self.0.push(Ev::Made);
        self.0.0.borrow_mut().transport = Some(t.clone());
    }
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        self.0.push(Ev::Data(fd));
        if data.is_empty() {
            self.0.0.borrow_mut().violations.push("empty data".into());
        }
        self.0.0.borrow_mut().out[fd as usize].extend_from_slice(data);
    }
    fn pipe_connection_lost(&mut self, fd: i32, _error: Option<Error>) {
        self.0.push(Ev::PipeLost(fd));
    }
    fn process_exited(&mut self) {
        self.0.push(Ev::Exited);
        let code = self.0.0.borrow().transport.as_ref().unwrap().returncode();
        if code.is_none() {
            self.0
                .0
                .borrow_mut()
                .violations
                .push("exited without a code".into());
        }
    }
    fn connection_lost(&mut self, _error: Option<Error>) {
        self.0.push(Ev::Lost);
        self.0.0.borrow_mut().transport = None;
    }
}

fn shell(lp: &Loop, cmd: &str, stdio: SubprocessStdio) -> (SubprocessTransport, Log) {
    let log = Log::default();
    let l2 = log.clone();
    let t = run(
        lp,
        LIMIT,
        lp.subprocess_shell(move || Proto(l2), cmd, stdio),
    )
    .unwrap();
    (t, log)
}

#[test]
fn sp01_sp02_output_exit_code_and_the_call_order() {
    let lp = new_loop();
    let (t, log) = shell(
        &lp,
        "echo out; echo err >&2; exit 7",
        SubprocessStdio::new(),
    );
    assert!(t.pid() > 0);
    run_until(&lp, LIMIT, || log.lost());
    log.assert_complete();
    assert_eq!(t.returncode(), Some(7));
    assert_eq!(log.out(1), b"out\n");
    assert_eq!(log.out(2), b"err\n");
    for fd in 0..3 {
        assert!(log.has(&Ev::PipeLost(fd)), "pipe {fd} lost");
    }
    t.close(); // harmless after exit (SP-03)
}

#[test]
fn sp02_returncode_is_none_while_running_and_minus_n_when_killed() {
    let lp = new_loop();
    let (t, log) = shell(&lp, "exec sleep 30", SubprocessStdio::new());
    assert_eq!(t.returncode(), None);
    t.kill().unwrap();
    assert_eq!(run(&lp, LIMIT, t.wait()).unwrap(), -9);
    run_until(&lp, LIMIT, || log.lost());
    log.assert_complete();

    let (t, log) = shell(&lp, "exec sleep 30", SubprocessStdio::new());
    t.terminate().unwrap();
    assert_eq!(run(&lp, LIMIT, t.wait()).unwrap(), -15);
    run_until(&lp, LIMIT, || log.lost());
    t.send_signal(15).unwrap(); // ignored after exit
    assert_eq!(
        shell(&lp, "exit 0", SubprocessStdio::new())
            .0
            .send_signal(100_000)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn sp03_stdin_is_writable_and_null_stdio_has_no_pipes() {
    let lp = new_loop();
    let log = Log::default();
    let l2 = log.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.subprocess_exec(
            move || Proto(l2),
            Command::new("cat"),
            SubprocessStdio::new(),
        ),
    )
    .unwrap();
    let stdin = t.pipe_transport(0).expect("stdin pipe");
    stdin.write(b"through cat").unwrap();
    stdin.write_eof(); // closes the pipe after the data
    run_until(&lp, LIMIT, || log.lost());
    assert_eq!(log.out(1), b"through cat");
    assert_eq!(t.returncode(), Some(0));
    log.assert_complete();

    let stdio = SubprocessStdio::new()
        .stdin(Redirect::Null)
        .stdout(Redirect::Null)
        .stderr(Redirect::Null);
    let (t, log) = shell(&lp, "echo invisible", stdio);
    for fd in 0..3 {
        assert!(t.pipe_transport(fd).is_none());
    }
    run_until(&lp, LIMIT, || log.lost());
    assert_eq!(log.events(), [Ev::Made, Ev::Exited, Ev::Lost]);
    t.close();
}

#[test]
fn sp05_stderr_to_stdout_merges_into_fd_1() {
    let lp = new_loop();
    let stdio = SubprocessStdio::new()
        .stdin(Redirect::Null)
        .stderr(Redirect::Stdout);
    let (t, log) = shell(&lp, "echo a; echo b >&2", stdio);
    assert!(t.pipe_transport(2).is_none());
    run_until(&lp, LIMIT, || log.lost());
    assert_eq!(log.out(1), b"a\nb\n");
    assert!(log.out(2).is_empty());
    log.assert_complete();
    let err = run(
        &lp,
        LIMIT,
        lp.subprocess_shell(
            || Proto(Log::default()),
            "true",
            SubprocessStdio::new().stdin(Redirect::Stdout),
        ),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// SP-06: a grandchild holding stdout open does not delay `process_exited`.
#[test]
fn sp06_exit_is_seen_while_a_grandchild_holds_the_pipes() {
    let lp = new_loop();
    let (t, log) = shell(
        &lp,
        "sleep 2 & exit 3",
        SubprocessStdio::new().stdin(Redirect::Null),
    );
    let start = Instant::now();
    run_until(&lp, LIMIT, || log.has(&Ev::Exited));
    assert_eq!(t.returncode(), Some(3));
    assert!(
        !log.has(&Ev::PipeLost(1)),
        "the exit was seen before the pipe closed (not from EOF)"
    );
    assert!(
        start.elapsed() < Duration::from_millis(1900),
        "not delayed by the grandchild"
    );
    run_until(&lp, LIMIT, || log.lost());
    log.assert_complete();
}

/// SP-07: everything written just before the exit arrives.
#[test]
fn sp07_output_written_just_before_exit_is_not_lost() {
    let lp = new_loop();
    let (_t, log) = shell(
        &lp,
        "head -c 3000000 /dev/zero; exit 0",
        SubprocessStdio::new().stdin(Redirect::Null),
    );
    run_until(&lp, LIMIT, || log.lost());
    assert_eq!(log.out(1).len(), 3_000_000);
    log.assert_complete();
}

#[test]
fn a_missing_program_fails_and_makes_no_protocol() {
    let lp = new_loop();
    let err = run(
        &lp,
        LIMIT,
        lp.subprocess_exec(
            || -> Proto { unreachable!("no protocol") },
            Command::new("/nonexistent/program"),
            SubprocessStdio::new(),
        ),
    );
    let err = err.unwrap_err();
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
}

#[test]
fn close_kills_a_running_child() {
    let lp = new_loop();
    let (t, log) = shell(&lp, "exec sleep 30", SubprocessStdio::new());
    t.close();
    assert!(t.is_closing());
    run_until(&lp, LIMIT, || log.lost());
    assert_eq!(t.returncode(), Some(-9));
    log.assert_complete();
}
