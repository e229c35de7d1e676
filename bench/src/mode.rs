//! Smoke or full run, and the criterion settings every group shares.
//!
//! `cargo bench` passes `--bench` to a bench binary; `cargo test` does not,
//! and criterion then runs each benchmark once without timing it (its test
//! mode). The benches use the same switch to keep the smoke run to small
//! sizes, so `cargo test -p oneloop-bench` stays a matter of seconds even in
//! an unoptimised build.

use std::time::Duration;

use criterion::Criterion;

/// Whether this is a smoke run (`cargo test`), not a measurement (`cargo bench`).
pub fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// Whether a custom (non-criterion) benchmark named `name` is selected by
/// the command line's filter, as criterion selects its own by substring:
/// no filter selects everything.
///
/// ```
/// // Without a filter argument, everything runs.
/// assert!(oneloop_bench::mode::selected("timers_fire"));
/// ```
pub fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// `full`, cut to the sizes up to 10 000 in a smoke run.
///
/// ```
/// // Under `cargo test` (no `--bench` argument) only the small sizes stay.
/// let sizes = oneloop_bench::mode::sizes(&[1_000, 10_000, 100_000]);
/// assert_eq!(sizes, [1_000, 10_000]);
/// ```
pub fn sizes(full: &[usize]) -> Vec<usize> {
    full.iter()
        .copied()
        .filter(|&n| !smoke() || n <= 10_000)
        .collect()
}

/// Criterion configured for a 2-core shared machine: short warm-up, a few
/// seconds of measurement, and the command-line options applied.
pub fn criterion() -> Criterion {
    crate::ratios::run_started();
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}
