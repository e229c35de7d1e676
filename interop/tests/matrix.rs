//! Every cell of the interop matrix as a test: `<mode>::<guest>`.
//!
//! Run with `cargo test -p oneloop-interop --test matrix`; a cell that
//! cannot exist on its mode is listed as ignored, and its reason printed
//! first. With `ONELOOP_INTEROP_REPORT=<path>` the matrix is also written
//! there as Markdown (`make demo` writes `docs/interop.md`).

use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};
use oneloop_interop::{CellResult, GUESTS, modes, render_report, run_cell};

fn main() {
    let args = Arguments::from_args();
    let modes = modes();
    let results = Arc::new(Mutex::new(vec![
        vec![CellResult::NotRun; GUESTS.len()];
        modes.len()
    ]));
    let mut trials = Vec::new();
    for (m, mode) in modes.iter().enumerate() {
        for (g, guest) in GUESTS.iter().enumerate() {
            let name = format!("{}::{}", mode.spec.name, guest.name);
            let skip = guest.not_applicable(mode);
            if let Some(why) = skip {
                eprintln!("n/a: {name}: {why}");
                results.lock().unwrap()[m][g] = CellResult::NotApplicable(why);
            }
            let (spec, results) = (mode.spec.clone(), results.clone());
            let trial = Trial::test(name, move || {
                let outcome = std::panic::catch_unwind(|| run_cell(&spec, guest))
                    .map_err(|payload| panic_text(&*payload));
                let cell = match &outcome {
                    Ok(()) => CellResult::Passed,
                    Err(why) => CellResult::Failed(why.clone()),
                };
                results.lock().unwrap_or_else(|e| e.into_inner())[m][g] = cell;
                outcome.map_err(Failed::from)
            });
            trials.push(trial.with_ignored_flag(skip.is_some()));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(path) = std::env::var_os("ONELOOP_INTEROP_REPORT") {
        let results = results.lock().unwrap_or_else(|e| e.into_inner());
        let report = render_report(&modes, &results);
        println!("\n{report}");
        if let Err(e) = std::fs::write(&path, report) {
            eprintln!("cannot write {}: {e}", path.to_string_lossy());
            std::process::exit(101);
        }
    }
    conclusion.exit();
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}
