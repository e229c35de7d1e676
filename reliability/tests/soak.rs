//! The short soak (issue 16 item 7): mixed load on every loop mode for a
//! few seconds each, on the main thread (signal handlers need it), one mode
//! after another. `make soak` runs the long one and writes its figures to
//! docs/reliability.md (`oneloop-soak`).

use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use oneloop_reliability::{modes, soak};

/// Per mode: nine modes, under two minutes in all with setup and teardown.
const PER_MODE: Duration = Duration::from_secs(6);

fn main() {
    let mut args = Arguments::from_args();
    // One at a time, on the main thread: signal handlers are process-wide
    // and can only be added there.
    args.test_threads = Some(1);
    let trials = modes::modes()
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            Trial::test(modes::slug(&spec), move || {
                let r = soak::run(&spec, PER_MODE, 1000 + i as u64);
                eprint!("{}", soak::render(std::slice::from_ref(&r)));
                if r.problems.is_empty() {
                    Ok(())
                } else {
                    Err(Failed::from(r.problems.join("\n")))
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
