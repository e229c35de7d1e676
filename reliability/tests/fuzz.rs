//! Seeded fuzzing of every transport on every loop mode, with fixed seeds:
//! `<mode>::<scenario>`, each running [`SEEDS`] seeds. Trials run one at a
//! time (fds are counted process-wide). `make fuzz` runs the same with
//! random seeds for as long as it is asked to (`oneloop-fuzz`).

use libtest_mimic::{Arguments, Failed, Trial};
use oneloop_reliability::{fuzz, modes};

/// The fixed seeds of every trial: deterministic plans; `make test` runs
/// them all (about half a minute on two idle cores).
const SEEDS: std::ops::RangeInclusive<u64> = 1..=16;

fn main() {
    let mut args = Arguments::from_args();
    // fds are counted process-wide, so one trial at a time.
    args.test_threads = Some(1);
    let mut trials = Vec::new();
    for spec in modes::modes() {
        for scenario in fuzz::SCENARIOS {
            let name = format!("{}::{}", modes::slug(&spec), scenario.name);
            let spec = spec.clone();
            trials.push(Trial::test(name, move || {
                let mut total = fuzz::Tally::default();
                std::panic::catch_unwind(|| fuzz::warm_up(&spec, scenario))
                    .map_err(|p| Failed::from(oneloop_reliability::panic_text(&*p)))?;
                for seed in SEEDS {
                    let t = std::panic::catch_unwind(|| fuzz::run_one(&spec, scenario, seed))
                        .map_err(|p| Failed::from(oneloop_reliability::panic_text(&*p)))?;
                    total.add(&t);
                }
                eprintln!("{total:?}");
                if total.bytes_lost != 0 {
                    return Err(format!("{} bytes lost", total.bytes_lost).into());
                }
                Ok(())
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
