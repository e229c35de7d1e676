//! Timers on the default loop against a `BinaryHeap` floor and tokio's
//! timer wheel, in the same run, for N = 1e3 … 1e6:
//!
//! - `timers_schedule`: the cost of scheduling N timers (criterion);
//! - `timers_cancel`: scheduling then cancelling N timers, and the memory
//!   left behind (`Loop::stats().timers`) (criterion);
//! - `timers_fire`: N one-shot timers spread over 100 ms, run to the last:
//!   thread CPU per timer and lateness, never early (interleaved rounds,
//!   printed as a table with the same `ratio` lines);
//! - `timers_slack`: the same at N = 1e3 and 1e4 for several
//!   [timer slacks](oneloop::Loop::set_timer_slack), against tokio: what
//!   sharing wake-ups saves in CPU and costs in lateness.
//!
//! tokio's "schedule" is what makes a tokio timer exist: a boxed
//! `sleep_until` polled once, which registers it in the wheel; its "cancel"
//! is dropping it.

use std::cell::RefCell;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use oneloop::Loop;
use oneloop_bench::cpu::thread_cpu_time;
use oneloop_bench::floor::TimerHeap;
use oneloop_bench::mode;
use oneloop_bench::ratios::Table;
use oneloop_bench::workload::{
    self, FireVariant, Fired, Lateness, deadlines, fire_floor, fire_oneloop, fire_table,
};

const SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Register a tokio timer: a boxed `sleep_until`, polled once.
fn tokio_timer(when: Instant) -> Pin<Box<tokio::time::Sleep>> {
    let mut s = Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
        when,
    )));
    let _ = s.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    s
}

fn schedule(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers_schedule");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(200));
    for n in mode::sizes(&SIZES) {
        g.throughput(Throughput::Elements(n as u64));
        let far = Instant::now() + Duration::from_secs(3600);
        let whens = deadlines(far, n);

        g.bench_function(BenchmarkId::new("floor", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut heap = TimerHeap::new().expect("poller");
                    let start = Instant::now();
                    for (i, &w) in whens.iter().enumerate() {
                        heap.push(w, move || {
                            black_box(i);
                        });
                    }
                    total += start.elapsed();
                    assert_eq!(heap.len(), n);
                }
                total
            });
        });

        g.bench_function(BenchmarkId::new("oneloop", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let lp = Loop::new().expect("loop");
                    let start = Instant::now();
                    for (i, &w) in whens.iter().enumerate() {
                        let _ = lp.call_at(w, move || {
                            black_box(i);
                        });
                    }
                    total += start.elapsed();
                    assert_eq!(lp.stats().timers, n);
                    lp.close().expect("close");
                }
                total
            });
        });

        g.bench_function(BenchmarkId::new("tokio", n), |b| {
            let rt = tokio_rt();
            let _enter = rt.enter();
            let mut sleeps = Vec::with_capacity(n);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for &w in &whens {
                        sleeps.push(tokio_timer(w));
                    }
                    total += start.elapsed();
                    sleeps.clear();
                }
                total
            });
        });
    }
    g.finish();
}

thread_local! {
    /// Timer entries left in the loop after cancelling all N, per N.
    static LEFT_AFTER_CANCEL: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

fn cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers_cancel");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(200));
    for n in mode::sizes(&SIZES) {
        g.throughput(Throughput::Elements(n as u64));
        let far = Instant::now() + Duration::from_secs(3600);
        let whens = deadlines(far, n);

        g.bench_function(BenchmarkId::new("oneloop", n), |b| {
            let mut handles = Vec::with_capacity(n);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = 0;
                for _ in 0..iters {
                    let lp = Loop::new().expect("loop");
                    let start = Instant::now();
                    for (i, &w) in whens.iter().enumerate() {
                        let h = lp.call_at(w, move || {
                            black_box(i);
                        });
                        handles.push(h.expect("call_at"));
                    }
                    for h in handles.drain(..) {
                        h.cancel();
                    }
                    total += start.elapsed();
                    left = left.max(lp.stats().timers);
                    lp.close().expect("close");
                }
                LEFT_AFTER_CANCEL.with(|l| l.borrow_mut().push((n, left)));
                total
            });
        });

        g.bench_function(BenchmarkId::new("tokio", n), |b| {
            let rt = tokio_rt();
            let _enter = rt.enter();
            let mut sleeps = Vec::with_capacity(n);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for &w in &whens {
                        sleeps.push(tokio_timer(w));
                    }
                    sleeps.clear();
                    total += start.elapsed();
                }
                total
            });
        });
    }
    g.finish();
}

/// One tokio task awaiting `sleep_until` per timer.
fn fire_tokio(n: usize) -> Fired {
    let late = Lateness::with_capacity(n);
    let rt = tokio_rt();
    let cpu = thread_cpu_time();
    let local = tokio::task::LocalSet::new();
    for w in deadlines(Instant::now(), n) {
        let late = late.clone();
        local.spawn_local(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(w)).await;
            late.record(w, Instant::now());
        });
    }
    rt.block_on(local);
    late.finish(n, thread_cpu_time() - cpu)
}

fn main() {
    let mut c = mode::criterion();
    schedule(&mut c);
    cancel(&mut c);
    c.final_summary();
    if mode::selected("timers_fire") {
        let oneloop = |n| fire_oneloop(Loop::new().expect("loop"), n);
        let results = fire_table(
            "timers_fire",
            &mode::sizes(&SIZES),
            &[
                ("floor", &fire_floor),
                ("oneloop", &oneloop),
                ("tokio", &fire_tokio),
            ],
            2,
        );
        workload::assert_never_early("the default loop", &results, 1);
    }
    if mode::selected("timers_slack") {
        let with_slack = |us: u64| {
            move |n| {
                let lp = Loop::new().expect("loop");
                lp.set_timer_slack(Duration::from_micros(us));
                fire_oneloop(lp, n)
            }
        };
        let (s0, s250, s500, s1000, s2000) = (
            with_slack(0),
            with_slack(250),
            with_slack(500),
            with_slack(1000),
            with_slack(2000),
        );
        let variants: [FireVariant<'_>; 6] = [
            ("slack_0", &s0),
            ("slack_250us", &s250),
            ("slack_500us", &s500),
            ("slack_1ms", &s1000),
            ("slack_2ms", &s2000),
            ("tokio", &fire_tokio),
        ];
        // tokio, last, is the baseline; every oneloop variant before it must
        // never fire early.
        let tokio = variants.len() - 1;
        let results = fire_table("timers_slack", &[1_000, 10_000], &variants, tokio);
        for variant in 0..tokio {
            workload::assert_never_early("the default loop", &results, variant);
        }
    }

    let mut schedule_table = Table::new("timers_schedule", "tokio")
        .function("floor")
        .function("oneloop")
        .function("tokio");
    let mut cancel_table = Table::new("timers_cancel", "tokio")
        .function("oneloop")
        .function("tokio");
    for n in mode::sizes(&SIZES) {
        schedule_table = schedule_table.param(n, n as u64);
        cancel_table = cancel_table.param(n, n as u64);
    }
    schedule_table.print();
    cancel_table.print();
    LEFT_AFTER_CANCEL.with(|l| {
        let mut worst: Vec<(usize, usize)> = Vec::new();
        for &(n, left) in l.borrow().iter() {
            match worst.iter_mut().find(|(m, _)| *m == n) {
                Some(w) => w.1 = w.1.max(left),
                None => worst.push((n, left)),
            }
        }
        for (n, left) in worst {
            println!(
                "timers_cancel: after cancelling all {n} timers, Loop::stats().timers = {left}"
            );
            // Lazy cancellation must compact: what is left is bounded by the
            // compaction threshold, not by N.
            assert!(
                left <= 2048,
                "{left} cancelled timers kept after cancelling {n}"
            );
        }
    });
}
