//! Benchmarks of oneloop against the host loops and the plain-Rust floor.
//!
//! The benches live in `benches/` (criterion, `harness = false`); this crate
//! holds what they share: the plain-Rust floors every group is measured
//! against, the thread CPU clock, the smoke/full mode switch, and the ratio
//! tables printed at the end of each run (PERFORMANCE.md: ratios in one run,
//! never absolute times). `docs/benchmarks.md` has the results and the
//! commands that reproduce them.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/targets/bench cargo bench -p oneloop-bench    # full run, ratio tables at the end
//! cargo test -p oneloop-bench                                          # smoke: each bench once, small sizes
//! cargo build --release -p oneloop-bench --bins && $CARGO_TARGET_DIR/release/bench_echo_matrix   # TCP echo, separate processes
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`floor`] | the floors: a boxed-closure queue, a binary-heap timer queue, a coalesced eventfd inbox |
//! | [`cpu`] | CPU time of the calling thread, and of the whole process |
//! | [`callgrind`] | callgrind's client requests (zero and dump the counters around a measured region) |
//! | [`icount`] | instruction counts under callgrind: the cases, the runner, the perf gate (binary `bench_icount`) |
//! | [`echo`] | the TCP echo benchmark: servers, load generator, driver (binaries `bench_echo_server`, `bench_echo_load`, `bench_echo_matrix`) |
//! | [`mode`] | smoke or full run, sizes, criterion settings |
//! | [`ratios`] | same-run ratio tables from criterion's estimates, and their medians over runs |
//! | [`workload`] | the workloads, written once against `oneloop::Loop` for every backend |
//! | [`watchdog`] | ends a round that hangs instead of hanging CI |
//! | [`Rng`] | the fixed-seed generator of the random workloads |

pub mod callgrind;
pub mod cpu;
pub mod echo;
pub mod floor;
pub mod icount;
pub mod mode;
pub mod ratios;
mod rng;
pub mod watchdog;
pub mod workload;

pub use rng::Rng;
