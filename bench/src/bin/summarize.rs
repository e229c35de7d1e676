//! Medians of same-run ratios over several bench runs: pass the saved
//! outputs of `cargo bench -p oneloop-bench` as arguments.

use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!(
            "usage: summarize RUN.log [RUN.log …]  (outputs of cargo bench -p oneloop-bench)"
        );
        return ExitCode::FAILURE;
    }
    let mut outputs = Vec::new();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(s) => outputs.push(s),
            Err(e) => {
                eprintln!("{f}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let summary = oneloop_bench::ratios::summarize(outputs.iter().map(String::as_str));
    println!("| group | function | param | median ratio | min | max | runs |");
    println!("|---|---|---|---|---|---|---|");
    for ((g, f, p), s) in summary {
        println!(
            "| {g} | {f} | {p} | {:.2} | {:.2} | {:.2} | {} |",
            s.median, s.min, s.max, s.runs
        );
    }
    ExitCode::SUCCESS
}
