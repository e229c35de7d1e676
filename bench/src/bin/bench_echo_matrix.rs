//! The echo benchmark's driver: starts a server per cell pinned to CPU 0,
//! runs `bench_echo_load` pinned to CPU 1 against each in interleaved
//! rounds, counts each server's instructions per request under callgrind,
//! and prints the tables and same-round ratios of `docs/benchmarks.md`.
//!
//! ```text
//! bench_echo_matrix [--rounds 5] [--secs 2] [--warmup 1] [--connections 10]
//!             [--sizes 1024,16384,102400] [--cells floor/native,protocol/native,…]
//!             [--python VENV/bin/python] [--instructions] [--requests 2000]
//!             [--out DIR] [--no-pin]
//! ```
//!
//! `--python` adds uvloop's and CPython's asyncio protocol echo
//! (`bench/python/echo_server.py`; `make bench-echo` makes the venv).
//! `--instructions` adds the callgrind pass (`--rounds 0` for that pass
//! alone). `--out DIR` writes `echo.md` (the tables) and `echo.json` (what
//! `bench/python/plot.py` draws) there.

use std::path::PathBuf;

use oneloop_bench::echo::args::Args;
use oneloop_bench::echo::instructions::{self, CountConfig, Counts};
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
    let python: Option<PathBuf> = args
        .get::<String>("python", String::new())
        .map(|p| (!p.is_empty()).then(|| PathBuf::from(p)))?;
    let config = MatrixConfig {
        cells: args.list::<Cell>("cells", Cell::default_matrix(python.is_some()))?,
        sizes: args.list("sizes", vec![1024, 16 * 1024, 100 * 1024])?,
        connections: args.get("connections", 10)?,
        rounds: args.get("rounds", 5)?,
        secs: args.get("secs", 2.0)?,
        warmup: args.get("warmup", 1.0)?,
        pin,
        bin_dir,
        python,
        python_script: MatrixConfig::default_python_script(),
    };
    let out_dir: Option<PathBuf> = args
        .get::<String>("out", String::new())
        .map(|p| (!p.is_empty()).then(|| PathBuf::from(p)))?;
    let counting = args.flag("instructions");
    eprintln!(
        "bench_echo_matrix: {} cells × {} sizes × {} rounds of {} s{}{}",
        config.cells.len(),
        config.sizes.len(),
        config.rounds,
        config.secs,
        if pin {
            ", servers on CPU 0, load on CPU 1"
        } else {
            ", unpinned"
        },
        if counting {
            ", then instructions under callgrind"
        } else {
            ""
        }
    );
    let results = matrix::run(&config)?;
    let counts = if counting {
        let dir = out_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("callgrind");
        instructions::run(
            &config,
            &CountConfig {
                requests: args.get("requests", 2000)?,
                python_requests: args.get("python-requests", 500)?,
                warmup: args.get("warmup-requests", 200)?,
                dir,
            },
        )?
    } else {
        Counts::new()
    };
    let report = matrix::report(&config, &results, &counts);
    print!("{report}");
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("echo.md"), &report)?;
        let json = matrix::to_json(&config, &results, &counts);
        std::fs::write(dir.join("echo.json"), serde_json::to_string_pretty(&json)?)?;
        eprintln!(
            "bench_echo_matrix: wrote echo.md and echo.json in {}",
            dir.display()
        );
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.is_file())
}
