//! The workloads every backend runs, written once against [`oneloop::Loop`]
//! so that the native loop and each adapter run exactly the same code, and
//! the matching plain-Rust floors.
//!
//! - a **batch** of [`BATCH`] callbacks queued then run ([`call_soon_batch`]);
//! - **cross-thread** posts: one producer thread, `n` callbacks back to back
//!   ([`threadsafe_round`], floor [`floor_threadsafe_round`]);
//! - **timers fired**: `n` one-shot timers spread over [`WINDOW`], run to
//!   the last; CPU per timer, lateness, never early ([`fire_oneloop`],
//!   floor [`fire_floor`], table [`fire_table`]);
//! - an **fd ping-pong**: one byte bouncing over a socket pair through two
//!   `add_reader` callbacks, each a wake-up, a `read` and a `write`
//!   ([`fd_pingpong`], floor [`fd_pingpong_floor`]).
//!
//! Every callback adds a captured value to a thread-local sum ([`add`]), so
//! boxing it allocates as for a real callback, and the sum proves that every
//! callback ran exactly once.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use oneloop::Loop;

use crate::cpu::thread_cpu_time;
use crate::floor::{Inbox, TimerHeap};
use crate::watchdog::Watchdog;
use crate::{Rng, mode};

/// Callbacks per `call_soon` iteration.
pub const BATCH: u64 = 1000;
/// How far the timer workload spreads its deadlines.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Same seed for every variant: the same deadlines in the same order.
const SEED: u64 = 0x5EED_0001;

thread_local! {
    static SUM: Cell<u64> = const { Cell::new(0) };
    static RAN: Cell<u64> = const { Cell::new(0) };
}

/// What every benchmark callback does: add `i` to this thread's sum.
pub fn add(i: u64) {
    SUM.with(|s| s.set(s.get().wrapping_add(i)));
    RAN.with(|r| r.set(r.get() + 1));
}

/// How many callbacks ran on this thread in the current round of [`timed`].
pub fn ran() -> u64 {
    RAN.with(Cell::get)
}

/// Run `round` `iters` times, timing all of it; after each round, check
/// that the callbacks `0..n` each ran exactly once (their sum).
///
/// # Panics
/// If a round lost or repeated a callback.
pub fn timed(iters: u64, n: u64, mut round: impl FnMut()) -> Duration {
    let expected = n * n.saturating_sub(1) / 2;
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        SUM.with(|s| s.set(0));
        RAN.with(|r| r.set(0));
        let start = Instant::now();
        round();
        total += start.elapsed();
        assert_eq!(
            SUM.with(Cell::get),
            expected,
            "a callback was lost or ran twice"
        );
    }
    total
}

/// Queue `batch` callbacks with `call_soon` (dropping the handles), then run
/// exactly that batch: `stop()` before `run_forever` makes the run one
/// non-blocking iteration (LC-05).
///
/// # Panics
/// If the loop refuses the work (closed, or attached to a host).
pub fn call_soon_batch(lp: &Loop, batch: u64) {
    for i in 0..batch {
        let _ = lp.call_soon(move || add(i));
    }
    lp.stop();
    lp.run_forever().expect("run_forever");
}

/// One producer thread posts `n` callbacks with `call_soon_threadsafe`, then
/// `stop`; the loop runs them all on this thread.
///
/// # Panics
/// If the loop refuses the work.
pub fn threadsafe_round(lp: &Loop, n: u64) {
    let _watchdog = Watchdog::arm("threadsafe_round", Duration::from_secs(60));
    let remote = lp.remote();
    let producer = thread::spawn(move || {
        for i in 0..n {
            remote.call_soon_threadsafe(move || add(i)).expect("post");
        }
        // Same FIFO: runs after every callback above (D8).
        remote.stop().expect("stop");
    });
    lp.run_forever().expect("run_forever");
    producer.join().expect("producer");
}

/// The floor of [`threadsafe_round`]: the same producer on an [`Inbox`].
///
/// # Panics
/// If the poller fails.
pub fn floor_threadsafe_round(inbox: &Arc<Inbox>, events: &mut polling::Events, n: u64) {
    let _watchdog = Watchdog::arm("floor_threadsafe_round", Duration::from_secs(60));
    let producer = thread::spawn({
        let inbox = inbox.clone();
        move || {
            for i in 0..n {
                inbox.post(move || add(i)).expect("post");
            }
        }
    });
    let mut ran = 0;
    while ran < n as usize {
        ran += inbox.wait_and_run(events).expect("wait");
    }
    producer.join().expect("producer");
}

/// `n` deadlines at `base` plus a random offset within [`WINDOW`] (fixed seed).
pub fn deadlines(base: Instant, n: usize) -> Vec<Instant> {
    let mut rng = Rng::new(SEED);
    let window = WINDOW.as_nanos() as u64;
    (0..n)
        .map(|_| base + Duration::from_nanos(rng.below(window)))
        .collect()
}

/// The outcome of one timer round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fired {
    /// Thread CPU per timer, scheduling included, in ns.
    pub cpu_ns: f64,
    /// Median lateness in ns, among timers that were not early.
    pub late_p50_ns: u64,
    /// Timers that ran before their deadline.
    pub early: usize,
}

/// Lateness samples of one timer round, shared by its callbacks.
#[derive(Debug, Clone, Default)]
pub struct Lateness(Rc<RefCell<Vec<Option<u64>>>>);

impl Lateness {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Lateness {
        Lateness(Rc::new(RefCell::new(Vec::with_capacity(n))))
    }

    /// A timer due at `when` ran at `now`.
    pub fn record(&self, when: Instant, now: Instant) {
        let late = now
            .checked_duration_since(when)
            .map(|d| d.as_nanos() as u64);
        self.0.borrow_mut().push(late);
    }

    /// How many timers ran so far.
    pub fn fired(&self) -> usize {
        self.0.borrow().len()
    }

    /// The round's figures, for `n` timers and `cpu` spent.
    ///
    /// # Panics
    /// If not exactly `n` timers ran.
    pub fn finish(&self, n: usize, cpu: Duration) -> Fired {
        let late = self.0.borrow();
        assert_eq!(late.len(), n, "every timer fires exactly once");
        let early = late.iter().filter(|l| l.is_none()).count();
        let mut on_time: Vec<u64> = late.iter().flatten().copied().collect();
        on_time.sort_unstable();
        Fired {
            cpu_ns: cpu.as_nanos() as f64 / n.max(1) as f64,
            late_p50_ns: on_time.get(on_time.len() / 2).copied().unwrap_or(0),
            early,
        }
    }
}

/// `n` timers with `call_at` on `lp`, run to the last; lateness on the
/// loop's clock (D7: never early as `Loop::time()` sees it). Closes `lp`.
///
/// # Panics
/// If the loop refuses the work, or a timer is lost.
pub fn fire_oneloop(lp: Loop, n: usize) -> Fired {
    let late = Lateness::with_capacity(n);
    let cpu = thread_cpu_time();
    let whens = deadlines(lp.time(), n);
    for &w in &whens {
        let (late, lp2) = (late.clone(), lp.clone());
        lp.call_at(w, move || {
            late.record(w, lp2.time());
            if late.fired() == n {
                lp2.stop();
            }
        })
        .expect("call_at");
    }
    lp.run_forever().expect("run_forever");
    let cpu = thread_cpu_time() - cpu;
    lp.close().expect("close");
    late.finish(n, cpu)
}

/// The floor of [`fire_oneloop`]: a [`TimerHeap`] and `Instant::now()`.
///
/// # Panics
/// If the poller fails.
pub fn fire_floor(n: usize) -> Fired {
    let late = Lateness::with_capacity(n);
    let cpu = thread_cpu_time();
    let whens = deadlines(Instant::now(), n);
    let mut heap = TimerHeap::new().expect("poller");
    for &w in &whens {
        let late = late.clone();
        heap.push(w, move || late.record(w, Instant::now()));
    }
    heap.run().expect("poller");
    late.finish(n, thread_cpu_time() - cpu)
}

/// A variant of the timer workload: a name and a round for `n` timers.
pub type FireVariant<'a> = (&'a str, &'a dyn Fn(usize) -> Fired);

/// Run the timer workload for every size, `variants` interleaved round by
/// round (five rounds; one in a smoke run), and print a table of median
/// CPU per timer and lateness, with the median of the per-round ratios of
/// every variant over `variants[baseline]` as `ratio` lines of `group`.
/// Returns every round's figures, per size then variant.
///
/// # Panics
/// If a round panics, or takes over two minutes (watchdog).
pub fn fire_table(
    group: &str,
    sizes: &[usize],
    variants: &[FireVariant<'_>],
    baseline: usize,
) -> Vec<Vec<Vec<Fired>>> {
    let rounds = if mode::smoke() { 1 } else { 5 };
    let mut all = Vec::new();
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for &n in sizes {
        let mut results: Vec<Vec<Fired>> = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for (i, (name, run)) in variants.iter().enumerate() {
                let _watchdog =
                    Watchdog::arm(&format!("{group}/{name}/{n}"), Duration::from_secs(120));
                results[i].push(run(n));
            }
        }
        let median = |xs: &mut Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let mut cells = Vec::new();
        for (i, (name, _)) in variants.iter().enumerate() {
            let mut cpu: Vec<f64> = results[i].iter().map(|r| r.cpu_ns).collect();
            let mut late: Vec<f64> = results[i].iter().map(|r| r.late_p50_ns as f64).collect();
            let early: usize = results[i].iter().map(|r| r.early).sum();
            let mut ratios: Vec<f64> = (0..rounds)
                .map(|k| results[i][k].cpu_ns / results[baseline][k].cpu_ns)
                .collect();
            let ratio = median(&mut ratios);
            lines.push(format!("ratio\t{group}\t{name}\t{n}\t{ratio:.4}"));
            cells.push(format!(
                "{:.0} ns ×{ratio:.2} ({:.2} ms late{})",
                median(&mut cpu),
                median(&mut late) / 1e6,
                if early > 0 {
                    format!(", **{early} early**")
                } else {
                    String::new()
                }
            ));
        }
        rows.push(format!("| {n} | {} |", cells.join(" | ")));
        all.push(results);
    }
    if mode::smoke() {
        println!("{group}: smoke run, one round per size, nothing timed");
        return all;
    }
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    println!(
        "\n### {group} — CPU per timer (schedule + fire), × {}, median of {rounds} interleaved rounds (p50 lateness)\n",
        variants[baseline].0
    );
    println!("| N | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for r in rows {
        println!("{r}");
    }
    println!();
    for l in lines {
        println!("{l}");
    }
    all
}

/// Panic if variant `variant` of a [`fire_table`] result fired a timer
/// early: oneloop's D7 on every backend.
///
/// # Panics
/// If it did.
pub fn assert_never_early(backend: &str, results: &[Vec<Vec<Fired>>], variant: usize) {
    for per_size in results {
        for round in &per_size[variant] {
            assert_eq!(
                round.early, 0,
                "oneloop on {backend} fired a timer early (D7)"
            );
        }
    }
}

/// Two connected, non-blocking Unix sockets: the fd ping-pong's pair.
///
/// # Panics
/// If the sockets cannot be made.
pub fn socket_pair() -> Rc<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("non-blocking");
    b.set_nonblocking(true).expect("non-blocking");
    Rc::new((a, b))
}

/// One fd callback of the ping-pong: take the byte that made `from`
/// readable, count it, and send one back through `from` (to the other end)
/// unless this was the `n`th. `true` when the round is complete.
///
/// # Panics
/// If the socket fails, or there was nothing to read (a level-triggered
/// loop must call a reader only when it is readable).
pub fn pingpong_step(from: &UnixStream, count: &Cell<u64>, n: u64) -> bool {
    pingpong_try_step(from, count, n).expect("a reader called with nothing to read")
}

/// [`pingpong_step`] for edge-triggered hosts, whose readiness may be stale:
/// `WouldBlock` (and nothing counted) when there was nothing to read.
///
/// # Errors
/// `WouldBlock` if nothing was there to read; any other socket error.
///
/// # Panics
/// If a write does not take the byte.
pub fn pingpong_try_step(
    mut from: &UnixStream,
    count: &Cell<u64>,
    n: u64,
) -> std::io::Result<bool> {
    let mut byte = [0u8; 1];
    if from.read(&mut byte)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let i = count.get();
    count.set(i + 1);
    add(i);
    if i + 1 == n {
        return Ok(true);
    }
    assert_eq!(from.write(&byte)?, 1);
    Ok(false)
}

/// `n` fd callbacks through `add_reader`: one byte bounces between the two
/// ends of `pair`, each end's reader reading it and writing it back, so
/// every callback is one wake-up of the loop, one `read` and one `write`.
/// Registers the readers, runs the loop until the `n`th callback stops it,
/// and unregisters them.
///
/// # Panics
/// If the loop refuses the readers or a callback is lost (checked by [`timed`]).
pub fn fd_pingpong(lp: &Loop, pair: &Rc<(UnixStream, UnixStream)>, n: u64) {
    let _watchdog = Watchdog::arm("fd_pingpong", Duration::from_secs(60));
    let count = Rc::new(Cell::new(0u64));
    for end in 0..2 {
        let (pair2, count) = (pair.clone(), count.clone());
        let fd = if end == 0 { &pair.0 } else { &pair.1 };
        lp.add_reader(fd, move || {
            let from = if end == 0 { &pair2.0 } else { &pair2.1 };
            if pingpong_step(from, &count, n) {
                oneloop::get_running_loop().expect("running loop").stop();
            }
        })
        .expect("add_reader");
    }
    (&pair.1).write_all(&[1]).expect("serve");
    lp.run_forever().expect("run_forever");
    assert!(lp.remove_reader(&pair.0) && lp.remove_reader(&pair.1));
    assert_eq!(count.get(), n);
}

/// The floor of [`fd_pingpong`]: the same two sockets on a bare
/// level-triggered epoll, the "callback" a direct call in the wait loop.
///
/// # Panics
/// If epoll fails or a callback is lost.
pub fn fd_pingpong_floor(pair: &(UnixStream, UnixStream), n: u64) {
    use rustix::event::epoll;

    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll");
    for (key, fd) in [(0u64, &pair.0), (1, &pair.1)] {
        epoll::add(
            &ep,
            fd,
            epoll::EventData::new_u64(key),
            epoll::EventFlags::IN,
        )
        .expect("epoll add");
    }
    let count = Cell::new(0u64);
    (&pair.1).write_all(&[1]).expect("serve");
    let mut events = Vec::with_capacity(2);
    'run: loop {
        events.clear();
        epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None).expect("wait");
        for ev in &events {
            let from = if ev.data.u64() == 0 { &pair.0 } else { &pair.1 };
            if pingpong_step(from, &count, n) {
                break 'run;
            }
        }
    }
}

/// The cases every adapter's `call_soon` group shares, measured in the same
/// run as the host's own primitive (which the caller adds): the floor, and
/// oneloop on the loop `new_loop` builds.
pub fn call_soon_cases(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    new_loop: fn() -> oneloop::Result<Loop>,
) {
    g.bench_function(criterion::BenchmarkId::new("floor", BATCH), |b| {
        let mut q = crate::floor::Queue::default();
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                for i in 0..BATCH {
                    q.push(move || add(i));
                }
                q.run_all();
            })
        });
    });
    g.bench_function(criterion::BenchmarkId::new("oneloop", BATCH), |b| {
        let lp = new_loop().expect("loop");
        b.iter_custom(|iters| timed(iters, BATCH, || call_soon_batch(&lp, BATCH)));
        lp.close().expect("close");
    });
}

/// The cases every adapter's `call_soon_threadsafe` group shares, for `n`
/// callbacks from one producer thread: the coalesced eventfd floor, and
/// oneloop on the loop `new_loop` builds.
pub fn threadsafe_cases(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: u64,
    new_loop: fn() -> oneloop::Result<Loop>,
) {
    g.bench_function(criterion::BenchmarkId::new("floor", n), |b| {
        let inbox = Arc::new(Inbox::new().expect("poller"));
        let mut events = polling::Events::new();
        b.iter_custom(|iters| timed(iters, n, || floor_threadsafe_round(&inbox, &mut events, n)));
    });
    g.bench_function(criterion::BenchmarkId::new("oneloop", n), |b| {
        let lp = new_loop().expect("loop");
        b.iter_custom(|iters| timed(iters, n, || threadsafe_round(&lp, n)));
        lp.close().expect("close");
    });
}
