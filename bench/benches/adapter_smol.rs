//! oneloop on smol's engine, async-io + async-executor
//! (`oneloop-smol`, owned mode) against that engine's own primitives
//! and the plain-Rust floor, in the same run: `call_soon` vs
//! `LocalExecutor::spawn`, `call_at` vs a task awaiting an
//! `async_io::Timer` per timer. `call_soon_threadsafe` is measured against
//! the floor only: the engine has no cross-thread callback primitive of
//! its own (smol users reach for a channel crate).

use std::rc::Rc;
use std::time::Instant;

use async_executor::LocalExecutor;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use oneloop::Loop;
use oneloop_bench::cpu::thread_cpu_time;
use oneloop_bench::mode;
use oneloop_bench::ratios::Table;
use oneloop_bench::workload::{
    self, BATCH, Fired, Lateness, add, deadlines, fire_floor, fire_oneloop, fire_table, timed,
};
use oneloop_smol::SmolBackend;

fn new_loop() -> oneloop::Result<Loop> {
    Loop::with_backend(SmolBackend::new()?)
}

fn call_soon(c: &mut Criterion) {
    let mut g = c.benchmark_group("smol_call_soon");
    g.throughput(Throughput::Elements(BATCH));
    workload::call_soon_cases(&mut g, new_loop);
    g.bench_function(BenchmarkId::new("native", BATCH), |b| {
        let ex = LocalExecutor::new();
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                for i in 0..BATCH {
                    ex.spawn(async move { add(i) }).detach();
                }
                while ex.try_tick() {}
            })
        });
    });
    g.finish();
}

fn threadsafe(c: &mut Criterion) {
    let n: u64 = if mode::smoke() { 1_000 } else { 100_000 };
    let mut g = c.benchmark_group("smol_call_soon_threadsafe");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(n));
    workload::threadsafe_cases(&mut g, n, new_loop);
    g.finish();
}

/// One `LocalExecutor` task awaiting an `async_io::Timer` per timer.
fn fire_native(n: usize) -> Fired {
    let late = Lateness::with_capacity(n);
    let ex = Rc::new(LocalExecutor::new());
    let cpu = thread_cpu_time();
    let tasks: Vec<_> = deadlines(Instant::now(), n)
        .into_iter()
        .map(|w| {
            let late = late.clone();
            ex.spawn(async move {
                async_io::Timer::at(w).await;
                late.record(w, Instant::now());
            })
        })
        .collect();
    async_io::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
    late.finish(n, thread_cpu_time() - cpu)
}

fn main() {
    let mut c = mode::criterion();
    call_soon(&mut c);
    threadsafe(&mut c);
    c.final_summary();
    Table::new("smol_call_soon", "native")
        .function("floor")
        .function("oneloop")
        .function("native")
        .param(BATCH, BATCH)
        .print();
    let n = if mode::smoke() { 1_000 } else { 100_000 };
    Table::new("smol_call_soon_threadsafe", "floor")
        .function("floor")
        .function("oneloop")
        .param(n, n)
        .print();
    if mode::selected("smol_timers_fire") {
        let oneloop = |n| fire_oneloop(new_loop().expect("loop"), n);
        let results = fire_table(
            "smol_timers_fire",
            &mode::sizes(&[1_000, 10_000, 100_000]),
            &[
                ("floor", &fire_floor),
                ("oneloop", &oneloop),
                ("native", &fire_native),
            ],
            2,
        );
        workload::assert_never_early("smol", &results, 1);
    }
}
