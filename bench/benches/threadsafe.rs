//! `call_soon_threadsafe` throughput: one producer thread posts 100 000
//! callbacks back to back to a loop that runs them, against the floor (a
//! mutex queue with an eventfd wake coalesced on empty → non-empty) and
//! tokio's unbounded mpsc channel, in the same run.

use std::cell::Cell;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use oneloop::Loop;
use oneloop_bench::floor::Inbox;
use oneloop_bench::mode;
use oneloop_bench::ratios::Table;
use oneloop_bench::watchdog::Watchdog;

const GROUP: &str = "call_soon_threadsafe";

thread_local! {
    /// What the callbacks add to, on the consuming thread: each closure
    /// captures a value (so boxing it allocates) and the sum proves all ran.
    static SUM: Cell<u64> = const { Cell::new(0) };
}

fn add(i: u64) {
    SUM.with(|s| s.set(s.get().wrapping_add(i)));
}

/// Time `iters` rounds of `round(n)`, each checked to have run all `n`.
fn timed(iters: u64, n: u64, mut round: impl FnMut(u64)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        SUM.with(|s| s.set(0));
        let _watchdog = Watchdog::arm(GROUP, Duration::from_secs(60));
        let start = Instant::now();
        round(n);
        total += start.elapsed();
        assert_eq!(SUM.with(Cell::get), n * (n - 1) / 2, "a callback was lost");
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(2));
    let n: u64 = if mode::smoke() { 1_000 } else { 100_000 };
    g.throughput(Throughput::Elements(n));

    g.bench_function(BenchmarkId::new("floor", n), |b| {
        let inbox = Arc::new(Inbox::new().expect("poller"));
        let mut events = polling::Events::new();
        b.iter_custom(|iters| {
            timed(iters, n, |n| {
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
                    ran += inbox.wait_and_run(&mut events).expect("wait");
                }
                producer.join().expect("producer");
            })
        });
    });

    g.bench_function(BenchmarkId::new("oneloop", n), |b| {
        let lp = Loop::new().expect("loop");
        b.iter_custom(|iters| {
            timed(iters, n, |n| {
                let remote = lp.remote();
                let producer = thread::spawn(move || {
                    for i in 0..n {
                        remote.call_soon_threadsafe(move || add(i)).expect("post");
                    }
                    // Same FIFO: runs after every callback above (D8).
                    remote.stop().expect("stop");
                });
                lp.run_forever().expect("run");
                producer.join().expect("producer");
            })
        });
        lp.close().expect("close");
    });

    g.bench_function(BenchmarkId::new("tokio_mpsc", n), |b| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        b.iter_custom(|iters| {
            timed(iters, n, |n| {
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<Box<dyn FnOnce() + Send>>();
                let producer = thread::spawn(move || {
                    for i in 0..n {
                        if tx.send(Box::new(move || add(i))).is_err() {
                            panic!("receiver gone");
                        }
                    }
                });
                rt.block_on(async {
                    // Ends when the producer drops its sender.
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

fn main() {
    let mut c = mode::criterion();
    bench(&mut c);
    c.final_summary();
    let n = if mode::smoke() { 1_000 } else { 100_000 };
    Table::new(GROUP, "floor")
        .function("floor")
        .function("oneloop")
        .function("tokio_mpsc")
        .param(n, n)
        .print();
}
