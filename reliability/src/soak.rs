//! The soak: mixed load on one loop for a while, with faults and bad input
//! on the way, then everything counted back.
//!
//! On one loop of a mode, for the given time, all at once:
//! - **echo**: a stream server (`start_server`, echoing with
//!   `futures::io::copy`) and [`CLIENTS`] clients, each opening connection
//!   after connection and pushing a random amount through it, checking
//!   every byte that comes back; one connection in 20 is aborted mid-way
//!   (a fault: only a prefix is required of it);
//! - **timers**: tasks sleeping random short times, checking they never
//!   wake early, and batches of timers half of which are cancelled (a
//!   cancelled one firing fails the soak);
//! - **threadsafe calls**: two threads posting `call_soon_threadsafe` in
//!   bursts, each call numbered, checked in order and counted;
//! - **subprocesses**: `cat` children, one after another, each given random
//!   bytes on stdin that must come back on stdout, exit code 0;
//! - **signals** (owned loops on the main thread; an attached loop's host
//!   owns signals): a thread sending SIGUSR1 to the process, one at a time,
//!   each of which the loop's handler must see;
//! - in the foreground, the fuzz scenarios with random seeds ([`crate::fuzz`]:
//!   resets, aborts, early closes, kills, oversized datagrams) and the
//!   bad-input checks that do not measure CPU ([`crate::bad_input`]).
//!
//! At the end the load stops, every count must balance (bytes lost 0,
//! calls posted = calls run, signals sent = seen, no early timer), nothing
//! may have reached the exception handler, and the fds must be back to
//! where they were.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use oneloop::{Loop, SubprocessProtocol, SubprocessStdio, SubprocessTransport};
use oneloop_conformance::{AdapterSpec, Env};

use crate::fuzz::{self, Tally, first_mismatch, pattern};
use crate::{bad_input, modes, probe};

/// Echo clients at once.
pub const CLIENTS: usize = 6;

/// What one soak did and found, for the report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The mode's name.
    pub mode: &'static str,
    /// How long the load ran.
    pub elapsed: Duration,
    /// Echo connections opened and closed.
    pub echo_connections: u64,
    /// Echo bytes sent (and checked on their way back).
    pub echo_bytes: u64,
    /// Echo connections aborted on purpose.
    pub echo_aborts: u64,
    /// Echo bytes missing from connections that ended cleanly (must be 0).
    pub echo_lost: u64,
    /// Timers that fired (sleeps and callbacks).
    pub timers_fired: u64,
    /// Timers cancelled.
    pub timers_cancelled: u64,
    /// Timers that fired before their deadline (must be 0).
    pub timers_early: u64,
    /// The latest a sleep woke after its deadline.
    pub timer_max_late: Duration,
    /// `call_soon_threadsafe` calls posted.
    pub threadsafe_posted: u64,
    /// Of those, run (must equal posted).
    pub threadsafe_run: u64,
    /// Calls that ran out of their thread's order (must be 0).
    pub threadsafe_out_of_order: u64,
    /// Children run.
    pub subprocesses: u64,
    /// Bytes through children.
    pub subprocess_bytes: u64,
    /// Signals sent, `None` where the loop cannot handle signals.
    pub signals_sent: Option<u64>,
    /// Signals the handler saw.
    pub signals_seen: u64,
    /// The fuzz runs in the foreground.
    pub fuzz: Tally,
    /// Bad inputs tried.
    pub bad_inputs: u64,
    /// fds before and after.
    pub fds: (usize, usize),
    /// Threads (pool threads aside) before and after.
    pub threads: (usize, usize),
    /// Resident memory before and after, bytes.
    pub rss: (u64, u64),
    /// What went wrong; empty when the soak held.
    pub problems: Vec<String>,
}

impl Report {
    /// Bytes lost in all: echo, children and the fuzz runs (must be 0).
    pub fn bytes_lost(&self) -> u64 {
        self.echo_lost + self.fuzz.bytes_lost
    }

    /// Faults injected in all.
    pub fn faults(&self) -> u64 {
        self.echo_aborts + self.fuzz.faults_injected
    }
}

/// State shared by the load's tasks on the loop.
struct Load {
    lp: Loop,
    stop: Cell<bool>,
    /// Background tasks still running.
    running: Cell<u32>,
    report: RefCell<Report>,
    rng: RefCell<fastrand::Rng>,
}

impl Load {
    fn problem(&self, p: String) {
        let mut r = self.report.borrow_mut();
        if r.problems.len() < 20 {
            r.problems.push(p);
        }
    }
}

/// Keeps `running` up to date for one background task.
struct Running(Rc<Load>);
impl Running {
    fn new(load: &Rc<Load>) -> Running {
        load.running.set(load.running.get() + 1);
        Running(load.clone())
    }
}
impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.set(self.0.running.get() - 1);
    }
}

// ---- echo ----

async fn echo_client(load: Rc<Load>, addr: std::net::SocketAddr) {
    let _running = Running::new(&load);
    let lp = load.lp.clone();
    while !load.stop.get() {
        let (id, total, abort_at, chunks) = {
            let mut rng = load.rng.borrow_mut();
            let total = rng.u64(1..=512 * 1024);
            let abort_at = (rng.u8(0..20) == 0).then(|| rng.u64(0..total));
            let chunks: Vec<usize> = (0..8).map(|_| rng.usize(1..=64 * 1024)).collect();
            (rng.u64(..), total, abort_at, chunks)
        };
        let stream = match lp.open_stream(addr).await {
            Ok(s) => s,
            Err(e) => {
                load.problem(format!("echo: connecting failed: {e}"));
                return;
            }
        };
        let transport = stream.transport().clone();
        let (mut reader, mut writer) = stream.into_split();
        let writing = async {
            let mut sent = 0u64;
            let mut k = 0;
            while sent < total {
                if abort_at.is_some_and(|at| sent >= at) {
                    transport.abort();
                    return sent;
                }
                let len = (chunks[k % chunks.len()] as u64).min(total - sent) as usize;
                k += 1;
                match writer.write_all(&pattern(id, sent, len)).await {
                    Ok(()) => sent += len as u64,
                    Err(_) => return sent,
                }
            }
            let _ = writer.close().await;
            sent
        };
        let reading = async {
            let mut buf = vec![0u8; 64 * 1024];
            let mut back = 0u64;
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => return (back, None),
                    Ok(n) => {
                        if let Some(at) = first_mismatch(id, back, &buf[..n]) {
                            return (back, Some(format!("echo byte {} wrong", back + at as u64)));
                        }
                        back += n as u64;
                    }
                    Err(e) => return (back, Some(e.to_string())),
                }
            }
        };
        let (sent, (back, error)) = futures::join!(writing, reading);
        let mut r = load.report.borrow_mut();
        r.echo_connections += 1;
        r.echo_bytes += sent;
        if abort_at.is_some() {
            r.echo_aborts += 1;
            if back > sent {
                drop(r);
                load.problem(format!("echo: {back} bytes back of {sent} sent"));
            }
        } else if back != sent || error.is_some() {
            r.echo_lost += sent.saturating_sub(back);
            drop(r);
            load.problem(format!(
                "echo: a clean connection returned {back} of {sent} bytes ({error:?})"
            ));
        }
    }
}

// ---- timers ----

async fn timer_load(load: Rc<Load>) {
    let _running = Running::new(&load);
    let lp = load.lp.clone();
    while !load.stop.get() {
        let d = Duration::from_micros(load.rng.borrow_mut().u64(0..=5_000));
        let start = lp.time();
        if oneloop::sleep(d).await.is_err() {
            return;
        }
        let woke = lp.time();
        {
            let mut r = load.report.borrow_mut();
            r.timers_fired += 1;
            if woke < start + d {
                r.timers_early += 1;
            } else {
                r.timer_max_late = r.timer_max_late.max(woke - (start + d));
            }
        }
        // A batch of callbacks, half cancelled at once.
        let fired = Rc::new(Cell::new(0u64));
        let mut handles = Vec::new();
        for i in 0..16 {
            let when = lp.time() + Duration::from_micros(load.rng.borrow_mut().u64(0..=3_000));
            let cancel = i % 2 == 1;
            let f = fired.clone();
            let load2 = load.clone();
            let h = lp.call_at(when, move || {
                if cancel {
                    load2.problem("a cancelled timer fired".into());
                }
                f.set(f.get() + 1);
                if load2.lp.time() < when {
                    load2.report.borrow_mut().timers_early += 1;
                }
            });
            match h {
                Ok(h) if cancel => handles.push(h),
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let cancelled = handles.len() as u64;
        for h in handles {
            h.cancel();
        }
        if oneloop::sleep(Duration::from_millis(4)).await.is_err() {
            return;
        }
        let mut r = load.report.borrow_mut();
        r.timers_cancelled += cancelled;
        r.timers_fired += fired.get();
    }
}

// ---- threadsafe calls ----

struct Poster {
    stop: Arc<AtomicBool>,
    posted: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

thread_local! {
    /// The soak's load, for the threadsafe calls (which are `Send` and so
    /// cannot carry it) to find on the loop's thread.
    static LOAD: RefCell<Option<Rc<Load>>> = const { RefCell::new(None) };
    /// The next number expected from each poster thread.
    static NEXT: RefCell<[u64; 2]> = const { RefCell::new([0; 2]) };
}

fn start_poster(load: &Rc<Load>, which: usize) -> Poster {
    let remote = load.lp.remote();
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    LOAD.with(|l| *l.borrow_mut() = Some(load.clone()));
    NEXT.with(|n| n.borrow_mut()[which] = 0);
    let thread = {
        let (stop, posted) = (stop.clone(), posted.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Acquire) {
                for _ in 0..64 {
                    let n = seq;
                    let r = remote.call_soon_threadsafe(move || {
                        LOAD.with(|l| {
                            let l = l.borrow();
                            let Some(load) = l.as_ref() else { return };
                            let in_order = NEXT.with(|next| {
                                let mut next = next.borrow_mut();
                                let ok = next[which] == n;
                                next[which] = n + 1;
                                ok
                            });
                            let mut r = load.report.borrow_mut();
                            r.threadsafe_run += 1;
                            if !in_order {
                                r.threadsafe_out_of_order += 1;
                            }
                        });
                    });
                    if r.is_err() {
                        return;
                    }
                    seq += 1;
                    posted.store(seq, Ordering::Release);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    Poster {
        stop,
        posted,
        thread,
    }
}

// ---- subprocesses ----

struct Collect(Rc<RefCell<Vec<u8>>>);
impl SubprocessProtocol for Collect {
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        if fd == 1 {
            self.0.borrow_mut().extend_from_slice(data);
        }
    }
}

async fn child_load(load: Rc<Load>) {
    let _running = Running::new(&load);
    let lp = load.lp.clone();
    while !load.stop.get() {
        let (id, len) = {
            let mut rng = load.rng.borrow_mut();
            (rng.u64(..), rng.usize(0..=64 * 1024))
        };
        let out = Rc::new(RefCell::new(Vec::new()));
        let o = out.clone();
        let child: SubprocessTransport = match lp
            .subprocess_exec(
                move || Collect(o),
                std::process::Command::new("cat"),
                SubprocessStdio::new(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                load.problem(format!("spawning cat failed: {e}"));
                return;
            }
        };
        let data = pattern(id, 0, len);
        if let Some(stdin) = child.pipe_transport(0) {
            if let Err(e) = stdin.write(&data) {
                load.problem(format!("cat's stdin: {e}"));
            }
            stdin.close();
        }
        let code = child.wait().await;
        // Its stdout may still be draining after the exit (SP-07).
        while child
            .pipe_transport(1)
            .is_some_and(|t| t.socket_fd().is_some())
        {
            if oneloop::sleep(Duration::from_millis(1)).await.is_err() {
                return;
            }
        }
        let got = out.borrow();
        let mut r = load.report.borrow_mut();
        r.subprocesses += 1;
        r.subprocess_bytes += len as u64;
        if !matches!(code, Ok(0)) || *got != data {
            r.echo_lost += (len as u64).saturating_sub(got.len() as u64);
            drop(r);
            load.problem(format!(
                "cat returned {} of {len} bytes, exit {code:?}",
                got.len()
            ));
        }
    }
}

// ---- signals ----

struct Signaller {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

/// Send SIGUSR1 to the process, one at a time: each waits until the
/// handler saw it (the kernel merges a signal sent while one is pending).
fn start_signaller(seen: Arc<AtomicU64>) -> Signaller {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let thread = {
        let (stop, sent, lost) = (stop.clone(), sent.clone(), lost.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let before = seen.load(Ordering::Acquire);
                if rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::USR1,
                )
                .is_err()
                {
                    return;
                }
                sent.fetch_add(1, Ordering::AcqRel);
                let deadline = Instant::now() + Duration::from_secs(10);
                while seen.load(Ordering::Acquire) == before {
                    if Instant::now() > deadline {
                        lost.fetch_add(1, Ordering::AcqRel);
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    Signaller {
        stop,
        sent,
        lost,
        thread,
    }
}

// ---- the soak ----

/// Whether the loop can take signal handlers here: an owned loop on the
/// main thread.
fn signals_possible(env: &Env) -> bool {
    !env.is_attached() && std::thread::current().name() == Some("main")
}

/// Run the soak on a fresh loop of `spec`'s mode for `duration`, random
/// choices from `seed`.
///
/// # Panics
/// If the loop cannot be set up; every other failure is in the report's
/// `problems`.
pub fn run(spec: &AdapterSpec, duration: Duration, seed: u64) -> Report {
    // A first loop may set up what its host keeps for good.
    let warm = modes::env("soak", spec, Duration::from_secs(60));
    warm.run_for(Duration::from_millis(1));
    modes::finish(warm);

    let env = modes::env("soak", spec, Duration::from_secs(60));
    let lp = env.lp().clone();
    let base_fds = probe::fd_table();
    let base = probe::Usage::now();
    let load = Rc::new(Load {
        lp: lp.clone(),
        stop: Cell::new(false),
        running: Cell::new(0),
        report: RefCell::new(Report {
            mode: spec.name,
            ..Report::default()
        }),
        rng: RefCell::new(fastrand::Rng::with_seed(seed)),
    });
    let server = env
        .run_until(lp.start_server(
            |mut r, mut w| async move {
                let _ = futures::io::copy(&mut r, &mut w).await;
                let _ = w.close().await;
            },
            "127.0.0.1:0",
        ))
        .expect("the echo server");
    let addr = server.local_addrs()[0].as_inet().expect("inet");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        tasks.push(lp.spawn(echo_client(load.clone(), addr)).expect("spawn"));
    }
    for _ in 0..2 {
        tasks.push(lp.spawn(timer_load(load.clone())).expect("spawn"));
    }
    tasks.push(lp.spawn(child_load(load.clone())).expect("spawn"));
    let posters = [start_poster(&load, 0), start_poster(&load, 1)];
    let seen = Arc::new(AtomicU64::new(0));
    let signaller = signals_possible(&env).then(|| {
        let s = seen.clone();
        lp.add_signal_handler(libc::SIGUSR1, move || {
            s.fetch_add(1, Ordering::AcqRel);
        })
        .expect("add_signal_handler(SIGUSR1)");
        start_signaller(seen.clone())
    });

    // The foreground: fuzz runs and bad input until the time is up.
    let start = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mut fuzz_tally = Tally::default();
    let mut bad = 0;
    let mut round = 0u64;
    while start.elapsed() < duration {
        let sc = fuzz::SCENARIOS[rng.usize(..fuzz::SCENARIOS.len())];
        let s = rng.u64(..);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (sc.run)(&env, s))) {
            Ok(t) => fuzz_tally.add(&t),
            Err(p) => load.problem(format!(
                "fuzz {} seed {s}: {}",
                sc.name,
                crate::panic_text(&*p)
            )),
        }
        if round.is_multiple_of(3) {
            let check = bad_input::CHECKS
                .iter()
                .filter(|c| c.in_soak)
                .nth(rng.usize(..bad_input::CHECKS.iter().filter(|c| c.in_soak).count()))
                .expect("a check");
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (check.run)(&env))) {
                Ok(n) => bad += n,
                Err(p) => load.problem(format!(
                    "bad input {}: {}",
                    check.name,
                    crate::panic_text(&*p)
                )),
            }
        }
        round += 1;
    }

    // Stop the load, and let everything in flight finish.
    load.stop.set(true);
    for p in &posters {
        p.stop.store(true, Ordering::Release);
    }
    if let Some(s) = &signaller {
        s.stop.store(true, Ordering::Release);
    }
    let posted = |posters: &[Poster]| -> u64 {
        posters
            .iter()
            .map(|p| p.posted.load(Ordering::Acquire))
            .sum()
    };
    env.run_until_true(|| {
        load.running.get() == 0
            && posters.iter().all(|p| p.thread.is_finished())
            && load.report.borrow().threadsafe_run == posted(&posters)
            && signaller.as_ref().is_none_or(|s| s.thread.is_finished())
    });
    let elapsed = start.elapsed();
    LOAD.with(|l| l.borrow_mut().take());
    if tasks.iter().any(|t| !t.done()) {
        load.problem("a load task did not end".into());
    }
    let posted_total = posted(&posters);
    for p in posters {
        p.thread.join().expect("a poster thread");
    }
    let signals = signaller.map(|s| {
        s.thread.join().expect("the signal thread");
        let lost = s.lost.load(Ordering::Acquire);
        if lost > 0 {
            load.problem(format!("{lost} signal(s) never reached the handler"));
        }
        s.sent.load(Ordering::Acquire)
    });
    if signals.is_some() {
        lp.remove_signal_handler(libc::SIGUSR1)
            .expect("remove_signal_handler");
    }
    server.close();
    env.run_until(server.wait_closed()).expect("wait_closed");

    // Transports whose streams were dropped close after flushing, a few
    // iterations later: give them until the fds are back, or 5 s.
    let settle = Instant::now() + Duration::from_secs(5);
    let mut after_fds = probe::fd_table();
    while !probe::new_fds(&base_fds, &after_fds).is_empty() && Instant::now() < settle {
        env.run_for(Duration::from_millis(5));
        after_fds = probe::fd_table();
    }
    let leaked = probe::new_fds(&base_fds, &after_fds);
    let reports = env.take_reports();
    let mut report = load.report.borrow().clone();
    modes::finish(env);
    probe::threads_settle(base.threads, Duration::from_secs(15));
    let after = probe::Usage::now();

    report.elapsed = elapsed;
    report.threadsafe_posted = posted_total;
    report.signals_sent = signals;
    report.signals_seen = seen.load(Ordering::Acquire);
    report.fuzz = fuzz_tally;
    report.bad_inputs = bad;
    report.fds = (base.fds, after_fds.len());
    report.threads = (base.threads, after.threads);
    report.rss = (base.rss, after.rss);
    for r in reports {
        report
            .problems
            .push(format!("the exception handler was told: {r}"));
    }
    if !leaked.is_empty() {
        report.problems.push(format!("fds left open: {leaked:?}"));
    }
    if report.threadsafe_run != report.threadsafe_posted || report.threadsafe_out_of_order > 0 {
        report.problems.push(format!(
            "threadsafe calls: {} posted, {} run, {} out of order",
            report.threadsafe_posted, report.threadsafe_run, report.threadsafe_out_of_order
        ));
    }
    if report.timers_early > 0 {
        report
            .problems
            .push(format!("{} timer(s) fired early", report.timers_early));
    }
    if let Some(sent) = report.signals_sent
        && sent != report.signals_seen
    {
        report.problems.push(format!(
            "signals: {sent} sent, {} seen",
            report.signals_seen
        ));
    }
    if after.threads > base.threads {
        report
            .problems
            .push(format!("threads {} → {}", base.threads, after.threads));
    }
    if report.bytes_lost() > 0 {
        report
            .problems
            .push(format!("{} bytes lost", report.bytes_lost()));
    }
    report
}

/// The soak's figures as a Markdown table, a row per mode.
pub fn render(reports: &[Report]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| mode | time | echo: connections / MB / aborted | timers fired / cancelled / early / latest | threadsafe calls (in order) | children / KB | signals sent / seen | fuzz runs / MB / faults / errors reported | bad inputs | bytes lost | fds before → after | held |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|");
    for r in reports {
        let _ = writeln!(
            s,
            "| {} | {:.0} s | {} / {:.1} / {} | {} / {} / {} / {:.1} ms | {} / {} ({}) | {} / {} | {} | {} / {:.1} / {} / {} | {} | {} | {} → {} | {} |",
            r.mode,
            r.elapsed.as_secs_f64(),
            r.echo_connections,
            r.echo_bytes as f64 / 1e6,
            r.echo_aborts,
            r.timers_fired,
            r.timers_cancelled,
            r.timers_early,
            r.timer_max_late.as_secs_f64() * 1e3,
            r.threadsafe_posted,
            r.threadsafe_run,
            if r.threadsafe_out_of_order == 0 {
                "yes"
            } else {
                "NO"
            },
            r.subprocesses,
            r.subprocess_bytes / 1000,
            r.signals_sent.map_or_else(
                || "n/a (attached: the host owns signals)".to_owned(),
                |n| format!("{n} / {}", r.signals_seen)
            ),
            r.fuzz.runs,
            r.fuzz.bytes_received as f64 / 1e6,
            r.faults(),
            r.fuzz.errors_reported,
            r.bad_inputs,
            r.bytes_lost(),
            r.fds.0,
            r.fds.1,
            if r.problems.is_empty() { "✓" } else { "✗" },
        );
    }
    s
}
