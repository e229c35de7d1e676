//! Bad input on every loop mode (issue 16 item 8): `<mode>::<check>`, each
//! asserting a clear error and no panic, no hang, no fd left open.
//! `oneloop_reliability::bad_input` says which inputs the conformance suite
//! already covers. One trial at a time: fds are counted process-wide.

use libtest_mimic::{Arguments, Failed, Trial};
use oneloop_reliability::{bad_input, modes};

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let mut trials = Vec::new();
    for spec in modes::modes() {
        for check in bad_input::CHECKS {
            let spec = spec.clone();
            trials.push(Trial::test(
                format!("{}::{}", modes::slug(&spec), check.name),
                move || {
                    std::panic::catch_unwind(|| bad_input::run_check(&spec, check))
                        .map(drop)
                        .map_err(|p| Failed::from(oneloop_reliability::panic_text(&*p)))
                },
            ));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
