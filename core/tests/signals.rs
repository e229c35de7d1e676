//! Signals on the default loop: SG-01…SG-07, each check in its own child
//! process (dispositions are process-wide; GUARANTEES §2 point 7).
//!
//! `harness = false`: libtest runs tests on spawned threads, and signal
//! handlers may only be added on the main thread. `main` re-executes this
//! binary once per check with `--child NAME`; the child runs the check on
//! its main thread; the parent checks how the child ended, with a watchdog.

use std::cell::Cell;
use std::process::{Command, ExitCode, ExitStatus};
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, Loop};
use rustix::process::{Signal, getpid, kill_process};

const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;
const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;

fn raise(sig: Signal) {
    kill_process(getpid(), sig).unwrap();
}

/// Run `lp` until `done`, failing (not hanging) after 10 s.
fn run_until(lp: &Loop, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    lp.run_until_complete(async {
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            oneloop::sleep(Duration::from_millis(1)).await.unwrap();
        }
    })
    .unwrap();
}

fn sg01_a_handler_runs_as_a_callback_and_may_use_the_loop() {
    let lp = Loop::new().unwrap();
    let hits = Rc::new(Cell::new(0));
    let (h, l) = (hits.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        h.set(h.get() + 1);
        // A handler is an ordinary callback: the whole loop API is there.
        let h2 = h.clone();
        l.call_soon(move || h2.set(h2.get() + 100)).unwrap();
    })
    .unwrap();
    raise(Signal::USR1);
    assert_eq!(hits.get(), 0, "not run inside the C handler");
    run_until(&lp, || hits.get() == 101);
    raise(Signal::USR1);
    run_until(&lp, || hits.get() == 202);
}

fn sg02_invalid_and_uncatchable_signals_are_refused() {
    let lp = Loop::new().unwrap();
    for sig in [0, -1, 65, 1000] {
        let e = lp.add_signal_handler(sig, || {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{sig}");
        let e = lp.remove_signal_handler(sig).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{sig}");
    }
    for sig in [SIGKILL, SIGSTOP] {
        let e = lp.add_signal_handler(sig, || {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{sig}");
    }
    assert!(!lp.remove_signal_handler(SIGKILL).unwrap());
}

fn sg03_adding_again_replaces_and_remove_says_true_then_false() {
    let lp = Loop::new().unwrap();
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    lp.add_signal_handler(SIGUSR1, move || s.set(1)).unwrap();
    let s = seen.clone();
    lp.add_signal_handler(SIGUSR1, move || s.set(2)).unwrap();
    raise(Signal::USR1);
    run_until(&lp, || seen.get() != 0);
    assert_eq!(seen.get(), 2, "the second handler replaced the first");
    assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
    assert!(!lp.remove_signal_handler(SIGUSR1).unwrap());
}

fn sg04_a_signal_wakes_a_loop_blocked_in_its_poll() {
    let lp = Loop::new().unwrap();
    let l = lp.clone();
    lp.add_signal_handler(SIGUSR2, move || l.stop()).unwrap();
    let pid = getpid();
    let start = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        kill_process(pid, Signal::USR2).unwrap();
    });
    // Nothing else to do: the loop blocks in its poll with no timeout.
    // (The watchdog is the parent's kill after its limit.)
    lp.run_forever().unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "woken by the signal, not before it was sent"
    );
}

/// SG-05: after removal SIGUSR1 has its default action again: the child
/// dies of it, which the parent checks.
fn sg05_removing_restores_the_default_disposition() {
    let lp = Loop::new().unwrap();
    let hit = Rc::new(Cell::new(false));
    let h = hit.clone();
    lp.add_signal_handler(SIGUSR1, move || h.set(true)).unwrap();
    raise(Signal::USR1);
    run_until(&lp, || hit.get());
    assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
    raise(Signal::USR1); // default action: terminate
    std::thread::sleep(Duration::from_secs(5));
    eprintln!("still alive: the default disposition was not restored");
}

/// SG-06: closing the loop gives every signal its disposition back.
fn sg06_closing_the_loop_restores_dispositions() {
    let lp = Loop::new().unwrap();
    lp.add_signal_handler(SIGUSR2, || {}).unwrap();
    lp.close().unwrap();
    // A new loop may take signals over once the old one is closed.
    let lp2 = Loop::new().unwrap();
    lp2.add_signal_handler(SIGUSR1, || {}).unwrap();
    raise(Signal::USR2); // default action: terminate
    std::thread::sleep(Duration::from_secs(5));
    eprintln!("still alive: closing did not restore SIGUSR2");
}

fn sg06_dropping_the_loop_unclosed_restores_dispositions() {
    let lp = Loop::new().unwrap();
    lp.add_signal_handler(SIGUSR2, || {}).unwrap();
    drop(lp);
    // A new loop may take signals over once the old one is gone.
    let lp2 = Loop::new().unwrap();
    lp2.add_signal_handler(SIGUSR1, || {}).unwrap();
    raise(Signal::USR2); // default action: terminate
    std::thread::sleep(Duration::from_secs(5));
    eprintln!("still alive: dropping did not restore SIGUSR2");
}

fn sg07_off_the_main_thread_is_unsupported() {
    let kind = std::thread::spawn(|| {
        let lp = Loop::new().unwrap();
        lp.add_signal_handler(SIGUSR1, || {}).unwrap_err().kind()
    })
    .join()
    .unwrap();
    assert_eq!(kind, ErrorKind::Unsupported);
}

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
}

/// How a check's child must end.
#[derive(Clone, Copy)]
enum Expect {
    Success,
    KilledBy(i32),
    /// Start the child with SIGHUP, SIGINT and SIGQUIT ignored (as a
    /// background job or `nohup` would), then expect success.
    SuccessWhileIgnoring,
}

/// The standard signals (1–31) ignored by this process or a child, from
/// `/proc/<pid>/status`.
fn ignored_standard_signals(status: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with("SigIgn:"))
        .expect("a SigIgn line");
    let mask = u64::from_str_radix(line["SigIgn:".len()..].trim(), 16).unwrap();
    mask & ((1 << 31) - 1)
}

fn sp04_children_start_with_default_dispositions() {
    // The runner started this process with SIGHUP, SIGINT and SIGQUIT
    // ignored: make sure, so the check cannot pass vacuously.
    let own = ignored_standard_signals(&std::fs::read_to_string("/proc/self/status").unwrap());
    assert_eq!(
        own & 0b111,
        0b111,
        "the runner did not ignore SIGHUP/SIGINT/SIGQUIT (SigIgn {own:#x})"
    );
    struct Out(Rc<std::cell::RefCell<Vec<u8>>>);
    impl oneloop::SubprocessProtocol for Out {
        fn pipe_data_received(&mut self, _fd: i32, data: &[u8]) {
            self.0.borrow_mut().extend_from_slice(data);
        }
    }
    let out = Rc::new(std::cell::RefCell::new(Vec::new()));
    let lp = Loop::new().unwrap();
    let o = out.clone();
    let t = lp
        .run_until_complete(lp.subprocess_shell(
            move || Out(o),
            "cat /proc/self/status",
            oneloop::SubprocessStdio::new(),
        ))
        .unwrap()
        .unwrap();
    assert_eq!(lp.run_until_complete(t.wait()).unwrap().unwrap(), 0);
    run_until(&lp, || out.borrow().windows(7).any(|w| w == b"SigIgn:"));
    let child = ignored_standard_signals(&String::from_utf8_lossy(&out.borrow()));
    assert_eq!(
        child, 0,
        "the child inherited ignored signals (SigIgn {child:#x}) (SP-04)"
    );
}

type Check = (&'static str, fn(), Expect);

const CHECKS: &[Check] = &[
    (
        "sg01_a_handler_runs_as_a_callback_and_may_use_the_loop",
        sg01_a_handler_runs_as_a_callback_and_may_use_the_loop,
        Expect::Success,
    ),
    (
        "sg02_invalid_and_uncatchable_signals_are_refused",
        sg02_invalid_and_uncatchable_signals_are_refused,
        Expect::Success,
    ),
    (
        "sg03_adding_again_replaces_and_remove_says_true_then_false",
        sg03_adding_again_replaces_and_remove_says_true_then_false,
        Expect::Success,
    ),
    (
        "sg04_a_signal_wakes_a_loop_blocked_in_its_poll",
        sg04_a_signal_wakes_a_loop_blocked_in_its_poll,
        Expect::Success,
    ),
    (
        "sg05_removing_restores_the_default_disposition",
        sg05_removing_restores_the_default_disposition,
        Expect::KilledBy(SIGUSR1),
    ),
    (
        "sg06_closing_the_loop_restores_dispositions",
        sg06_closing_the_loop_restores_dispositions,
        Expect::KilledBy(SIGUSR2),
    ),
    (
        "sg06_dropping_the_loop_unclosed_restores_dispositions",
        sg06_dropping_the_loop_unclosed_restores_dispositions,
        Expect::KilledBy(SIGUSR2),
    ),
    (
        "sg07_off_the_main_thread_is_unsupported",
        sg07_off_the_main_thread_is_unsupported,
        Expect::Success,
    ),
    (
        "one_loop_owns_signals_at_a_time",
        one_loop_owns_signals_at_a_time,
        Expect::Success,
    ),
    (
        "sp04_children_start_with_default_dispositions",
        sp04_children_start_with_default_dispositions,
        Expect::SuccessWhileIgnoring,
    ),
];

fn wait_with_watchdog(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
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
    for (name, _, expect) in CHECKS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let mut command = match expect {
            // A shell sets the dispositions the child starts with, no
            // `unsafe` needed; `exec` keeps the pid.
            Expect::SuccessWhileIgnoring => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c")
                    .arg("trap '' HUP INT QUIT; exec \"$0\" --child \"$1\"")
                    .arg(&exe)
                    .arg(name);
                c
            }
            _ => {
                let mut c = Command::new(&exe);
                c.args(["--child", name]);
                c
            }
        };
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_with_watchdog(&mut child, Duration::from_secs(20));
        let ok = match (status, expect) {
            (Some(st), Expect::Success | Expect::SuccessWhileIgnoring) => st.success(),
            (Some(st), Expect::KilledBy(sig)) => st.signal() == Some(*sig),
            (None, _) => false,
        };
        if ok {
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
