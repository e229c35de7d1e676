//! `SG`: signal handlers — handlers run as ordinary loop callbacks, invalid
//! signals are refused, a signal wakes a blocked loop, removal restores the
//! disposition, and loops that cannot take signals say so (PEP 3156
//! §Signal callbacks).
//!
//! Each check runs in a child process of its own (dispositions are
//! process-wide), on that process's main thread, since only the main
//! thread may install handlers.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use oneloop::ErrorKind;
use rustix::process::{Signal, getpid, kill_process};

use crate::Env;

const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;
const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;

fn raise(sig: Signal) {
    kill_process(getpid(), sig).expect("kill(getpid())");
}

/// The standard-signal (1..=31) masks of this process from
/// `/proc/self/status` (caught, ignored, pending), or `None` where the OS
/// does not tell. Real-time signals are left out: the C library uses some
/// of them for its threads (glibc: 32 and 33) and sets them up lazily.
fn masks() -> Option<Vec<(String, u64)>> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let standard = (1u64 << 31) - 1;
    Some(
        s.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| ["SigCgt", "SigIgn", "SigPnd", "ShdPnd"].contains(k))
            .filter_map(|(k, v)| {
                Some((
                    k.to_owned(),
                    u64::from_str_radix(v.trim(), 16).ok()? & standard,
                ))
            })
            .collect(),
    )
}

/// Whether `sig` has a handler installed, from `SigCgt`.
fn caught(sig: i32) -> Option<bool> {
    let m = masks()?;
    let (_, bits) = m.iter().find(|(k, _)| k == "SigCgt")?;
    Some(bits & (1 << (sig - 1)) != 0)
}

/// SG-01 (MUST): when the signal arrives, the handler runs as an ordinary
/// serialized loop callback (never inside the C handler) and may use the
/// loop.
pub fn handler_runs_as_loop_callback(env: &Env) {
    let lp = env.lp();
    let hits = Rc::new(Cell::new(0));
    let (h, l) = (hits.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        h.set(h.get() + 1);
        let h2 = h.clone();
        l.call_soon(move || h2.set(h2.get() + 100))
            .expect("call_soon from a signal handler");
    })
    .unwrap_or_else(|e| panic!("add_signal_handler(SIGUSR1) failed: {e}"));
    raise(Signal::USR1);
    assert_eq!(hits.get(), 0, "the handler ran inside the C signal handler");
    env.run_until_true(|| hits.get() == 101);
    raise(Signal::USR1);
    env.run_until_true(|| hits.get() == 202);
    assert!(lp.remove_signal_handler(SIGUSR1).expect("remove"));
}

/// SG-02 (MUST): invalid numbers (0, −1, > NSIG) fail with
/// `InvalidArgument`, the uncatchable signals (SIGKILL, SIGSTOP) fail, and
/// removing a SIGKILL handler returns false.
pub fn invalid_signals_refused(env: &Env) {
    let lp = env.lp();
    for sig in [0, -1, 65, 1000] {
        let e = lp
            .add_signal_handler(sig, || {})
            .expect_err("an invalid signal number was accepted");
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidArgument,
            "add_signal_handler({sig})"
        );
        let e = lp
            .remove_signal_handler(sig)
            .expect_err("removing an invalid signal number succeeded");
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidArgument,
            "remove_signal_handler({sig})"
        );
    }
    for (name, sig) in [("SIGKILL", SIGKILL), ("SIGSTOP", SIGSTOP)] {
        let e = lp
            .add_signal_handler(sig, || {})
            .expect_err("a handler for an uncatchable signal was accepted");
        assert!(
            matches!(
                e.kind(),
                ErrorKind::InvalidArgument | ErrorKind::Unsupported
            ),
            "{name}: {e}"
        );
    }
    assert!(!lp.remove_signal_handler(SIGKILL).expect("remove SIGKILL"));
}

/// SG-03 (MUST): adding again for the same signal replaces the handler;
/// `remove_signal_handler` returns true, then false.
pub fn second_add_replaces(env: &Env) {
    let lp = env.lp();
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    lp.add_signal_handler(SIGUSR1, move || s.set(s.get() + 1))
        .unwrap_or_else(|e| panic!("add_signal_handler failed: {e}"));
    let s = seen.clone();
    lp.add_signal_handler(SIGUSR1, move || s.set(s.get() + 10))
        .unwrap_or_else(|e| panic!("the second add_signal_handler failed: {e}"));
    raise(Signal::USR1);
    env.run_until_true(|| seen.get() != 0);
    env.run_briefly();
    assert_eq!(seen.get(), 10, "the first handler ran, or both did");
    assert!(
        lp.remove_signal_handler(SIGUSR1).expect("remove"),
        "the first remove says true"
    );
    assert!(
        !lp.remove_signal_handler(SIGUSR1).expect("remove"),
        "the second remove says false"
    );
}

/// SG-04 (MUST): a signal arriving while the loop is blocked in its poll
/// (nothing else to do) wakes the loop.
pub fn signal_wakes_blocked_loop(env: &Env) {
    let lp = env.lp();
    let l = lp.clone();
    let hit = Rc::new(Cell::new(false));
    let h = hit.clone();
    lp.add_signal_handler(SIGUSR2, move || {
        h.set(true);
        l.stop();
    })
    .unwrap_or_else(|e| panic!("add_signal_handler failed: {e}"));
    let pid = getpid();
    let tid = crate::support::current_tid();
    // The loop has nothing to do: it blocks in its poll with no timeout but
    // the suite's deadline. The thread signals from outside once the loop's
    // thread is asleep in that poll.
    let sender = std::thread::spawn(move || {
        let known = super::wait_for_loop_asleep(tid);
        kill_process(pid, Signal::USR2).expect("kill");
        known
    });
    env.run_forever().expect("run_forever");
    if !sender.join().expect("the sender thread") {
        env.skip_part(super::ASLEEP_UNKNOWN);
    }
    assert!(hit.get(), "run_forever ended without the handler");
}

/// SG-05 (SHOULD): removing a handler restores the previous (default)
/// disposition, and a run after a caught signal is not interrupted again.
///
/// Reported skipped ("only partly checked") where `/proc/self/status` is
/// missing: the disposition half cannot be read there.
pub fn remove_restores_default_disposition(env: &Env) {
    let lp = env.lp();
    let before = caught(SIGUSR1);
    let hits = Rc::new(Cell::new(0));
    let h = hits.clone();
    lp.add_signal_handler(SIGUSR1, move || h.set(h.get() + 1))
        .unwrap_or_else(|e| panic!("add_signal_handler failed: {e}"));
    raise(Signal::USR1);
    env.run_until_true(|| hits.get() == 1);
    // A second run after the caught signal: the handler does not run again.
    env.run_for(Duration::from_millis(5));
    assert_eq!(hits.get(), 1, "a caught signal was delivered twice");
    match (before, caught(SIGUSR1)) {
        (Some(b), Some(during)) => {
            assert!(
                during,
                "no handler installed for SIGUSR1 while one is added"
            );
            assert!(lp.remove_signal_handler(SIGUSR1).expect("remove"));
            assert_eq!(
                caught(SIGUSR1),
                Some(b),
                "removal did not restore the disposition"
            );
        }
        _ => {
            assert!(lp.remove_signal_handler(SIGUSR1).expect("remove"));
            env.skip_part(
                "no /proc/self/status on this system: that removal restores the previous \
                 disposition is not checked",
            );
        }
    }
}

/// SG-06 (SHOULD): creating, running and closing a loop that registered no
/// signal handlers leaves the process's signal state unchanged; closing a
/// loop that did restores it.
///
/// Skipped (with the reason) where `/proc/self/status` is missing.
pub fn signal_state_left_unchanged(env: &Env) {
    let Some(before) = masks() else {
        env.skip("no /proc/self/status on this system: the process's signal state cannot be read")
    };
    let other = env.new_setup().expect("a second loop");
    other
        .lp
        .run_until_complete(async {})
        .unwrap_or_else(|e| panic!("a run of the second loop failed: {e}"));
    other.lp.close().expect("close");
    drop(other);
    assert_eq!(
        masks(),
        Some(before.clone()),
        "a loop without handlers changed the signal state"
    );
    env.lp()
        .add_signal_handler(SIGUSR2, || {})
        .unwrap_or_else(|e| panic!("add_signal_handler failed: {e}"));
    env.run_briefly();
    assert_ne!(
        masks(),
        Some(before.clone()),
        "the handler did not show in SigCgt"
    );
    env.lp().close().expect("close");
    assert_eq!(
        masks(),
        Some(before),
        "closing the loop did not restore the signal state"
    );
}

/// SG-07 (MUST): a loop that cannot handle signals — off the main thread,
/// or attached to a host that owns signals — fails `add_signal_handler`
/// with `Unsupported` instead of silently never firing.
pub fn unable_loop_refuses_explicitly(env: &Env) {
    if env.is_attached() {
        let e = env
            .lp()
            .add_signal_handler(SIGUSR1, || {})
            .expect_err("an attached loop accepted a signal handler");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }
    let setup = env.spec().setup;
    let kind = std::thread::spawn(move || {
        let s = setup()
            .unwrap_or_else(|e| panic!("the adapter's setup failed off the main thread: {e}"));
        let kind =
            s.lp.add_signal_handler(SIGUSR1, || {})
                .err()
                .map(|e| e.kind());
        let _ = s.lp.close();
        kind
    })
    .join()
    .unwrap_or_else(|_| panic!("the off-main-thread loop panicked"));
    assert_eq!(
        kind,
        Some(ErrorKind::Unsupported),
        "add_signal_handler off the main thread must answer Unsupported"
    );
}
