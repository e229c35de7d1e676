//! Instruction counts under callgrind, and the perf gate
//! (`oneloop_bench::icount`).
//!
//! ```text
//! bench_icount gate [--update] [--baseline FILE] [--jobs N]   # the perf gate of `make test`
//! bench_icount run [--filter S] [--all] [--jobs N]            # counts and ratios as a table
//! bench_icount list                                           # the cases of this build
//! bench_icount case NAME                                      # one case (what the runner starts)
//! ```
//!
//! `gate` runs every gated case under callgrind and fails (exit 1) when a
//! count is more than 10 % above the one recorded in
//! `bench/icount-baseline.tsv`, or when a case has no recorded count;
//! `--update` records the counts instead. `run` takes the gated cases, or
//! every case with `--all` (the iteration table too), or those whose name
//! contains `--filter`.

use std::path::PathBuf;
use std::process::ExitCode;

use oneloop_bench::echo::args::Args;
use oneloop_bench::icount::{self, runner};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench_icount: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    if command == "case" {
        let name = argv.next().ok_or("`bench_icount case NAME`")?;
        let case = icount::find(&name).ok_or_else(|| format!("no case `{name}` (see `list`)"))?;
        return match case.run {
            icount::Run::InProcess(run) => {
                run(&case);
                Ok(ExitCode::SUCCESS)
            }
            icount::Run::EchoServer(..) => Err(format!(
                "`{name}` counts `bench_echo_server` from outside: `bench_icount run --filter {name}`"
            )
            .into()),
        };
    }
    let args = Args::parse(argv)?;
    let jobs = args.get(
        "jobs",
        std::thread::available_parallelism().map_or(1, usize::from),
    )?;
    let exe = std::env::current_exe()?;
    match command.as_str() {
        "list" => {
            for c in icount::cases() {
                println!(
                    "{}\t{} ops\t{}",
                    c.name,
                    c.ops,
                    if c.gated { "gated" } else { "table" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        "run" => {
            if let Some(why) = runner::unsupported() {
                return Err(format!("cannot count instructions here: {why}").into());
            }
            let filter: String = args.get("filter", String::new())?;
            let cases: Vec<_> = icount::cases()
                .into_iter()
                .filter(|c| {
                    if filter.is_empty() {
                        c.gated || args.flag("all")
                    } else {
                        c.name.contains(&filter)
                    }
                })
                .collect();
            let counts = runner::run_all(&exe, &cases, &runner::work_dir(), jobs)?;
            println!("{}", runner::table(&cases, &counts, None));
            Ok(ExitCode::SUCCESS)
        }
        "gate" => gate(&args, &exe, jobs),
        _ => Err(format!("unknown command `{command}` (gate, run, list, case)").into()),
    }
}

fn gate(
    args: &Args,
    exe: &std::path::Path,
    jobs: usize,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let path: PathBuf = args.get("baseline", runner::default_baseline())?;
    if let Some(why) = runner::unsupported() {
        println!("perf gate: SKIPPED: {why}");
        return Ok(ExitCode::SUCCESS);
    }
    let baseline = match runner::Baseline::read(&path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if !args.flag("update")
        && let Some(m) = baseline.as_ref().and_then(|b| b.machine.as_ref())
        && *m != runner::machine()
    {
        println!(
            "perf gate: SKIPPED: the counts in {} were recorded on {m}, this is {}; \
             instruction counts of another architecture are not comparable \
             (`make perf-gate-update` records this machine's)",
            path.display(),
            runner::machine()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cases: Vec<_> = icount::cases().into_iter().filter(|c| c.gated).collect();
    eprintln!(
        "perf gate: {} cases under callgrind, {jobs} at a time",
        cases.len()
    );
    let counts = runner::run_all(exe, &cases, &runner::work_dir(), jobs)?;
    if args.flag("update") {
        runner::Baseline::write(&path, &counts, &cases)?;
        println!("{}", runner::table(&cases, &counts, None));
        println!(
            "perf gate: recorded {} counts in {}",
            counts.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let baseline = baseline.unwrap_or_default();
    println!("{}", runner::table(&cases, &counts, Some(&baseline)));
    let verdicts = runner::compare(&cases, &counts, &baseline);
    let bad: Vec<_> = verdicts
        .iter()
        .filter(|v| matches!(v.3, runner::Verdict::Regressed | runner::Verdict::New))
        .collect();
    let improved = verdicts
        .iter()
        .filter(|v| v.3 == runner::Verdict::Improved)
        .count();
    if improved > 0 {
        println!(
            "perf gate: {improved} count(s) more than {:.0} % below the record: \
             `make perf-gate-update` records them, so that the gate holds the gain",
            runner::TOLERANCE * 100.0
        );
    }
    if bad.is_empty() {
        println!(
            "perf gate: {} passed, 0 failed (no count more than {:.0} % above {})",
            verdicts.len(),
            runner::TOLERANCE * 100.0,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (name, recorded, now, verdict) in &bad {
        match (verdict, recorded) {
            (runner::Verdict::Regressed, Some(r)) => println!(
                "perf gate: {name}: {now:.1} instructions per op, recorded {r:.1} ({:+.1} %)",
                (now / r - 1.0) * 100.0
            ),
            _ => println!("perf gate: {name}: no recorded count ({now:.1} now)"),
        }
    }
    println!(
        "perf gate: {} passed, {} failed. A regression is fixed, or (if it is the price of \
         a change worth it) recorded with `make perf-gate-update` and explained in the commit.",
        verdicts.len() - bad.len(),
        bad.len()
    );
    Ok(ExitCode::FAILURE)
}
