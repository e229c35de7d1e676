//! oneloop on GLib (`oneloop-glib`, owned mode on a fresh main context)
//! against GLib's own primitives and the plain-Rust floor, in the same run:
//! `call_soon` vs `idle_add_local_once`, `call_soon_threadsafe` vs
//! `MainContext::invoke` from another thread, `call_at` vs a
//! `timeout_add_local_once` source per timer.
//!
//! glib-rs truncates a timeout to whole milliseconds, so the native timers
//! may fire up to 1 ms early; the table counts them (oneloop must never be
//! early, and the run fails if it is).

use std::thread;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use glib::MainContext;
use oneloop_bench::cpu::thread_cpu_time;
use oneloop_bench::mode;
use oneloop_bench::ratios::Table;
use oneloop_bench::workload::{
    self, BATCH, Fired, Lateness, add, deadlines, fire_floor, fire_oneloop, fire_table, timed,
};

fn call_soon(c: &mut Criterion) {
    let mut g = c.benchmark_group("glib_call_soon");
    g.throughput(Throughput::Elements(BATCH));
    workload::call_soon_cases(&mut g, oneloop_glib::new_loop);
    g.bench_function(BenchmarkId::new("native", BATCH), |b| {
        // `idle_add_local_once` attaches to the global default context.
        let ctx = MainContext::default();
        let _owner = ctx.acquire().expect("acquire the default context");
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                for i in 0..BATCH {
                    glib::idle_add_local_once(move || add(i));
                }
                while ctx.iteration(false) {}
            })
        });
    });
    g.finish();
}

fn threadsafe(c: &mut Criterion) {
    let n: u64 = if mode::smoke() { 1_000 } else { 100_000 };
    let mut g = c.benchmark_group("glib_call_soon_threadsafe");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(n));
    workload::threadsafe_cases(&mut g, n, oneloop_glib::new_loop);
    g.bench_function(BenchmarkId::new("native", n), |b| {
        let ctx = MainContext::new();
        let _owner = ctx.acquire().expect("acquire the context");
        b.iter_custom(|iters| {
            timed(iters, n, || {
                let producer = thread::spawn({
                    let ctx = ctx.clone();
                    move || {
                        for i in 0..n {
                            ctx.invoke(move || add(i));
                        }
                    }
                });
                // `invoke` from another thread attaches a source per call.
                while workload::ran() < n {
                    ctx.iteration(true);
                }
                producer.join().expect("producer");
            })
        });
    });
    g.finish();
}

/// One `timeout_add_local_once` source per timer.
fn fire_native(n: usize) -> Fired {
    let late = Lateness::with_capacity(n);
    // `timeout_add_local_once` attaches to the global default context.
    let ctx = MainContext::default();
    let _owner = ctx.acquire().expect("acquire the default context");
    let cpu = thread_cpu_time();
    for w in deadlines(Instant::now(), n) {
        let late = late.clone();
        glib::timeout_add_local_once(w.saturating_duration_since(Instant::now()), move || {
            late.record(w, Instant::now())
        });
    }
    while late.fired() < n {
        ctx.iteration(true);
    }
    late.finish(n, thread_cpu_time() - cpu)
}

fn main() {
    let mut c = mode::criterion();
    call_soon(&mut c);
    threadsafe(&mut c);
    c.final_summary();
    let n = if mode::smoke() { 1_000 } else { 100_000 };
    for (group, n) in [("glib_call_soon", BATCH), ("glib_call_soon_threadsafe", n)] {
        Table::new(group, "native")
            .function("floor")
            .function("oneloop")
            .function("native")
            .param(n, n)
            .print();
    }
    if mode::selected("glib_timers_fire") {
        let oneloop = |n| fire_oneloop(oneloop_glib::new_loop().expect("loop"), n);
        let results = fire_table(
            "glib_timers_fire",
            &mode::sizes(&[1_000, 10_000, 100_000]),
            &[
                ("floor", &fire_floor),
                ("oneloop", &oneloop),
                ("native", &fire_native),
            ],
            2,
        );
        workload::assert_never_early("glib", &results, 1);
    }
}
