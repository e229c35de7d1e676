//! Leak counts on every loop mode (issue 16 item 6): `<mode>::loops`
//! (10 000 loops created, run and closed), `<mode>::timers` (1 000 000
//! timers scheduled and cancelled), `<mode>::connections` (10 000
//! connections opened and closed), `<mode>::dropped` (300 loops dropped
//! without `close()` while a server listens, a connection, a task, a timer
//! and, every tenth, a child are pending); after each, fds are back to their base,
//! threads too, and resident memory has not grown past the slack
//! (`oneloop_reliability::leaks` states and justifies the thresholds).
//! One trial at a time: the counters are process-wide.

use libtest_mimic::{Arguments, Failed, Trial};
use oneloop_reliability::{leaks, modes};

const LOOPS: u64 = 10_000;
const TIMERS: u64 = 1_000_000;
const CONNECTIONS: u64 = 10_000;
const DROPPED: u64 = 300;

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let mut trials = Vec::new();
    type Counter = fn(&oneloop_conformance::AdapterSpec, u64) -> leaks::Count;
    let counts: [(&str, Counter, u64); 4] = [
        ("loops", leaks::loops, LOOPS),
        ("timers", leaks::timers, TIMERS),
        ("connections", leaks::connections, CONNECTIONS),
        ("dropped", leaks::dropped, DROPPED),
    ];
    for spec in modes::modes() {
        for (what, counter, n) in counts {
            let spec = spec.clone();
            trials.push(Trial::test(
                format!("{}::{what}", modes::slug(&spec)),
                move || {
                    let c = std::panic::catch_unwind(|| counter(&spec, n))
                        .map_err(|p| Failed::from(oneloop_reliability::panic_text(&*p)))?;
                    eprintln!(
                        "{} × {} {}: {:.1} s, fds {}→{}, threads {}→{} (+ pool {}→{}), rss +{} KiB",
                        c.mode,
                        c.n,
                        c.what,
                        c.elapsed.as_secs_f64(),
                        c.base.fds,
                        c.after.fds,
                        c.base.threads,
                        c.after.threads,
                        c.base.pool_threads,
                        c.after.pool_threads,
                        c.rss_growth() / 1024
                    );
                    c.verdict().map_err(Failed::from)
                },
            ));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
