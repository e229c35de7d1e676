//! The 10 000-connection cell of issue 17 (item 5): connect time and server
//! CPU for 10 000 concurrent loopback connections × 16 KiB echo, on the
//! default loop and every adapter, in interleaved rounds
//! (`oneloop_bench::echo::c10k`).
//!
//! ```text
//! bench_echo_10k [--rounds 5] [--connections 10000] [--size 16384] [--in-flight 64]
//!                [--cells floor/native,protocol/native,protocol/tokio,…] [--no-pin]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use oneloop_bench::echo::args::Args;
use oneloop_bench::echo::c10k::{self, C10kConfig};
use oneloop_bench::echo::matrix::Cell;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_echo_10k: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env()?;
    let bin_dir: PathBuf = std::env::current_exe()?
        .parent()
        .ok_or("no directory for this executable")?
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut pin = !args.flag("no-pin");
    if pin && cpus < 2 {
        eprintln!("bench_echo_10k: not pinning (needs 2 CPUs; have {cpus})");
        pin = false;
    }
    let config = C10kConfig {
        cells: args.list::<Cell>("cells", C10kConfig::default_cells())?,
        connections: args.get("connections", 10_000)?,
        size: args.get("size", 16 * 1024)?,
        in_flight: args.get("in-flight", 64)?,
        rounds: args.get("rounds", 5)?,
        pin,
        bin_dir,
        stall: Duration::from_secs(args.get("stall-secs", 30)?),
    };
    eprintln!(
        "bench_echo_10k: {} cells × {} rounds, {} connections × {} B{}",
        config.cells.len(),
        config.rounds,
        config.connections,
        config.size,
        if pin {
            ", servers on CPU 0, this client on CPU 1"
        } else {
            ", unpinned"
        }
    );
    let results = c10k::run(&config)?;
    print!("{}", c10k::report(&config, &results));
    Ok(())
}
