//! `call_soon`: 1000 callbacks queued then run, per iteration, on the
//! default loop (dropping and keeping the handle), against the floor
//! (`VecDeque<Box<dyn FnOnce()>>`, with and without an `Rc` cancel handle)
//! and tokio's `spawn_local`, in the same run.

use std::cell::Cell;
use std::rc::Rc;

use criterion::{BenchmarkId, Criterion, Throughput};
use oneloop::Loop;
use oneloop_bench::floor::Queue;
use oneloop_bench::mode;
use oneloop_bench::ratios::Table;
use oneloop_bench::workload::{BATCH, add, call_soon_batch, timed};

const GROUP: &str = "call_soon";

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Elements(BATCH));

    g.bench_function(BenchmarkId::new("floor", BATCH), |b| {
        let mut q = Queue::default();
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                for i in 0..BATCH {
                    q.push(move || add(i));
                }
                q.run_all();
            })
        });
    });

    g.bench_function(BenchmarkId::new("floor_rc_handle", BATCH), |b| {
        // The floor plus what a cancellable handle costs done naively: a
        // shared flag per callback, checked before it runs.
        let mut q = Queue::default();
        let mut handles = Vec::with_capacity(BATCH as usize);
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                for i in 0..BATCH {
                    let cancelled = Rc::new(Cell::new(false));
                    handles.push(cancelled.clone());
                    q.push(move || {
                        if !cancelled.get() {
                            add(i);
                        }
                    });
                }
                q.run_all();
                handles.clear();
            })
        });
    });

    g.bench_function(BenchmarkId::new("oneloop_drop_handle", BATCH), |b| {
        let lp = Loop::new().expect("loop");
        b.iter_custom(|iters| timed(iters, BATCH, || call_soon_batch(&lp, BATCH)));
        lp.close().expect("close");
    });

    g.bench_function(BenchmarkId::new("oneloop_detached", BATCH), |b| {
        let lp = Loop::new().expect("loop");
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                for i in 0..BATCH {
                    lp.call_soon_detached(move || add(i))
                        .expect("call_soon_detached");
                }
                lp.stop();
                lp.run_forever().expect("run");
            })
        });
        lp.close().expect("close");
    });

    g.bench_function(BenchmarkId::new("oneloop_keep_handle", BATCH), |b| {
        let lp = Loop::new().expect("loop");
        let mut handles = Vec::with_capacity(BATCH as usize);
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                for i in 0..BATCH {
                    handles.push(lp.call_soon(move || add(i)).expect("call_soon"));
                }
                lp.stop();
                lp.run_forever().expect("run");
                handles.clear();
            })
        });
        lp.close().expect("close");
    });

    g.bench_function(BenchmarkId::new("tokio_spawn_local", BATCH), |b| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                // A LocalSet completes when all its tasks have.
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

fn main() {
    let mut c = mode::criterion();
    bench(&mut c);
    c.final_summary();
    Table::new(GROUP, "floor")
        .function("floor")
        .function("floor_rc_handle")
        .function("oneloop_drop_handle")
        .function("oneloop_detached")
        .function("oneloop_keep_handle")
        .function("tokio_spawn_local")
        .param(BATCH, BATCH)
        .print();
}
