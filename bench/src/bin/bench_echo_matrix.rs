//! The echo benchmark's driver: starts an `bench_echo_server` per cell pinned to
//! CPU 0, runs `bench_echo_load` pinned to CPU 1 against each in interleaved
//! rounds, and prints the tables and same-round ratios of
//! `docs/benchmarks.md`.
//!
//! ```text
//! bench_echo_matrix [--rounds 3] [--secs 2] [--warmup 1] [--connections 10]
//!             [--sizes 1024,16384,102400] [--cells protocol/native,raw/tokio,…] [--no-pin]
//! ```

use std::path::PathBuf;

use oneloop_bench::echo::args::Args;
use oneloop_bench::echo::matrix::{self, Cell, MatrixConfig};

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_echo_matrix: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env()?;
    let bin_dir: PathBuf = std::env::current_exe()?
        .parent()
        .ok_or("no directory for this executable")?
        .to_owned();
    let mut pin = !args.flag("no-pin");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if pin && (cpus < 2 || which("taskset").is_none()) {
        eprintln!(
            "bench_echo_matrix: not pinning (needs `taskset` and 2 CPUs; have {cpus} CPU(s){})",
            if which("taskset").is_none() {
                ", no taskset"
            } else {
                ""
            }
        );
        pin = false;
    }
    let config = MatrixConfig {
        cells: args.list::<Cell>("cells", Cell::default_matrix())?,
        sizes: args.list("sizes", vec![1024, 16 * 1024, 100 * 1024])?,
        connections: args.get("connections", 10)?,
        rounds: args.get("rounds", 3)?,
        secs: args.get("secs", 2.0)?,
        warmup: args.get("warmup", 1.0)?,
        pin,
        bin_dir,
    };
    eprintln!(
        "bench_echo_matrix: {} cells × {} sizes × {} rounds of {} s{}",
        config.cells.len(),
        config.sizes.len(),
        config.rounds,
        config.secs,
        if pin {
            ", servers on CPU 0, load on CPU 1"
        } else {
            ", unpinned"
        }
    );
    let results = matrix::run(&config)?;
    matrix::print(&config, &results);
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.is_file())
}
