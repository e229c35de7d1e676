//! One loop iteration as idle registrations grow: N readers on fds that
//! never become ready and N timers an hour away, N = 10 … 1e4 (the
//! performance plan's "loop iteration cost flat as idle registered fds /
//! pending timers grow"). An iteration is a `call_soon_detached(stop)` and
//! the `run_forever` that runs it: one poll of the OS with a zero timeout,
//! the timer queue's look at its next deadline, one callback.

use std::os::fd::OwnedFd;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use oneloop::Loop;
use oneloop_bench::mode;
use oneloop_bench::ratios::median_ns;

const GROUP: &str = "loop_iteration";
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// A loop with `n` idle readers and `n` far timers; the fds it watches.
fn loaded_loop(n: usize) -> (Loop, Vec<OwnedFd>) {
    let lp = Loop::new().expect("loop");
    let mut fds = Vec::with_capacity(n);
    for _ in 0..n {
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
            .expect("eventfd (is the fd limit below 1e4?)");
        lp.add_reader(&fd, || unreachable!("an idle eventfd became readable"))
            .expect("add_reader");
        fds.push(fd);
        lp.call_later(Duration::from_secs(3600), || {
            unreachable!("a far timer fired")
        })
        .expect("call_later");
    }
    (lp, fds)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    for n in SIZES {
        let (lp, fds) = loaded_loop(n);
        g.bench_function(BenchmarkId::new("oneloop", n), |b| {
            b.iter(|| {
                let lp2 = lp.clone();
                lp.call_soon_detached(move || lp2.stop())
                    .expect("call_soon_detached");
                lp.run_forever().expect("run_forever");
            });
        });
        assert_eq!(lp.stats().fds, n);
        assert_eq!(lp.stats().timers, n);
        lp.close().expect("close");
        drop(fds);
    }
    g.finish();
}

fn main() {
    let mut c = mode::criterion();
    bench(&mut c);
    c.final_summary();
    if mode::smoke() {
        return;
    }
    let base = median_ns(GROUP, "oneloop", &SIZES[0].to_string());
    println!("\n### {GROUP} — ns per iteration with N idle fds and N far timers (× N = 10)\n");
    println!("| N | ns | × N = 10 |\n|---|---|---|");
    for n in SIZES {
        let (Some(ns), Some(base)) = (median_ns(GROUP, "oneloop", &n.to_string()), base) else {
            println!("| {n} | (no criterion result found) | |");
            continue;
        };
        println!("| {n} | {ns:.0} | {:.2} |", ns / base);
        println!("ratio\t{GROUP}\toneloop\t{n}\t{:.4}", ns / base);
    }
}
