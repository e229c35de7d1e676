//! Seeded fuzzing of every transport: one scenario per transport kind, each
//! a function of a loop and a seed. The seed draws the whole plan up front
//! (sizes, delays, pauses, faults and their offsets), so a seed that failed
//! replays the same plan; only the kernel's chunking and timing differ.
//!
//! [`run_one`] runs one scenario on a fresh loop of one mode and checks,
//! on top of the scenario's own properties, that the exception handler was
//! told nothing and that no fd was left open.

mod common;
mod pipe;
mod sockopt;
mod stream;
mod udp;

use std::time::Duration;

use oneloop_conformance::AdapterSpec;

pub use common::{Faults, Life, Phase, Tally, first_mismatch, pattern, pattern_byte};
pub use stream::Family;
pub use udp::MAX_UDP;

use crate::modes;
use crate::probe;

/// One kind of transport to fuzz.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The name on the command line and in reports.
    pub name: &'static str,
    /// One seeded run on a loop.
    pub run: fn(&oneloop_conformance::Env, u64) -> Tally,
}

/// Every scenario, in report order.
pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "tcp",
        run: |env, seed| stream::run(env, Family::Tcp, seed),
    },
    Scenario {
        name: "unix",
        run: |env, seed| stream::run(env, Family::Unix, seed),
    },
    Scenario {
        name: "udp",
        run: udp::run,
    },
    Scenario {
        name: "pipe",
        run: pipe::run_pipe,
    },
    Scenario {
        name: "subprocess",
        run: pipe::run_subprocess,
    },
];

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<Scenario> {
    SCENARIOS.iter().copied().find(|s| s.name == name)
}

/// How long one run may take before it counts as hung.
pub const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// Run `scenario` with `seed` on a fresh loop of `spec`'s mode; check that
/// nothing reached the exception handler and that every fd the run opened
/// was closed (counted process-wide: run one at a time).
///
/// # Panics
/// On a broken property, a hang past [`RUN_DEADLINE`], an unexpected
/// report or an fd left open; the message names the mode, scenario and seed.
pub fn run_one(spec: &AdapterSpec, scenario: &Scenario, seed: u64) -> Tally {
    run_checked(spec, scenario, seed, true)
}

/// [`run_one`] without the fd count: the first run of a mode in a process
/// may set up what the host keeps for good (a GLib worker's eventfd, the
/// executor's threads), which is not a leak.
///
/// # Panics
/// As [`run_one`], but for fds.
pub fn warm_up(spec: &AdapterSpec, scenario: &Scenario) -> Tally {
    run_checked(spec, scenario, 0, false)
}

fn run_checked(spec: &AdapterSpec, scenario: &Scenario, seed: u64, count_fds: bool) -> Tally {
    let env = modes::env("fuzz", spec, RUN_DEADLINE);
    let before = probe::fd_table();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let tally = (scenario.run)(&env, seed);
        let after = probe::fd_table();
        let leaked = probe::new_fds(&before, &after);
        assert!(
            leaked.is_empty() || !count_fds,
            "fds left open after every transport was lost: {leaked:?}"
        );
        tally
    }));
    match outcome {
        Ok(tally) => {
            modes::finish(env);
            tally
        }
        Err(payload) => {
            let why = crate::panic_text(&*payload);
            let _ = env.lp().close();
            panic!(
                "{} × {} failed with seed {seed}: {why}\nreplay: cargo run -p oneloop-reliability --bin oneloop-fuzz -- --mode {} --scenario {} --seed {seed}",
                spec.name,
                scenario.name,
                modes::slug(spec),
                scenario.name
            );
        }
    }
}
