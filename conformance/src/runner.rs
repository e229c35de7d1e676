//! Running one check on one adapter: applicability, a fresh loop on the
//! right thread, the watchdog, the tripwire, teardown, and the mapping of
//! divergences to expected failures.

use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::sync::{Once, mpsc};
use std::time::Duration;

use crate::env::{Env, Skip};
use crate::registry::{Check, Group, Level, Mode};
use crate::spec::AdapterSpec;

/// Marks a child process that runs one isolated check: `<adapter>\t<ID>`.
pub(crate) const CHILD_ENV: &str = "ONELOOP_CONFORMANCE_CHILD";

/// Starts the line on which an isolated child reports its outcome.
const OUTCOME_MARK: &str = "oneloop-conformance-outcome\t";

/// How the test binary runs checks, so that an isolated check can re-run
/// itself, alone, in a child process of the same binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrontEnd {
    /// [`Harness`](crate::Harness): the child's `main` runs the check on its
    /// main thread.
    Harness,
    /// [`suite!`](crate::suite): the child is libtest, filtered to the one test.
    Suite,
}

/// The outcome of one check on one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guarantee holds.
    Pass,
    /// The guarantee does not hold (or the check hung); the message says how.
    Fail(String),
    /// The check does not apply to this adapter (a capability it does not
    /// declare, a mode it does not have), decided before the check runs; the
    /// reason says why.
    Ignored(String),
    /// The check applies but could not run here, or could run only in part
    /// (no pseudo-terminal, no `/proc`, a kernel that took another path):
    /// decided by the check at run time with [`Env::skip`](crate::Env::skip)
    /// or [`Env::skip_part`](crate::Env::skip_part). Not a pass: the
    /// guarantee was not (fully) verified; the reason says what was left out
    /// and why.
    Skipped(String),
    /// A listed divergence failed as expected; the divergence's reason.
    ExpectedFailure(String),
    /// A listed divergence passed: the divergence is no longer needed.
    UnexpectedPass(String),
}

impl Outcome {
    /// The short tag used in results files and reports.
    pub fn tag(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Ignored(_) => "ignored",
            Outcome::Skipped(_) => "skipped",
            Outcome::ExpectedFailure(_) => "xfail",
            Outcome::UnexpectedPass(_) => "xpass",
        }
    }

    /// The message, reason or divergence note ("" for a pass).
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Fail(s)
            | Outcome::Ignored(s)
            | Outcome::Skipped(s)
            | Outcome::ExpectedFailure(s)
            | Outcome::UnexpectedPass(s) => s,
        }
    }

    /// Whether the outcome fails a test run (a failure, or a divergence that
    /// is no longer needed).
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Fail(_) | Outcome::UnexpectedPass(_))
    }

    /// Rebuild an outcome from its [`tag`](Outcome::tag) and detail.
    pub fn from_tag(tag: &str, detail: String) -> Option<Outcome> {
        Some(match tag {
            "pass" => Outcome::Pass,
            "fail" => Outcome::Fail(detail),
            "ignored" => Outcome::Ignored(detail),
            "skipped" => Outcome::Skipped(detail),
            "xfail" => Outcome::ExpectedFailure(detail),
            "xpass" => Outcome::UnexpectedPass(detail),
            _ => return None,
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => f.write_str("pass"),
            other => write!(f, "{}: {}", other.tag(), other.detail()),
        }
    }
}

/// Limits of one check run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long one `run_*` helper of [`Env`] may take (an in-loop deadline
    /// timer plus a thread that stops the loop).
    pub deadline: Duration,
    /// How long the whole check may take before its thread is abandoned and
    /// the check reported as hung (a loop that cannot even be stopped).
    pub hang_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            deadline: Duration::from_secs(5),
            hang_timeout: Duration::from_secs(30),
        }
    }
}

/// Why `check` does not apply to `spec`, decided before any loop is built.
pub fn not_applicable(spec: &AdapterSpec, check: &Check) -> Option<String> {
    let missing = check.caps.missing_from(spec.caps);
    if !missing.is_empty() {
        return Some(format!(
            "needs the {missing} capability, which {} does not declare",
            spec.name
        ));
    }
    if !check.absent.is_empty() && spec.caps.contains(check.absent) {
        return Some(format!(
            "{} declares {}, so the capability's own checks run instead",
            spec.name, check.absent
        ));
    }
    None
}

/// Run check `id` on a fresh loop of `spec`, with default [`Options`].
///
/// For a `main_thread` spec this must be called on the main thread.
///
/// # Panics
/// If no check has this ID.
///
/// ```
/// use oneloop_conformance::{native_spec, run_check, Outcome};
///
/// assert_eq!(run_check(&native_spec(), "CB-01"), Outcome::Pass);
/// ```
pub fn run_check(spec: &AdapterSpec, id: &str) -> Outcome {
    let check = crate::registry::check(id).unwrap_or_else(|| panic!("no check with ID {id}"));
    run_check_with(spec, check, Options::default())
}

/// Run `check` on a fresh loop of `spec`.
///
/// A check of an isolated group (`SP`, `SG`) runs in a child process of the
/// running test binary, which must therefore be a [`Harness`](crate::Harness)
/// or [`suite!`](crate::suite) test of the same spec.
pub fn run_check_with(spec: &AdapterSpec, check: &'static Check, opts: Options) -> Outcome {
    run_check_from(spec, check, opts, FrontEnd::Harness)
}

/// [`run_check_with`] from a known front end.
pub(crate) fn run_check_from(
    spec: &AdapterSpec,
    check: &'static Check,
    opts: Options,
    front: FrontEnd,
) -> Outcome {
    if let Some(reason) = not_applicable(spec, check) {
        return Outcome::Ignored(reason);
    }
    let divergence = spec.divergence(check.id);
    if let (Some(d), Level::Must) = (divergence, check.level) {
        return Outcome::Fail(format!(
            "{} is a MUST and can never be waived (listed as a divergence: {})",
            check.id, d.reason
        ));
    }
    let raw = if check.group.is_isolated() {
        run_isolated(spec, check, opts, front)
    } else if spec.main_thread {
        execute_here(spec, check, opts)
    } else {
        execute_on_thread(spec, check, opts)
    };
    match (raw, divergence) {
        (Outcome::Fail(msg), Some(d)) => {
            Outcome::ExpectedFailure(format!("{} (failed as expected: {msg})", d.reason))
        }
        (Outcome::Pass, Some(d)) => Outcome::UnexpectedPass(format!(
            "listed as a divergence ({}) but it passes: divergence no longer needed, remove it",
            d.reason
        )),
        (raw, _) => raw,
    }
}

/// Whether the check installs signal handlers on an owned loop, which only
/// the main thread may do.
pub(crate) fn needs_main_thread(check: &Check) -> bool {
    check.group == Group::Signals && check.mode == Mode::Owned
}

/// The isolated check this process is a child for, if it is one.
pub(crate) fn child_request() -> Option<(String, String)> {
    let v = std::env::var(CHILD_ENV).ok()?;
    let (adapter, id) = v.split_once('\t')?;
    Some((adapter.to_owned(), id.to_owned()))
}

/// In an isolated child: run the check here and print the outcome line the
/// parent reads.
pub(crate) fn run_as_child(spec: &AdapterSpec, check: &'static Check, opts: Options) {
    let on_main = std::thread::current().name() == Some("main");
    let outcome = if needs_main_thread(check) && !on_main {
        Outcome::Ignored(
            "signal handlers can only be installed on the main thread, which libtest's #[test] \
             threads are not: run the suite with oneloop_conformance::Harness (harness = false)"
                .into(),
        )
    } else {
        execute_here(spec, check, opts)
    };
    println!(
        "{OUTCOME_MARK}{}\t{}",
        outcome.tag(),
        outcome.detail().replace('\n', " | ")
    );
}

/// Runs the check alone in a child process of this test binary, under the
/// hang timeout, and reads its outcome line.
fn run_isolated(
    spec: &AdapterSpec,
    check: &'static Check,
    opts: Options,
    front: FrontEnd,
) -> Outcome {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return Outcome::Fail(format!(
                "cannot find the test binary to isolate {}: {e}",
                check.id
            ));
        }
    };
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, format!("{}\t{}", spec.name, check.id))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if front == FrontEnd::Suite {
        let test = format!(
            "{}::{}",
            check.id.to_ascii_lowercase().replace('-', "_"),
            check.name
        );
        cmd.args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"]);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Fail(format!(
                "cannot start the child process for {}: {e}",
                check.id
            ));
        }
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    std::thread::spawn(move || {
        // stderr on its own thread: a chatty child cannot fill one pipe
        // while this one waits on the other.
        let stderr = std::thread::spawn(move || {
            let mut stderr = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut stderr);
            }
            stderr
        });
        let mut stdout = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut stdout);
        }
        let stderr = stderr.join().unwrap_or_default();
        let status = child.wait();
        let _ = tx.send((status, stdout, stderr));
    });
    let (status, stdout, stderr) = match rx.recv_timeout(opts.hang_timeout) {
        Ok(r) => r,
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return Outcome::Fail(format!(
                "{} hung in its child process (pid {pid}) for {:?}; the child was killed",
                check.id, opts.hang_timeout
            ));
        }
    };
    let reported = stdout.lines().find_map(|l| {
        // libtest may have printed the test's name on the same line.
        let rest = &l[l.find(OUTCOME_MARK)? + OUTCOME_MARK.len()..];
        let (tag, detail) = rest.split_once('\t').unwrap_or((rest, ""));
        Outcome::from_tag(tag, detail.to_owned())
    });
    match reported {
        Some(outcome) => outcome,
        None => {
            let tail: String = {
                let lines: Vec<&str> = stderr.lines().collect();
                lines[lines.len().saturating_sub(8)..].join(" | ")
            };
            Outcome::Fail(format!(
                "{}: the child process ended ({}) without reporting an outcome; stderr: {tail}",
                check.id,
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            ))
        }
    }
}

fn execute_on_thread(spec: &AdapterSpec, check: &'static Check, opts: Options) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let spec2 = spec.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("conformance {}", check.id))
        .spawn(move || {
            let _ = tx.send(execute_here(&spec2, check, opts));
        });
    if let Err(e) = spawned {
        return Outcome::Fail(format!("cannot start the check's thread: {e}"));
    }
    match rx.recv_timeout(opts.hang_timeout) {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Fail(format!(
            "{} hung: no result after {:?}; its thread was abandoned (the loop could not even be stopped)",
            check.id, opts.hang_timeout
        )),
    }
}

/// Runs the check on this thread. For a main-thread spec, a watchdog thread
/// ends the process if the check hangs, naming the check.
fn execute_here(spec: &AdapterSpec, check: &'static Check, opts: Options) -> Outcome {
    let _process_watchdog = spec.main_thread.then(|| {
        let (tx, rx) = mpsc::channel::<()>();
        let id = check.id;
        let name = spec.name;
        let limit = opts.hang_timeout;
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!(
                    "oneloop-conformance: {name}::{id} hung for {limit:?} on the main thread; exiting"
                );
                std::process::exit(101);
            }
        });
        tx
    });
    install_panic_hook();
    CAPTURE.with(|c| *c.borrow_mut() = Some(None));
    let outcome = execute_inner(spec, check, opts);
    CAPTURE.with(|c| *c.borrow_mut() = None);
    outcome
}

fn execute_inner(spec: &AdapterSpec, check: &'static Check, opts: Options) -> Outcome {
    let setup = match panic::catch_unwind(spec.setup) {
        Ok(Ok(setup)) => setup,
        Ok(Err(e)) => return Outcome::Fail(format!("the adapter's setup failed: {e}")),
        Err(_) => return Outcome::Fail(format!("the adapter's setup panicked: {}", take_panic())),
    };
    let attached = setup.lp.is_attached();
    match (check.mode, attached) {
        (Mode::Owned, true) if check.group == Group::Signals => {
            return Outcome::Ignored(
                "needs an owned loop: an attached loop's host owns signal handling, and SG-07 checks that it says so"
                    .into(),
            );
        }
        (Mode::Owned, true) => {
            return Outcome::Ignored(
                "needs an owned loop (run_*, stop); an attached loop is run by its host, and EM-01 checks that instead"
                    .into(),
            );
        }
        (Mode::Attached, false) => {
            return Outcome::Ignored("applies to loops attached to a host only".into());
        }
        _ => {}
    }
    if attached && setup.host.is_none() {
        return Outcome::Fail("an attached setup must give a HostDriver to drive it".into());
    }
    let env = Env::new(check.id, spec, setup, opts.deadline);
    let result = panic::catch_unwind(AssertUnwindSafe(|| (check.run)(&env)));
    // `Env::skip` unwinds with a `Skip` payload (without the panic hook).
    let (ended, skipped) = match result {
        Err(payload) => match payload.downcast::<Skip>() {
            Ok(skip) => (Ok(()), Some(skip.0)),
            Err(_) => (Err(()), None),
        },
        Ok(()) => (Ok(()), None),
    };
    let failure = match ended {
        Err(()) => Some(take_panic()),
        Ok(()) => {
            let reports = env.take_reports();
            (!reports.is_empty()).then(|| {
                format!(
                    "unexpected exception-handler report(s): {}",
                    reports.join(" | ")
                )
            })
        }
    };
    let parts = env.take_skipped_parts();
    let teardown = panic::catch_unwind(AssertUnwindSafe(|| env.teardown()));
    let late_reports = env.take_reports();
    drop(env);
    if let Some(msg) = failure {
        return Outcome::Fail(format!("{}: {msg}", check.id));
    }
    match teardown {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Outcome::Fail(format!("{}: teardown: close failed: {e}", check.id)),
        Err(_) => {
            return Outcome::Fail(format!("{}: teardown panicked: {}", check.id, take_panic()));
        }
    }
    if !late_reports.is_empty() {
        return Outcome::Fail(format!(
            "{}: unexpected exception-handler report(s) at close: {}",
            check.id,
            late_reports.join(" | ")
        ));
    }
    match (skipped, parts.is_empty()) {
        (Some(reason), _) => Outcome::Skipped(reason),
        (None, false) => Outcome::Skipped(format!(
            "{}: only partly checked (the rest holds): {}",
            check.id,
            parts.join("; ")
        )),
        (None, true) => Outcome::Pass,
    }
}

thread_local! {
    /// `Some` while a check runs on this thread: its panics are recorded here
    /// instead of printed, and become the failure message.
    static CAPTURE: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

fn take_panic() -> String {
    CAPTURE
        .with(|c| c.borrow_mut().as_mut().and_then(Option::take))
        .unwrap_or_else(|| "panicked".into())
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let captured = CAPTURE
                .try_with(|c| {
                    let mut c = c.borrow_mut();
                    match c.as_mut() {
                        Some(slot) => {
                            let msg = payload_text(info.payload());
                            let at = info
                                .location()
                                .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                                .unwrap_or_default();
                            // Keep the last: a check may provoke panics on purpose
                            // (ER-01) before the one that fails it.
                            *slot = Some(format!("{msg}{at}"));
                            true
                        }
                        None => false,
                    }
                })
                .unwrap_or(false);
            if !captured {
                previous(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
