//! `oneloop-report`: the guarantee × adapter matrix of the conformance suite.
//!
//! ```text
//! oneloop-report [--results DIR | --workspace] [--write docs/conformance.md]
//! ```
//!
//! - `--results DIR` reads every results file the conformance harnesses
//!   wrote to `DIR` (run `cargo test --workspace --test conformance` with
//!   `ONELOOP_CONFORMANCE_OUT=DIR`);
//! - `--workspace` runs that command itself (into `target/conformance`),
//!   then reads the results: every adapter of the workspace in one go;
//! - with neither, it runs the default loop's suite in this process.
//!
//! Prints the matrix, writes the Markdown report with `--write`, and exits
//! non-zero if any MUST check failed.

use std::path::PathBuf;
use std::process::ExitCode;

use oneloop_conformance::results::{self, Row};
use oneloop_conformance::{Options, checks, native_spec, report, run_check_with};

fn usage() -> ExitCode {
    eprintln!("usage: oneloop-report [--results DIR | --workspace] [--write FILE]");
    ExitCode::from(2)
}

/// Runs every `conformance` test of the workspace with results going to
/// `target/conformance`, and returns that directory. A failing test run is
/// not an error here: the report shows what failed.
fn run_workspace() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let dir = results::resolve_dir("target/conformance".as_ref());
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("oneloop-report: cargo test --workspace --test conformance ...");
    let status = std::process::Command::new(cargo)
        .args(["test", "--workspace", "--test", "conformance", "-q"])
        .env(oneloop_conformance::RESULTS_ENV, &dir)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        eprintln!("oneloop-report: some conformance tests failed ({status}); see the report");
    }
    Ok(dir)
}

fn main() -> ExitCode {
    let mut results_dir: Option<PathBuf> = None;
    let mut write: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--results") => match args.next() {
                Some(d) => results_dir = Some(results::resolve_dir(d.as_ref())),
                None => return usage(),
            },
            Some("--write") => match args.next() {
                Some(f) => write = Some(f.into()),
                None => return usage(),
            },
            Some("--workspace") => match run_workspace() {
                Ok(d) => results_dir = Some(d),
                Err(e) => {
                    eprintln!("oneloop-report: {e}");
                    return ExitCode::from(2);
                }
            },
            Some("-h" | "--help") => {
                let _ = usage();
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let rows: Vec<Row> = match &results_dir {
        Some(dir) => match results::read_dir(dir) {
            Ok(rows) if !rows.is_empty() => rows,
            Ok(_) => {
                eprintln!("oneloop-report: no results in {}", dir.display());
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("oneloop-report: cannot read {}: {e}", dir.display());
                return ExitCode::from(2);
            }
        },
        None => {
            let spec = native_spec();
            eprintln!("oneloop-report: running the suite on `{}` ...", spec.name);
            checks()
                .iter()
                .map(|c| Row::new(spec.name, c, run_check_with(&spec, c, Options::default())))
                .collect()
        }
    };
    print!("{}", report::terminal(&rows));
    if let Some(path) = &write {
        if let Err(e) = std::fs::write(path, report::markdown(&rows)) {
            eprintln!("oneloop-report: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("wrote {}", path.display());
    }
    if report::must_failed(&rows) {
        eprintln!("oneloop-report: a MUST guarantee fails");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
