//! Every cell of the interop matrix as a test: `<mode>::<guest>`.
//!
//! Run with `cargo test -p oneloop-interop --test matrix`; a cell that
//! cannot exist on its mode is listed as ignored, and its reason printed
//! first.

use libtest_mimic::{Arguments, Failed, Trial};
use oneloop_interop::{GUESTS, modes, run_cell};

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for mode in modes() {
        for guest in GUESTS {
            let name = format!("{}::{}", mode.spec.name, guest.name);
            let skip = guest.not_applicable(&mode);
            if let Some(why) = skip {
                eprintln!("n/a: {name}: {why}");
            }
            let spec = mode.spec.clone();
            let trial = Trial::test(name, move || {
                std::panic::catch_unwind(|| run_cell(&spec, guest))
                    .map_err(|payload| Failed::from(panic_text(&*payload)))
            });
            trials.push(trial.with_ignored_flag(skip.is_some()));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}
