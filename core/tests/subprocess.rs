//! Child processes on the default loop, beyond the conformance suite's SP
//! checks: what the guarantees leave open.
//!
//! Exit is detected through a pidfd (or a `waitpid` thread), which touches no
//! process-wide state, so these tests run in-process.

mod transport_fixtures;

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use oneloop::{Error, Loop, Redirect, SubprocessProtocol, SubprocessStdio, SubprocessTransport};
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

/// No SP guarantee covers a failed spawn: it fails the create call with
/// the OS error and makes no protocol.
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

/// No SP guarantee covers `close()` on a running child: it kills it, as
/// asyncio's transport does, and the protocol still ends in order.
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

/// No SP guarantee covers a loop closed under a running child: as dropping
/// an asyncio subprocess transport does, the child is killed (and reaped:
/// no zombie is left) and its protocol, which holds the transport, is let
/// go. With no pipe the exit watch is the loop's only hold on the child.
/// Before the fix this held only with pidfds: where a thread waits for
/// the child (every OS but Linux; `--cfg oneloop_polling`), the child kept
/// running and its state leaked.
#[test]
fn closing_the_loop_kills_a_running_child_and_lets_go_of_it() {
    let lp = new_loop();
    let (t, log) = sleeping_child(&lp);
    let pid = rustix::process::Pid::from_raw(t.pid() as i32).unwrap();
    drop(t);
    lp.close().unwrap();
    assert_gone(pid);
    assert_eq!(
        Rc::strong_count(&log.0),
        1,
        "the protocol outlived its closed loop"
    );
}

/// A child that sleeps for 30 s with no pipe: the loop's exit watch is
/// its only hold on it.
fn sleeping_child(lp: &Loop) -> (SubprocessTransport, Log) {
    let null = SubprocessStdio::new()
        .stdin(Redirect::Null)
        .stdout(Redirect::Null)
        .stderr(Redirect::Null);
    shell(lp, "exec sleep 30", null)
}

/// The child `pid` is gone, killed and reaped, within [`LIMIT`] (killed
/// here, if not, so that a failing test leaves no process behind).
fn assert_gone(pid: rustix::process::Pid) {
    let gone = wait_until(std::time::Instant::now() + LIMIT, || {
        rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
    });
    if !gone {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    assert!(
        gone,
        "the child still runs (or is not reaped) after its loop closed"
    );
}

/// `cond` became true before `deadline` (checked every few milliseconds).
fn wait_until(deadline: std::time::Instant, mut cond: impl FnMut() -> bool) -> bool {
    while !cond() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// `kill()` is "ignored once it has exited" (asyncio's `send_signal`
/// skips a child it knows has died and ignores `ProcessLookupError`),
/// also in the moment between the child's exit and the loop learning of
/// it. Where a thread waits for the child, that thread may have reaped it
/// already: before the fix `kill()` then failed with ESRCH (or, had the
/// pid been reused meanwhile, signalled another process).
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))] // reads /proc
fn kill_just_after_the_exit_is_ignored() {
    let lp = new_loop();
    let (t, log) = sleeping_child(&lp);
    // Killed from outside while the loop does not run: the child is then a
    // zombie (a pidfd watches it) or reaped (a thread waits for it), its
    // exit unseen by the loop.
    let pid = rustix::process::Pid::from_raw(t.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let stat = format!("/proc/{}/stat", t.pid());
    let exited = wait_until(std::time::Instant::now() + LIMIT, || {
        std::fs::read_to_string(&stat).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
    assert!(exited, "the child did not exit");
    assert_eq!(t.returncode(), None, "the loop has not run");
    t.kill()
        .expect("kill() after the exit, before the loop saw it");
    run_until(&lp, LIMIT, || log.lost());
    assert_eq!(t.returncode(), Some(-15), "the exit is the first signal's");
    log.assert_complete();
}

/// After its loop closed under it, the child was killed and is reaped in
/// the background, so its pid may soon be another process's: a signal
/// through a transport still held is ignored, as for a child that exited.
/// Before the fix it went to the bare pid: ESRCH once reaped, or, after
/// pid reuse, a signal to an unrelated process.
#[test]
fn a_signal_after_the_loop_closed_is_ignored() {
    let lp = new_loop();
    let (t, _log) = sleeping_child(&lp);
    let pid = rustix::process::Pid::from_raw(t.pid() as i32).unwrap();
    lp.close().unwrap();
    assert_gone(pid);
    t.terminate().expect("a signal after the loop closed");
    t.close();
}
