//! `oneloop-soak`: the soak on every loop mode, one after another on the
//! main thread (`make soak`), its figures printed and, with `--write`,
//! put into docs/reliability.md between the soak markers.
//!
//! ```text
//! cargo run -p oneloop-reliability --bin oneloop-soak -- --seconds 60 --write docs/reliability.md
//! ```
//!
//! Options: `--seconds N` per mode (default 60), `--seed S` (default
//! random, printed), `--mode M` (repeatable; default all), `--write FILE`.
//! The exit status is 1 if any mode's soak found a problem.

use std::process::ExitCode;
use std::time::Duration;

use oneloop_reliability::{modes, soak};

const BEGIN: &str = "<!-- soak:begin (written by `make soak`) -->";
const END: &str = "<!-- soak:end -->";

fn main() -> ExitCode {
    let mut seconds = 60u64;
    let mut seed = fastrand::u64(..);
    let mut chosen = Vec::new();
    let mut write = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next();
        let parsed = match (a.as_str(), v) {
            ("--seconds", Some(v)) => v.parse().map(|n| seconds = n).map_err(|e| e.to_string()),
            ("--seed", Some(v)) => v.parse().map(|n| seed = n).map_err(|e| e.to_string()),
            ("--mode", Some(v)) => modes::find(&v)
                .map(|s| chosen.push(s))
                .ok_or_else(|| format!("no mode {v}")),
            ("--write", Some(v)) => {
                write = Some(v);
                Ok(())
            }
            _ => Err(format!(
                "usage: oneloop-soak [--seconds N] [--seed S] [--mode M]... [--write FILE] (at {a})"
            )),
        };
        if let Err(e) = parsed {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let specs = if chosen.is_empty() {
        modes::modes()
    } else {
        chosen
    };
    println!(
        "soak: {} mode(s), {seconds} s each, seed {seed}",
        specs.len()
    );
    let mut reports = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let r = soak::run(
            spec,
            Duration::from_secs(seconds),
            seed.wrapping_add(i as u64),
        );
        print!("{}", soak::render(std::slice::from_ref(&r)));
        for p in &r.problems {
            println!("  problem: {p}");
        }
        reports.push(r);
    }
    let table = soak::render(&reports);
    let held = reports.iter().all(|r| r.problems.is_empty());
    println!("\n{table}");
    if let Some(path) = write {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
            eprintln!("{path} has no soak markers ({BEGIN} … {END})");
            return ExitCode::from(2);
        };
        let block = format!(
            "{BEGIN}\n\nSeed {seed}, {seconds} s per mode, {} (debug build: `cargo run` without `--release`, as `make soak` runs it).\n\n{table}\n",
            if held {
                "every mode held"
            } else {
                "NOT every mode held"
            }
        );
        let out = format!("{}{block}{}", &text[..b], &text[e..]);
        if let Err(err) = std::fs::write(&path, out) {
            eprintln!("cannot write {path}: {err}");
            return ExitCode::from(2);
        }
        println!("wrote the figures to {path}");
    }
    if held {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
