//! `SP`: subprocesses — the protocol's call order, exit codes, pipes and
//! redirections, signals to the child, and exit seen from the OS rather
//! than from pipe EOF (PEP 3156 §Subprocess Transports, §Subprocess
//! Protocol). Each check runs in a child process of its own.

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{Error, Redirect, SubprocessProtocol, SubprocessStdio, SubprocessTransport};

use crate::Env;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Records every call and checks SP-01's order on each.
#[derive(Clone, Default)]
struct Log(Rc<RefCell<Seen>>);

impl Log {
    fn events(&self) -> Vec<Ev> {
        self.0.borrow().events.clone()
    }
    fn out(&self, fd: usize) -> Vec<u8> {
        self.0.borrow().out[fd].clone()
    }
    fn has(&self, e: Ev) -> bool {
        self.0.borrow().events.contains(&e)
    }
    fn lost(&self) -> bool {
        self.has(Ev::Lost)
    }
    /// SP-01: made first and once, lost last and once, exited once, each
    /// pipe lost at most once and never written to after.
    fn assert_complete(&self) {
        let s = self.0.borrow();
        assert!(
            s.violations.is_empty(),
            "SP-01 violated: {:?}",
            s.violations
        );
        let ev = &s.events;
        let n = |e: Ev| ev.iter().filter(|x| **x == e).count();
        assert_eq!(ev.first(), Some(&Ev::Made), "{ev:?}");
        assert_eq!(
            ev.last(),
            Some(&Ev::Lost),
            "connection_lost is the last call: {ev:?}"
        );
        assert_eq!(
            (n(Ev::Made), n(Ev::Lost), n(Ev::Exited)),
            (1, 1, 1),
            "{ev:?}"
        );
        for fd in 0..3 {
            assert!(n(Ev::PipeLost(fd)) <= 1, "pipe {fd} lost twice: {ev:?}");
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
        if e == Ev::Made && s.events.contains(&Ev::Made) {
            s.violations.push("connection_made twice".into());
        }
        if let Ev::Data(fd) = e
            && s.events.contains(&Ev::PipeLost(fd))
        {
            s.violations
                .push(format!("data on fd {fd} after its pipe was lost"));
        }
        if e == Ev::Lost {
            let open: Vec<i32> = (0..3)
                .filter(|fd| {
                    s.transport
                        .as_ref()
                        .is_some_and(|t| t.pipe_transport(*fd).is_some())
                        && !s.events.contains(&Ev::PipeLost(*fd))
                })
                .collect();
            if !s.events.contains(&Ev::Exited) || !open.is_empty() {
                s.violations.push(format!(
                    "connection_lost before process_exited or with pipes {open:?} open"
                ));
            }
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
        let mut s = self.0.0.borrow_mut();
        if data.is_empty() {
            s.violations.push("pipe_data_received with no bytes".into());
        }
        match usize::try_from(fd) {
            Ok(i @ 1..=2) => s.out[i].extend_from_slice(data),
            _ => s.violations.push(format!("pipe_data_received on fd {fd}")),
        }
    }
    fn pipe_connection_lost(&mut self, fd: i32, _error: Option<Error>) {
        self.0.push(Ev::PipeLost(fd));
    }
    fn process_exited(&mut self) {
        self.0.push(Ev::Exited);
        let code = self
            .0
            .0
            .borrow()
            .transport
            .as_ref()
            .and_then(SubprocessTransport::returncode);
        if code.is_none() {
            self.0
                .0
                .borrow_mut()
                .violations
                .push("process_exited without a return code".into());
        }
    }
    fn connection_lost(&mut self, _error: Option<Error>) {
        self.0.push(Ev::Lost);
        self.0.0.borrow_mut().transport = None;
    }
}

fn shell(env: &Env, cmd: &str, stdio: SubprocessStdio) -> (SubprocessTransport, Log) {
    let log = Log::default();
    let l2 = log.clone();
    let t = env
        .run_until(env.lp().subprocess_shell(move || Proto(l2), cmd, stdio))
        .unwrap_or_else(|e| panic!("subprocess_shell({cmd:?}) failed: {e}"));
    (t, log)
}

/// `cat`, executed directly (no shell), with every stdio a pipe.
fn cat(env: &Env) -> (SubprocessTransport, Log) {
    let log = Log::default();
    let l2 = log.clone();
    let t = env
        .run_until(env.lp().subprocess_exec(
            move || Proto(l2),
            Command::new("cat"),
            SubprocessStdio::new(),
        ))
        .unwrap_or_else(|e| panic!("subprocess_exec(cat) failed: {e}"));
    (t, log)
}

/// SP-01 (MUST): `connection_made` once; `pipe_data_received(1 or 2)*`;
/// `pipe_connection_lost` once per pipe; `process_exited` once;
/// `connection_lost` once, after all of them.
pub fn call_order_and_output(env: &Env) {
    let (t, log) = shell(
        env,
        "echo out; echo err >&2; exit 0",
        SubprocessStdio::new(),
    );
    assert_eq!(
        log.events().first(),
        Some(&Ev::Made),
        "resolved before connection_made"
    );
    env.run_until_true(|| log.lost());
    log.assert_complete();
    for fd in 0..3 {
        assert!(
            log.has(Ev::PipeLost(fd)),
            "pipe {fd} never reported lost: {:?}",
            log.events()
        );
    }
    assert_eq!(log.out(1), b"out\n");
    assert_eq!(log.out(2), b"err\n");
    assert_eq!(t.returncode(), Some(0));
}

/// SP-02 (MUST): `get_returncode()` is none while the child runs and the
/// exit code afterwards (exit 7 gives 7, killed by signal N gives −N);
/// `get_pid()` is the child's pid.
pub fn returncode_and_pid(env: &Env) {
    let (t, log) = shell(env, "echo $$; read line; exit 7", SubprocessStdio::new());
    env.run_until_true(|| log.out(1).ends_with(b"\n"));
    let pid: u32 = String::from_utf8_lossy(&log.out(1))
        .trim()
        .parse()
        .expect("the child's pid");
    assert_eq!(t.pid(), pid, "get_pid() is not the child's pid");
    assert_eq!(t.returncode(), None, "a return code while the child runs");
    let stdin = t.pipe_transport(0).expect("stdin");
    stdin.write(b"go\n").expect("write");
    env.run_until_true(|| log.lost());
    assert_eq!(t.returncode(), Some(7));
    log.assert_complete();

    let (t, log) = shell(env, "exec sleep 30", SubprocessStdio::new());
    let wait = t.wait();
    t.kill().expect("kill");
    assert_eq!(
        env.run_until(wait).map_err(|e| e.kind()),
        Ok(-9),
        "wait() resolves with the return code"
    );
    env.run_until_true(|| log.lost());
    assert_eq!(t.returncode(), Some(-9), "killed by SIGKILL is -9");
    log.assert_complete();
}

/// SP-03 (MUST): `get_pipe_transport(0)` is writable; with stdio set to
/// none (null) `get_pipe_transport` returns none; `close()` after the child
/// exited is harmless.
pub fn stdin_writable_and_null_stdio(env: &Env) {
    let (t, log) = cat(env);
    let stdin = t.pipe_transport(0).expect("a stdin pipe");
    stdin.write(b"through cat").expect("write");
    stdin.close();
    env.run_until_true(|| log.lost());
    assert_eq!(log.out(1), b"through cat");
    log.assert_complete();
    t.close();
    t.close();

    // write_eof() on the stdin pipe: closes it once the data is written.
    let (t, log) = cat(env);
    let stdin = t.pipe_transport(0).expect("a stdin pipe");
    stdin.write(b"then eof").expect("write");
    stdin.write_eof();
    env.run_until_true(|| log.lost());
    assert_eq!(
        log.out(1),
        b"then eof",
        "write_eof() lost the data before it"
    );
    assert_eq!(t.returncode(), Some(0));
    log.assert_complete();

    let stdio = SubprocessStdio::new()
        .stdin(Redirect::Null)
        .stdout(Redirect::Null)
        .stderr(Redirect::Null);
    let (t, log) = shell(env, "echo invisible", stdio);
    for fd in 0..3 {
        assert!(
            t.pipe_transport(fd).is_none(),
            "a pipe transport for null fd {fd}"
        );
    }
    env.run_until_true(|| log.lost());
    assert_eq!(log.events(), [Ev::Made, Ev::Exited, Ev::Lost]);
    t.close();
}

/// SP-04 (SHOULD): `kill`, `terminate` and `send_signal` are delivered, and
/// the child starts with default signal dispositions: nothing the test
/// process ignores is inherited — SIGPIPE, which Rust's runtime ignores,
/// always, and whatever the environment ignored (SIGHUP under `nohup`,
/// SIGINT and SIGQUIT in a background job of a non-interactive shell).
///
/// Reported skipped ("only partly checked") where the child cannot read its
/// `/proc/self/status`: the disposition half cannot be seen there.
pub fn signals_delivered_and_default_dispositions(env: &Env) {
    for (how, code) in [("terminate", -15), ("send_signal", -10), ("kill", -9)] {
        let (t, log) = shell(
            env,
            "exec sleep 30",
            SubprocessStdio::new().stdin(Redirect::Null),
        );
        match how {
            "terminate" => t.terminate(),
            "send_signal" => t.send_signal(10),
            _ => t.kill(),
        }
        .unwrap_or_else(|e| panic!("{how} failed: {e}"));
        env.run_until_true(|| log.lost());
        assert_eq!(t.returncode(), Some(code), "{how}");
        log.assert_complete();
        // Once the child has exited (and may have been reaped), a signal is
        // ignored: it must never reach a process that reused the pid.
        t.send_signal(15)
            .unwrap_or_else(|e| panic!("send_signal after the exit must be ignored: {e}"));
        assert_eq!(
            t.send_signal(100_000).map_err(|e| e.kind()),
            Err(oneloop::ErrorKind::InvalidArgument),
            "send_signal with no such signal number"
        );
    }
    let (_t, log) = shell(
        env,
        "grep SigIgn /proc/self/status || echo 'SigIgn: unknown'",
        SubprocessStdio::new().stdin(Redirect::Null),
    );
    env.run_until_true(|| log.lost());
    let line = String::from_utf8_lossy(&log.out(1)).into_owned();
    let mask = line
        .split_whitespace()
        .nth(1)
        .and_then(|m| u64::from_str_radix(m, 16).ok());
    match mask {
        None => env.skip_part(
            "the child has no /proc/self/status: that it starts with default signal \
             dispositions is not checked",
        ),
        // Standard signals only: the real-time ones the C library keeps for
        // its threads are outside a program's control.
        Some(mask) => {
            assert!(
                mask & ((1 << 31) - 1) == 0,
                "the child started with ignored signals (SigIgn {mask:#x}): dispositions were inherited"
            );
            // Not vacuous: this process does ignore something (SIGPIPE).
            let own = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    let line = s.lines().find(|l| l.starts_with("SigIgn:"))?.to_owned();
                    u64::from_str_radix(line["SigIgn:".len()..].trim(), 16).ok()
                });
            const SIGPIPE: u32 = 13;
            assert!(
                own.is_some_and(|m| m & (1 << (SIGPIPE - 1)) != 0),
                "the test process ignores no SIGPIPE (SigIgn {own:?}): the check would pass vacuously"
            );
        }
    }
}

/// SP-05 (SHOULD): stderr=STDOUT merges into fd 1 and
/// `get_pipe_transport(2)` is none; closing the stdout transport early makes
/// the child's next write fail (EPIPE, or death by SIGPIPE).
pub fn stderr_to_stdout_and_early_close(env: &Env) {
    let stdio = SubprocessStdio::new()
        .stdin(Redirect::Null)
        .stderr(Redirect::Stdout);
    let (t, log) = shell(env, "echo a; echo b >&2", stdio);
    assert!(
        t.pipe_transport(2).is_none(),
        "a stderr pipe with stderr=STDOUT"
    );
    env.run_until_true(|| log.lost());
    assert_eq!(log.out(1), b"a\nb\n");
    log.assert_complete();
    // STDOUT is a destination for stderr only.
    let err = env
        .run_until(env.lp().subprocess_shell(
            || -> Proto { panic!("a protocol for a refused subprocess") },
            "true",
            SubprocessStdio::new().stdin(Redirect::Stdout),
        ))
        .expect_err("stdin=STDOUT was accepted");
    assert_eq!(err.kind(), oneloop::ErrorKind::InvalidArgument, "{err}");

    let (t, log) = shell(
        env,
        "read line; echo after; echo \"status $?\" >&2",
        SubprocessStdio::new(),
    );
    t.pipe_transport(1).expect("stdout").close();
    env.run_until_true(|| log.has(Ev::PipeLost(1)));
    t.pipe_transport(0)
        .expect("stdin")
        .write(b"go\n")
        .expect("write");
    env.run_until_true(|| log.lost());
    let err = String::from_utf8_lossy(&log.out(2)).into_owned();
    let code = t.returncode();
    assert!(
        code == Some(-13) || (err.starts_with("status ") && err.trim() != "status 0"),
        "the child wrote to a closed stdout without failing (code {code:?}, stderr {err:?})"
    );
    assert!(
        log.out(1).is_empty(),
        "data after the stdout transport closed"
    );
}

/// SP-06 (SHOULD): exit is seen from the OS, not from pipe EOF: a grandchild
/// holding the pipes open does not delay `process_exited`.
pub fn exit_seen_while_grandchild_holds_pipes(env: &Env) {
    let start = Instant::now();
    let (t, log) = shell(
        env,
        "sleep 30 & echo $!; exit 3",
        SubprocessStdio::new().stdin(Redirect::Null),
    );
    env.run_until_true(|| log.has(Ev::Exited));
    let waited = start.elapsed();
    assert_eq!(t.returncode(), Some(3));
    assert!(
        !log.has(Ev::PipeLost(1)),
        "stdout closed although the grandchild holds it: the exit was not seen first"
    );
    assert!(
        waited < Duration::from_secs(20),
        "process_exited took {waited:?}"
    );
    env.run_until_true(|| log.out(1).ends_with(b"\n"));
    let grandchild: i32 = String::from_utf8_lossy(&log.out(1))
        .trim()
        .parse()
        .expect("a pid");
    let pid = rustix::process::Pid::from_raw(grandchild).expect("a valid pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill the grandchild");
    env.run_until_true(|| log.lost());
    log.assert_complete();
}

/// SP-07 (SHOULD): output written just before exit is not lost: after
/// `process_exited` the rest still arrives and each pipe reaches EOF.
pub fn output_before_exit_not_lost(env: &Env) {
    let (_t, log) = shell(
        env,
        "head -c 3000000 /dev/zero; echo tail >&2; exit 0",
        SubprocessStdio::new().stdin(Redirect::Null),
    );
    env.run_until_true(|| log.lost());
    assert_eq!(log.out(1).len(), 3_000_000, "stdout output lost");
    assert_eq!(log.out(2), b"tail\n", "stderr output lost");
    log.assert_complete();
}
