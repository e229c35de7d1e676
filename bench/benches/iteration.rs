//! One loop iteration as idle registrations grow: N readers on fds that
//! never become ready and N timers an hour away, N = 10 … 1e4, on the
//! default loop and every adapter (the performance plan's "loop iteration
//! cost flat as idle registered fds / pending timers grow", issue 17 item
//! 6). An iteration is a `call_soon_detached(stop)` and the `run_forever`
//! that runs it: one poll of the OS with a zero timeout, the timer queue's
//! look at its next deadline, one callback.
//!
//! The same cases are counted in instructions by `bench_icount run
//! --filter iteration_` (`oneloop_bench::icount::iteration`), which sees
//! the user-space part exactly; this bench times the whole iteration,
//! kernel included. A cell that needs more fds than the hard limit allows
//! is left out.

use criterion::{BenchmarkId, Criterion};
use oneloop::Loop;
use oneloop_bench::icount::iteration::{SIZES, loaded_loop};
use oneloop_bench::icount::loops;
use oneloop_bench::mode;
use oneloop_bench::ratios::median_ns;

const GROUP: &str = "loop_iteration";

/// Whether `n` readers fit under the hard fd limit.
fn timed(n: usize) -> bool {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    (n + 256) as u64 <= hard
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    for n in mode::sizes(&SIZES) {
        for (variant, make) in loops() {
            if !timed(n) || (mode::smoke() && n > 1_000) {
                continue;
            }
            let lp: Loop = make().expect("loop");
            let fds = loaded_loop(&lp, n);
            g.bench_function(BenchmarkId::new(variant, n), |b| {
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
    println!(
        "\n### {GROUP} — ns per iteration with N idle fds and N far timers (× N = 10 on the same loop)\n"
    );
    let variants: Vec<&str> = loops().iter().map(|(v, _)| *v).collect();
    println!("| N | {} |", variants.join(" | "));
    println!("|---|{}", "---|".repeat(variants.len()));
    let mut lines = Vec::new();
    for n in SIZES {
        let mut row = format!("| {n} |");
        for v in &variants {
            let cell = match (
                median_ns(GROUP, v, &n.to_string()),
                median_ns(GROUP, v, &SIZES[0].to_string()),
            ) {
                (Some(ns), Some(base)) => {
                    lines.push(format!("ratio\t{GROUP}\t{v}\t{n}\t{:.4}", ns / base));
                    format!(" {ns:.0} ({:.2}×) |", ns / base)
                }
                _ => " — |".to_owned(),
            };
            row.push_str(&cell);
        }
        println!("{row}");
    }
    println!();
    for l in lines {
        println!("{l}");
    }
}
