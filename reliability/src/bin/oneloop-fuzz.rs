//! `oneloop-fuzz`: fuzz every transport on every loop mode with random seeds
//! for a while (`make fuzz`), or replay one seed.
//!
//! ```text
//! cargo run -p oneloop-reliability --bin oneloop-fuzz -- --seconds 600
//! cargo run -p oneloop-reliability --bin oneloop-fuzz -- --mode glib-owned --scenario tcp --seed 42
//! ```
//!
//! Options: `--seconds N` (default 60), `--seed S` (replay: run this seed
//! once on each chosen mode and scenario), `--mode M` and `--scenario S`
//! (repeatable; default all). Every failing seed is printed with the
//! command that replays it; the exit status is 1 if any failed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use oneloop_reliability::{fuzz, modes, panic_text};

struct Options {
    seconds: u64,
    seed: Option<u64>,
    modes: Vec<String>,
    scenarios: Vec<String>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        seconds: 60,
        seed: None,
        modes: Vec::new(),
        scenarios: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--seed" => o.seed = Some(value()?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--mode" => o.modes.push(value()?),
            "--scenario" => o.scenarios.push(value()?),
            "-h" | "--help" => {
                return Err(
                    "usage: oneloop-fuzz [--seconds N] [--seed S] [--mode M]... [--scenario S]..."
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let all = modes::modes();
    let specs: Vec<_> = if o.modes.is_empty() {
        all
    } else {
        let mut chosen = Vec::new();
        for m in &o.modes {
            match modes::find(m) {
                Some(s) => chosen.push(s),
                None => {
                    let names: Vec<_> = all.iter().map(modes::slug).collect();
                    eprintln!("no mode {m}; the modes: {}", names.join(", "));
                    return ExitCode::from(2);
                }
            }
        }
        chosen
    };
    let scenarios: Vec<_> = if o.scenarios.is_empty() {
        fuzz::SCENARIOS.to_vec()
    } else {
        let mut chosen = Vec::new();
        for s in &o.scenarios {
            match fuzz::scenario(s) {
                Some(s) => chosen.push(s),
                None => {
                    let names: Vec<_> = fuzz::SCENARIOS.iter().map(|s| s.name).collect();
                    eprintln!("no scenario {s}; the scenarios: {}", names.join(", "));
                    return ExitCode::from(2);
                }
            }
        }
        chosen
    };
    // Quiet panics: a failure is printed once, with its seed, below.
    std::panic::set_hook(Box::new(|_| {}));
    for spec in &specs {
        for sc in &scenarios {
            if let Err(p) = std::panic::catch_unwind(|| fuzz::warm_up(spec, sc)) {
                eprintln!(
                    "warm-up of {} × {} failed: {}",
                    spec.name,
                    sc.name,
                    panic_text(&*p)
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let mut failed = Vec::new();
    let mut total = fuzz::Tally::default();
    let start = Instant::now();
    let limit = Duration::from_secs(o.seconds);
    let mut last_report = start;
    let mut round = 0u64;
    loop {
        for spec in &specs {
            for sc in &scenarios {
                let seed = o.seed.unwrap_or_else(|| fastrand::u64(..));
                match std::panic::catch_unwind(|| fuzz::run_one(spec, sc, seed)) {
                    Ok(t) => total.add(&t),
                    Err(p) => {
                        let why = panic_text(&*p);
                        println!("FAILED: {why}\n");
                        failed.push(format!("{} × {} seed {seed}", spec.name, sc.name));
                    }
                }
            }
        }
        round += 1;
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "{:>5.0} s: {} runs, {} failed, {} MB through, {} faults injected",
                start.elapsed().as_secs_f64(),
                total.runs,
                failed.len(),
                total.bytes_received / 1_000_000,
                total.faults_injected
            );
        }
        if o.seed.is_some() || start.elapsed() >= limit {
            break;
        }
    }
    println!(
        "\n{} rounds, {} runs in {:.0} s on {} mode(s) × {} scenario(s): {} bytes sent, {} received, {} lost, {} faults injected, {} errors reported, {} read pauses; {} failed",
        round,
        total.runs,
        start.elapsed().as_secs_f64(),
        specs.len(),
        scenarios.len(),
        total.bytes_sent,
        total.bytes_received,
        total.bytes_lost,
        total.faults_injected,
        total.errors_reported,
        total.read_pauses,
        failed.len()
    );
    if failed.is_empty() && total.bytes_lost == 0 {
        ExitCode::SUCCESS
    } else {
        for f in &failed {
            println!("failed: {f}");
        }
        ExitCode::FAILURE
    }
}
