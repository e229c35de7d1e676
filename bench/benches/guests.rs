//! Guests and guest mode, each against the host's own way of doing the
//! same thing, in the same run (interleaved rounds, medians):
//!
//! - a calloop guest on the default loop dispatching a `Ping` source 1e5
//!   times vs the same on a plain `EventLoop::run`;
//! - a glib guest on the default loop running 1e5 `idle_add_local_once`
//!   vs a plain `glib::MainLoop`, and the lateness of 1000 GLib timeouts
//!   (`timeout_add_local`) spread over 100 ms on the guest;
//! - guest mode: a chain of 1e5 `call_soon` callbacks, each a round trip
//!   through the host's hook, vs the same chain of plain closures through
//!   the same hook, on two hosts: a mutex-and-condvar queue the host thread
//!   drains (the cheapest hook there is), and a calloop `EventLoop` whose
//!   hook is a calloop channel (winit's shape on Linux: an mpsc send and an
//!   eventfd write per post).
//!
//! Two more sides run only when asked (`--only`), to check that the guests'
//! batching costs nothing when each wake-up has one thing to do:
//! `calloop_pingpong` and `glib_pingpong`, 1e5 round trips between a
//! oneloop callback and a calloop ping or a GLib idle.
//!
//! Not criterion: each workload is one long run whose wall time and
//! process CPU time are the figures, and the ratios of medians over
//! interleaved rounds are what counts (PERFORMANCE.md); on a shared,
//! loaded machine the CPU ratio is the steadier one. `cargo test` runs it once at small sizes (a smoke
//! run); `cargo bench --bench guests` measures.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use calloop::EventLoop;
use calloop::ping::make_ping;
use oneloop_bench::cpu::process_cpu_time;
use oneloop_bench::echo::args::Args;
use oneloop_bench::mode;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `n` pings, each pinging the next from its callback, on a plain calloop
/// `EventLoop::run`.
fn calloop_plain(n: u32) -> Duration {
    let mut ev: EventLoop<'static, u32> = EventLoop::try_new().expect("event loop");
    let (ping, source) = make_ping().expect("ping");
    let signal = ev.get_signal();
    let p = ping.clone();
    ev.handle()
        .insert_source(source, move |_, _, count: &mut u32| {
            *count += 1;
            if *count < n {
                p.ping();
            } else {
                signal.stop();
            }
        })
        .expect("insert ping");
    let mut count = 0;
    let start = Instant::now();
    ping.ping();
    ev.run(None, &mut count, |_| {}).expect("run");
    assert_eq!(count, n);
    start.elapsed()
}

/// The same on a calloop guest of the default loop.
fn calloop_guest(n: u32) -> Duration {
    let lp = oneloop::Loop::new().expect("loop");
    let ev: EventLoop<'static, u32> = EventLoop::try_new().expect("event loop");
    let handle = ev.handle();
    let guest = oneloop_calloop::guest(&lp, ev, 0).expect("guest");
    let (ping, source) = make_ping().expect("ping");
    let p = ping.clone();
    let stop = lp.clone();
    handle
        .insert_source(source, move |_, _, count: &mut u32| {
            *count += 1;
            if *count < n {
                p.ping();
            } else {
                stop.stop();
            }
        })
        .expect("insert ping");
    let start = Instant::now();
    ping.ping();
    lp.run_forever().expect("run");
    let took = start.elapsed();
    assert_eq!(guest.with_data(|c| *c), Some(n));
    drop(handle);
    lp.close().expect("close");
    took
}

/// `n` round trips between a oneloop callback and a calloop ping on a
/// calloop guest: one ready calloop source per wake-up.
fn calloop_pingpong(n: u32) -> Duration {
    let lp = oneloop::Loop::new().expect("loop");
    let ev: EventLoop<'static, u32> = EventLoop::try_new().expect("event loop");
    let handle = ev.handle();
    let guest = oneloop_calloop::guest(&lp, ev, 0).expect("guest");
    let (ping, source) = make_ping().expect("ping");
    let p = ping.clone();
    let l = lp.clone();
    handle
        .insert_source(source, move |_, _, count: &mut u32| {
            *count += 1;
            if *count < n {
                let p = p.clone();
                l.call_soon(move || p.ping()).expect("call_soon");
            } else {
                l.stop();
            }
        })
        .expect("insert ping");
    let start = Instant::now();
    ping.ping();
    lp.run_forever().expect("run");
    let took = start.elapsed();
    assert_eq!(guest.with_data(|c| *c), Some(n));
    drop(handle);
    lp.close().expect("close");
    took
}

/// `n` round trips between a oneloop callback and a GLib idle on a glib
/// guest: one ready GLib source per wake-up.
fn glib_pingpong(n: u32) -> Duration {
    let lp = oneloop::Loop::new().expect("loop");
    let guest = oneloop_glib::guest(&lp, &glib::MainContext::default()).expect("guest");
    let count = Rc::new(Cell::new(0));
    fn next(n: u32, count: Rc<Cell<u32>>, lp: oneloop::Loop) {
        let l = lp.clone();
        lp.call_soon(move || {
            glib::idle_add_local_once(move || {
                count.set(count.get() + 1);
                if count.get() < n {
                    next(n, count, l);
                } else {
                    l.stop();
                }
            });
        })
        .expect("call_soon");
    }
    let start = Instant::now();
    next(n, count.clone(), lp.clone());
    lp.run_forever().expect("run");
    let took = start.elapsed();
    assert_eq!(count.get(), n);
    assert!(guest.detach());
    lp.close().expect("close");
    took
}

/// `n` `idle_add_local_once` callbacks, each adding the next, on a plain
/// `glib::MainLoop` of the default context.
fn glib_plain(n: u32) -> Duration {
    let ml = glib::MainLoop::new(None, false);
    let count = Rc::new(Cell::new(0));
    fn next(n: u32, count: Rc<Cell<u32>>, ml: glib::MainLoop) {
        glib::idle_add_local_once(move || {
            count.set(count.get() + 1);
            if count.get() < n {
                next(n, count, ml);
            } else {
                ml.quit();
            }
        });
    }
    let start = Instant::now();
    next(n, count.clone(), ml.clone());
    ml.run();
    assert_eq!(count.get(), n);
    start.elapsed()
}

/// The same on a glib guest (of the default context) on the default loop.
fn glib_guest(n: u32) -> Duration {
    let lp = oneloop::Loop::new().expect("loop");
    let guest = oneloop_glib::guest(&lp, &glib::MainContext::default()).expect("guest");
    let count = Rc::new(Cell::new(0));
    fn next(n: u32, count: Rc<Cell<u32>>, lp: oneloop::Loop) {
        glib::idle_add_local_once(move || {
            count.set(count.get() + 1);
            if count.get() < n {
                next(n, count, lp);
            } else {
                lp.stop();
            }
        });
    }
    let start = Instant::now();
    next(n, count.clone(), lp.clone());
    lp.run_forever().expect("run");
    let took = start.elapsed();
    assert_eq!(count.get(), n);
    assert!(guest.detach());
    lp.close().expect("close");
    took
}

/// Lateness of `n` GLib timeouts spread over 100 ms on a glib guest of the
/// default loop: the median, in µs (never negative: never early).
fn glib_guest_lateness(n: u32) -> Duration {
    let lp = oneloop::Loop::new().expect("loop");
    let guest = oneloop_glib::guest(&lp, &glib::MainContext::default()).expect("guest");
    let late = Rc::new(std::cell::RefCell::new(Vec::new()));
    let start = Instant::now();
    for i in 0..n {
        let after = Duration::from_micros(u64::from(i) * 100_000 / u64::from(n));
        let due = start + after;
        let late = late.clone();
        glib::timeout_add_local_once(after, move || {
            late.borrow_mut()
                .push(Instant::now().saturating_duration_since(due));
        });
    }
    let l = late.clone();
    lp.run_until_complete(async move {
        while l.borrow().len() < n as usize {
            oneloop::sleep(Duration::from_millis(5))
                .await
                .expect("sleep");
        }
    })
    .expect("run");
    assert!(guest.detach());
    lp.close().expect("close");
    let v = late.borrow().clone();
    median(v)
}

/// A closure the host runs.
type Posted = Box<dyn FnOnce() + Send>;

/// A host: a queue of boxed closures that this thread drains, fed from any
/// thread (the shape of winit's proxy or a toolkit's invoke).
#[derive(Clone, Default)]
struct QueueHost {
    q: Arc<(Mutex<VecDeque<Posted>>, Condvar)>,
}

impl QueueHost {
    fn post(&self, f: Posted) {
        self.q.0.lock().expect("queue").push_back(f);
        self.q.1.notify_one();
    }

    /// Run posted closures until `done()`.
    fn run(&self, done: impl Fn() -> bool) {
        while !done() {
            let f = {
                let mut q = self.q.0.lock().expect("queue");
                while q.is_empty() {
                    q = self.q.1.wait(q).expect("queue");
                }
                q.pop_front()
            };
            if let Some(f) = f {
                f();
            }
        }
    }
}

/// `n` closures, each posting the next through the host's hook.
fn hook_chain(n: u32) -> Duration {
    let host = QueueHost::default();
    let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
    fn next(host: QueueHost, count: Arc<std::sync::atomic::AtomicU32>, n: u32) {
        let h = host.clone();
        host.post(Box::new(move || {
            if count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 < n {
                next(h, count, n);
            }
        }));
    }
    let start = Instant::now();
    next(host.clone(), count.clone(), n);
    host.run(|| count.load(std::sync::atomic::Ordering::Relaxed) >= n);
    start.elapsed()
}

/// `n` `call_soon` callbacks, each queueing the next, on a guest-mode loop
/// hosted by the same queue: every one a round trip through the hook.
fn guest_chain(n: u32) -> Duration {
    let host = QueueHost::default();
    let h = host.clone();
    let lp =
        oneloop_guest::new_loop(move |job: oneloop_guest::Job| h.post(Box::new(move || job.run())))
            .expect("guest loop");
    let count = Rc::new(Cell::new(0u32));
    fn next(lp: oneloop::Loop, count: Rc<Cell<u32>>, n: u32) {
        let l = lp.clone();
        lp.call_soon(move || {
            count.set(count.get() + 1);
            if count.get() < n {
                next(l, count, n);
            }
        })
        .expect("call_soon");
    }
    let start = Instant::now();
    next(lp.clone(), count.clone(), n);
    host.run(|| count.get() >= n);
    let took = start.elapsed();
    lp.close().expect("close");
    took
}

/// One side of a workload: its name (for `--only`), and its run at `n`.
type Side = (&'static str, fn(u32) -> Duration);

/// The workloads: `(name, baseline, guest side, baseline side)`.
const ROWS: [(&str, &str, Side, Side); 4] = [
    (
        "calloop guest: Ping x1e5",
        "EventLoop::run",
        ("calloop_guest", calloop_guest),
        ("calloop_plain", calloop_plain),
    ),
    (
        "glib guest: idle_add_local_once x1e5",
        "glib::MainLoop",
        ("glib_guest", glib_guest),
        ("glib_plain", glib_plain),
    ),
    (
        "guest mode: call_soon round trips x1e5",
        "the hook alone",
        ("guest_chain", guest_chain),
        ("hook_chain", hook_chain),
    ),
    (
        "guest mode on a calloop host (winit's shape): call_soon round trips x1e5",
        "the channel alone",
        ("calloop_guest_chain", calloop_guest_chain),
        ("calloop_hook_chain", calloop_hook_chain),
    ),
];

/// `guests [--bench] [--only SIDE[,SIDE]] [--n N] [--rounds R]`: `--only`
/// runs just those sides (`calloop_guest`, `glib_plain`, …, `lateness`)
/// once each at `n`, for instruction counts under callgrind (run it at two
/// sizes and divide the difference).
/// A host shaped like winit's on Linux: a calloop `EventLoop` whose
/// thread-safe hook is a calloop channel (an mpsc send and an eventfd
/// write per post); `run` dispatches it until `done()`.
struct CalloopHost {
    event_loop: EventLoop<'static, ()>,
    sender: calloop::channel::Sender<Posted>,
}

impl CalloopHost {
    fn new() -> CalloopHost {
        let event_loop: EventLoop<'static, ()> = EventLoop::try_new().expect("event loop");
        let (sender, channel) = calloop::channel::channel::<Posted>();
        event_loop
            .handle()
            .insert_source(channel, |event, _, _| {
                if let calloop::channel::Event::Msg(f) = event {
                    f();
                }
            })
            .expect("insert channel");
        CalloopHost { event_loop, sender }
    }

    fn run(&mut self, done: impl Fn() -> bool) {
        while !done() {
            self.event_loop.dispatch(None, &mut ()).expect("dispatch");
        }
    }
}

/// `n` closures, each posting the next through a calloop channel.
fn calloop_hook_chain(n: u32) -> Duration {
    let mut host = CalloopHost::new();
    // The closures cross the channel, so they carry a Send counter.
    let sent = Arc::new(std::sync::atomic::AtomicU32::new(0));
    fn next(tx: calloop::channel::Sender<Posted>, sent: Arc<std::sync::atomic::AtomicU32>, n: u32) {
        let t = tx.clone();
        tx.send(Box::new(move || {
            if sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 < n {
                next(t, sent, n);
            }
        }))
        .expect("send");
    }
    let start = Instant::now();
    next(host.sender.clone(), sent.clone(), n);
    host.run(|| sent.load(std::sync::atomic::Ordering::Relaxed) >= n);
    start.elapsed()
}

/// `n` chained `call_soon` on a guest-mode loop hosted by a calloop
/// channel host: every one a round trip through the channel.
fn calloop_guest_chain(n: u32) -> Duration {
    let mut host = CalloopHost::new();
    let tx = std::sync::Mutex::new(host.sender.clone());
    let lp = oneloop_guest::new_loop(move |job: oneloop_guest::Job| {
        let _ = tx.lock().expect("sender").send(Box::new(move || job.run()));
    })
    .expect("guest loop");
    let count = Rc::new(Cell::new(0u32));
    fn next(lp: oneloop::Loop, count: Rc<Cell<u32>>, n: u32) {
        let l = lp.clone();
        lp.call_soon(move || {
            count.set(count.get() + 1);
            if count.get() < n {
                next(l, count, n);
            }
        })
        .expect("call_soon");
    }
    let start = Instant::now();
    next(lp.clone(), count.clone(), n);
    host.run(|| count.get() >= n);
    let took = start.elapsed();
    lp.close().expect("close");
    took
}

/// One run of a side: its wall time, and the CPU time the whole process
/// spent on it (every thread, user and system; set-up included), which a
/// loaded machine's preemption does not inflate.
#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

fn measure(side: fn(u32) -> Duration, n: u32) -> Took {
    let before = process_cpu_time();
    let wall = side(n);
    Took {
        wall,
        cpu: process_cpu_time() - before,
    }
}

/// Medians of wall and CPU times.
fn medians(runs: &[Took]) -> Took {
    Took {
        wall: median(runs.iter().map(|t| t.wall).collect()),
        cpu: median(runs.iter().map(|t| t.cpu).collect()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo test FILTER` hands its filter to this binary too: a command
    // line that is not ours is ignored, not an error.
    let args = Args::parse(std::env::args().skip(1).filter(|a| a != "--bench")).unwrap_or_default();
    let smoke = mode::smoke();
    let n: u32 = args
        .get("n", if smoke { 1_000 } else { 100_000 })
        .expect("--n");
    let rounds: usize = args
        .get("rounds", if smoke { 1 } else { 7 })
        .expect("--rounds");
    let only: Vec<String> = args.list("only", Vec::new()).expect("--only");
    if !only.is_empty() {
        let sides: Vec<Side> = ROWS
            .iter()
            .flat_map(|(_, _, g, p)| [*g, *p])
            .chain([
                ("lateness", glib_guest_lateness as fn(u32) -> Duration),
                ("calloop_pingpong", calloop_pingpong),
                ("glib_pingpong", glib_pingpong),
            ])
            .filter(|(name, _)| only.iter().any(|o| o == name))
            .collect();
        let mut runs = vec![Vec::new(); sides.len()];
        for _ in 0..rounds {
            for ((_, side), r) in sides.iter().zip(&mut runs) {
                r.push(measure(*side, n));
            }
        }
        for ((name, _), r) in sides.iter().zip(runs) {
            let m = medians(&r);
            println!(
                "{name} n={n}: medians of {rounds}: wall {:.2} ms, CPU {:.2} ms",
                ms(m.wall),
                ms(m.cpu)
            );
        }
        return;
    }
    let mut runs: Vec<(Vec<Took>, Vec<Took>)> = vec![Default::default(); ROWS.len()];
    for _ in 0..rounds {
        for ((_, _, (_, guest), (_, plain)), (g, p)) in ROWS.iter().zip(&mut runs) {
            p.push(measure(*plain, n));
            g.push(measure(*guest, n));
        }
    }
    let lateness = median((0..rounds).map(|_| glib_guest_lateness(1_000)).collect());
    println!("| workload | baseline | guest wall | baseline wall | wall ratio | CPU ratio |");
    println!("|---|---|---|---|---|---|");
    for ((name, base, _, _), (guest, plain)) in ROWS.iter().zip(runs) {
        let (g, p) = (medians(&guest), medians(&plain));
        println!(
            "| {name} | {base} | {:.1} ms | {:.1} ms | {:.2}x | {:.2}x |",
            ms(g.wall),
            ms(p.wall),
            g.wall.as_secs_f64() / p.wall.as_secs_f64(),
            g.cpu.as_secs_f64() / p.cpu.as_secs_f64()
        );
    }
    println!(
        "glib guest: 1000 GLib timeouts over 100 ms, lateness p50 (median of rounds): {:.3} ms",
        ms(lateness)
    );
}
