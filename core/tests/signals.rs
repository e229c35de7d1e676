//! Signals on the default loop, beyond the conformance suite's SG checks
//! (which run every loop mode, each check in a child process of its own).
//!
//! `harness = false`: libtest runs tests on spawned threads, and signal
//! handlers may only be added on the main thread. `main` re-executes this
//! binary once per check with `--child NAME`; the child runs the check on
//! its main thread; the parent checks how the child ended, with a deadline.

mod util;

use std::process::{Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, Loop};

const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;

/// oneloop's own rule, not a PEP guarantee: one loop of the process owns
/// the signal handlers at a time; another may take over once it gave them
/// back (all removed, or the loop closed).
fn one_loop_owns_signals_at_a_time() {
    let a = Loop::new().unwrap();
    let b = Loop::new().unwrap();
    a.add_signal_handler(SIGUSR1, || {}).unwrap();
    assert_eq!(
        b.add_signal_handler(SIGUSR2, || {}).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    assert!(!b.remove_signal_handler(SIGUSR1).unwrap(), "not b's");
    assert!(a.remove_signal_handler(SIGUSR1).unwrap());
    b.add_signal_handler(SIGUSR2, || {}).unwrap();
    // Closing the owner gives them back too.
    assert_eq!(
        a.add_signal_handler(SIGUSR1, || {}).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    b.close().unwrap();
    let c = Loop::new().unwrap();
    c.add_signal_handler(SIGUSR1, || {}).unwrap();
}

/// Dropping the owner without `close()` gives the signals back too (a
/// regression test: the signal pipe's reader held its loop, so such a loop
/// was never freed and kept the signals).
fn dropping_the_owner_unclosed_gives_signals_back() {
    let a = Loop::new().unwrap();
    a.add_signal_handler(SIGUSR2, || {}).unwrap();
    drop(a);
    let b = Loop::new().unwrap();
    b.add_signal_handler(SIGUSR1, || {}).unwrap();
}

/// Adding a handler again takes the signal back from whoever changed its
/// disposition behind the loop (Python's `signal.signal` does, in the
/// Python package: it sets its own view first, then the loop's handler
/// must be the one installed), and removal still gives back what was
/// there before the loop first took the signal.
fn adding_again_takes_the_signal_back() {
    let lp = Loop::new().unwrap();
    lp.add_signal_handler(SIGUSR1, || {}).unwrap();
    // SAFETY: `SIG_IGN` is a valid disposition; no handler code is installed.
    unsafe { libc::signal(SIGUSR1, libc::SIG_IGN) };
    let ran = std::rc::Rc::new(std::cell::Cell::new(false));
    let (ran2, lp2) = (ran.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        ran2.set(true);
        lp2.stop();
    })
    .unwrap();
    // SAFETY: raises a signal whose disposition this process set.
    unsafe { libc::raise(SIGUSR1) };
    let lp3 = lp.clone();
    lp.call_later(Duration::from_secs(5), move || lp3.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert!(
        ran.get(),
        "the signal stayed ignored: the loop did not take it back"
    );
    assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
    // SAFETY: reads the current disposition without changing it (a null new action).
    let now = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(SIGUSR1, std::ptr::null(), &mut old);
        old.sa_sigaction
    };
    assert_eq!(
        now,
        libc::SIG_DFL,
        "removal gives back the first disposition"
    );
}

/// A process forked from a callback of the loop that owns the signals may
/// make a loop of its own (as `tests/fork.rs` checks), and that loop may
/// handle signals: the parent's ownership is the parent's (asyncio's child
/// resets its wake-up fd, `events.on_fork`). Before the fix the child's
/// `add_signal_handler` answered `InvalidState` ("another event loop
/// handles signals") for good, the parent's owner being copied into it.
fn a_forked_child_handles_signals_with_a_loop_of_its_own() {
    let lp = Loop::new().unwrap();
    lp.add_signal_handler(SIGUSR1, || {}).unwrap();
    let child = lp
        .run_until_complete(async {
            // SAFETY: this check's process is single-threaded (re-executed
            // with `--child`; no executor thread is started), so the child
            // may run any code; it ends with `_exit`.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let ok = std::panic::catch_unwind(|| {
                    let own = Loop::new().unwrap();
                    let ran = std::rc::Rc::new(std::cell::Cell::new(false));
                    let (ran2, stop) = (ran.clone(), own.clone());
                    own.add_signal_handler(SIGUSR2, move || {
                        ran2.set(true);
                        stop.stop();
                    })
                    .unwrap();
                    // SAFETY: raises a signal whose disposition this process set.
                    unsafe { libc::raise(SIGUSR2) };
                    let lp3 = own.clone();
                    own.call_later(Duration::from_secs(5), move || lp3.stop())
                        .unwrap();
                    own.run_forever().unwrap();
                    assert!(own.remove_signal_handler(SIGUSR2).unwrap());
                    ran.get()
                });
                // SAFETY: ends the child at once, running no parent cleanup.
                unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
            }
            pid
        })
        .unwrap();
    assert!(child > 0, "fork failed");
    let mut status = 0;
    let ended = util::wait_until(Instant::now() + Duration::from_secs(20), || {
        // SAFETY: waits for our own child, with a valid out-pointer.
        unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) == child }
    });
    if !ended {
        // SAFETY: kills and reaps our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, &mut status, 0);
        }
    }
    assert!(
        ended && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child could not handle a signal on a loop of its own (status {status})"
    );
    // The parent still owns its signals.
    assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
}

/// A signal the OS refuses to let a handler be set for (glibc keeps 32 and
/// 33 for its threads: `sigaction` answers EINVAL) fails with
/// `InvalidArgument` (asyncio: "sig N cannot be caught") and, as asyncio
/// gives back its wake-up fd then, leaves the loop owning nothing: before
/// the fix the loop kept its claim, with no handler, and every other loop
/// was refused with `InvalidState` until it closed.
fn a_refused_signal_leaves_no_claim() {
    let a = Loop::new().unwrap();
    let refused = (1..65)
        // SAFETY: reads a disposition without changing it (a null new action).
        .find(|&sig| unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old) != 0
        })
        .filter(|&sig| ![libc::SIGKILL, libc::SIGSTOP].contains(&sig));
    let Some(sig) = refused else {
        println!("skipped: every signal number below 65 is accepted by sigaction here");
        return;
    };
    assert_eq!(
        a.add_signal_handler(sig, || {}).unwrap_err().kind(),
        ErrorKind::InvalidArgument,
        "signal {sig}"
    );
    let b = Loop::new().unwrap();
    b.add_signal_handler(SIGUSR1, || {})
        .expect("a's refused handler left it owning the signals");
    assert!(b.remove_signal_handler(SIGUSR1).unwrap());
}

type Check = (&'static str, fn());

const CHECKS: &[Check] = &[
    (
        "one_loop_owns_signals_at_a_time",
        one_loop_owns_signals_at_a_time,
    ),
    (
        "dropping_the_owner_unclosed_gives_signals_back",
        dropping_the_owner_unclosed_gives_signals_back,
    ),
    (
        "adding_again_takes_the_signal_back",
        adding_again_takes_the_signal_back,
    ),
    (
        "a_forked_child_handles_signals_with_a_loop_of_its_own",
        a_forked_child_handles_signals_with_a_loop_of_its_own,
    ),
    (
        "a_refused_signal_leaves_no_claim",
        a_refused_signal_leaves_no_claim,
    ),
];

/// The child's exit status, or `None` (after killing it) if it has not
/// ended within `limit`.
fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    util::wait_until(Instant::now() + limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let name = &args[i + 1];
        let check = CHECKS.iter().find(|c| c.0 == name).expect("known check");
        (check.1)();
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--list") {
        for c in CHECKS {
            println!("{}: test", c.0);
        }
        return ExitCode::SUCCESS;
    }
    // Name filters, as libtest takes them; options and their values are skipped.
    let mut filters: Vec<&String> = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        if [
            "--test-threads",
            "--skip",
            "--format",
            "--logfile",
            "--color",
            "-Z",
        ]
        .contains(&a.as_str())
        {
            rest.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut failed = 0;
    let mut ran = 0;
    for (name, _) in CHECKS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let mut child = Command::new(&exe)
            .args(["--child", name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_with_deadline(&mut child, Duration::from_secs(20));
        if status.is_some_and(|st| st.success()) {
            println!("test {name} ... ok");
        } else {
            failed += 1;
            let out = child.wait_with_output().unwrap();
            println!(
                "test {name} ... FAILED ({status:?})\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
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
