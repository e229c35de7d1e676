//! oneloop on tokio (`oneloop-tokio`, owned mode) against tokio's own
//! primitives and the plain-Rust floor, in the same run: `call_soon` vs
//! `spawn_local`, `call_soon_threadsafe` vs an unbounded mpsc channel,
//! `call_at` vs a task awaiting `sleep_until` per timer.

use std::thread;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use oneloop_bench::cpu::thread_cpu_time;
use oneloop_bench::mode;
use oneloop_bench::ratios::Table;
use oneloop_bench::workload::{
    self, BATCH, Fired, Lateness, add, deadlines, fire_floor, fire_oneloop, fire_table, timed,
};

const HOST: &str = "tokio";

fn call_soon(c: &mut Criterion) {
    let mut g = c.benchmark_group("tokio_call_soon");
    g.throughput(Throughput::Elements(BATCH));
    workload::call_soon_cases(&mut g, oneloop_tokio::new_loop);
    g.bench_function(BenchmarkId::new("native", BATCH), |b| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                let local = tokio::task::LocalSet::new();
                for i in 0..BATCH {
                    local.spawn_local(async move { add(i) });
                }
                rt.block_on(local);
            })
        });
    });
    g.finish();
}

fn threadsafe(c: &mut Criterion) {
    let n: u64 = if mode::smoke() { 1_000 } else { 100_000 };
    let mut g = c.benchmark_group("tokio_call_soon_threadsafe");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(n));
    workload::threadsafe_cases(&mut g, n, oneloop_tokio::new_loop);
    g.bench_function(BenchmarkId::new("native", n), |b| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        b.iter_custom(|iters| {
            timed(iters, n, || {
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<Box<dyn FnOnce() + Send>>();
                let producer = thread::spawn(move || {
                    for i in 0..n {
                        assert!(tx.send(Box::new(move || add(i))).is_ok(), "receiver gone");
                    }
                });
                rt.block_on(async {
                    while let Some(f) = rx.recv().await {
                        f();
                    }
                });
                producer.join().expect("producer");
            })
        });
    });
    g.finish();
}

/// One tokio task awaiting `sleep_until` per timer.
fn fire_native(n: usize) -> Fired {
    let late = Lateness::with_capacity(n);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let cpu = thread_cpu_time();
    let local = tokio::task::LocalSet::new();
    for w in deadlines(std::time::Instant::now(), n) {
        let late = late.clone();
        local.spawn_local(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(w)).await;
            late.record(w, std::time::Instant::now());
        });
    }
    rt.block_on(local);
    late.finish(n, thread_cpu_time() - cpu)
}

fn main() {
    let mut c = mode::criterion();
    call_soon(&mut c);
    threadsafe(&mut c);
    c.final_summary();
    let n = if mode::smoke() { 1_000 } else { 100_000 };
    for (group, n) in [
        ("tokio_call_soon", BATCH),
        ("tokio_call_soon_threadsafe", n),
    ] {
        Table::new(group, "native")
            .function("floor")
            .function("oneloop")
            .function("native")
            .param(n, n)
            .print();
    }
    if mode::selected("tokio_timers_fire") {
        let oneloop = |n| fire_oneloop(oneloop_tokio::new_loop().expect("loop"), n);
        let results = fire_table(
            "tokio_timers_fire",
            &mode::sizes(&[1_000, 10_000, 100_000, 1_000_000]),
            &[
                ("floor", &fire_floor),
                ("oneloop", &oneloop),
                ("native", &fire_native),
            ],
            2,
        );
        workload::assert_never_early(HOST, &results, 1);
    }
}
