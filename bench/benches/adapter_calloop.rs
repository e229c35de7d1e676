//! oneloop on calloop (`oneloop-calloop`, owned mode) against calloop's own
//! primitives and the plain-Rust floor, in the same run: `call_soon` vs
//! `insert_idle`, `call_soon_threadsafe` vs a `calloop::channel`, `call_at`
//! vs a `Timer` source per timer (sizes up to 1e4: inserting a calloop
//! timer is O(N), HOSTS.md).

use std::thread;
use std::time::Instant;

use calloop::EventLoop;
use calloop::channel::{Event, channel};
use calloop::timer::{TimeoutAction, Timer};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use oneloop_bench::cpu::thread_cpu_time;
use oneloop_bench::mode;
use oneloop_bench::ratios::Table;
use oneloop_bench::workload::{
    self, BATCH, Fired, Lateness, add, deadlines, fire_floor, fire_oneloop, fire_table, timed,
};

fn call_soon(c: &mut Criterion) {
    let mut g = c.benchmark_group("calloop_call_soon");
    g.throughput(Throughput::Elements(BATCH));
    workload::call_soon_cases(&mut g, oneloop_calloop::new_loop);
    g.bench_function(BenchmarkId::new("native", BATCH), |b| {
        let mut ev: EventLoop<'static, ()> = EventLoop::try_new().expect("event loop");
        let handle = ev.handle();
        b.iter_custom(|iters| {
            timed(iters, BATCH, || {
                for i in 0..BATCH {
                    handle.insert_idle(move |_| add(i));
                }
                ev.dispatch(Some(std::time::Duration::ZERO), &mut ())
                    .expect("dispatch");
            })
        });
    });
    g.finish();
}

fn threadsafe(c: &mut Criterion) {
    let n: u64 = if mode::smoke() { 1_000 } else { 100_000 };
    let mut g = c.benchmark_group("calloop_call_soon_threadsafe");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(n));
    workload::threadsafe_cases(&mut g, n, oneloop_calloop::new_loop);
    g.bench_function(BenchmarkId::new("native", n), |b| {
        let mut ev: EventLoop<'static, ()> = EventLoop::try_new().expect("event loop");
        b.iter_custom(|iters| {
            timed(iters, n, || {
                let (tx, rx) = channel::<Box<dyn FnOnce() + Send>>();
                let token = ev
                    .handle()
                    .insert_source(rx, |event, _, _| {
                        if let Event::Msg(f) = event {
                            f();
                        }
                    })
                    .expect("insert channel");
                let producer = thread::spawn(move || {
                    for i in 0..n {
                        tx.send(Box::new(move || add(i))).expect("send");
                    }
                });
                while workload::ran() < n {
                    ev.dispatch(None, &mut ()).expect("dispatch");
                }
                producer.join().expect("producer");
                ev.handle().remove(token);
            })
        });
    });
    g.finish();
}

/// One calloop `Timer` source per timer.
fn fire_native(n: usize) -> Fired {
    let late = Lateness::with_capacity(n);
    let mut ev: EventLoop<'static, ()> = EventLoop::try_new().expect("event loop");
    let handle = ev.handle();
    let cpu = thread_cpu_time();
    for w in deadlines(Instant::now(), n) {
        let late = late.clone();
        handle
            .insert_source(Timer::from_deadline(w), move |_, _, _| {
                late.record(w, Instant::now());
                TimeoutAction::Drop
            })
            .expect("insert timer");
    }
    while late.fired() < n {
        ev.dispatch(None, &mut ()).expect("dispatch");
    }
    late.finish(n, thread_cpu_time() - cpu)
}

fn main() {
    let mut c = mode::criterion();
    call_soon(&mut c);
    threadsafe(&mut c);
    c.final_summary();
    let n = if mode::smoke() { 1_000 } else { 100_000 };
    for (group, n) in [
        ("calloop_call_soon", BATCH),
        ("calloop_call_soon_threadsafe", n),
    ] {
        Table::new(group, "native")
            .function("floor")
            .function("oneloop")
            .function("native")
            .param(n, n)
            .print();
    }
    if mode::selected("calloop_timers_fire") {
        let oneloop = |n| fire_oneloop(oneloop_calloop::new_loop().expect("loop"), n);
        let results = fire_table(
            "calloop_timers_fire",
            &mode::sizes(&[1_000, 10_000]),
            &[
                ("floor", &fire_floor),
                ("oneloop", &oneloop),
                ("native", &fire_native),
            ],
            2,
        );
        workload::assert_never_early("calloop", &results, 1);
    }
}
