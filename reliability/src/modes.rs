//! The nine loop modes, as the conformance suite builds them: the default
//! loop, and tokio, smol, glib and calloop, each owned and attached.
//!
//! The specs and host drivers are the conformance suite's own fixtures
//! (`conformance/hosts/`, compiled in with `#[path]`, as `interop/` does),
//! so every reliability check drives a mode exactly as the suite does:
//! an owned loop through `run_until_complete`, an attached one by
//! iterating its host ([`Env::run_until`](oneloop_conformance::Env::run_until)).

use std::time::Duration;

use oneloop_conformance::{AdapterSpec, Env};

#[path = "../../conformance/hosts/calloop.rs"]
mod calloop_host;
#[path = "../../conformance/hosts/glib.rs"]
mod glib_host;
#[path = "../../conformance/hosts/smol.rs"]
mod smol_host;
#[path = "../../conformance/hosts/tokio.rs"]
mod tokio_host;

/// Every loop mode of the workspace, in report order.
pub fn modes() -> Vec<AdapterSpec> {
    let mut specs = vec![oneloop_conformance::native_spec()];
    for harness in [
        tokio_host::harness(),
        smol_host::harness(),
        glib_host::harness(),
        calloop_host::harness(),
    ] {
        specs.extend(harness.specs().iter().cloned());
    }
    specs
}

/// A mode's name as a command-line word: `"tokio (owned)"` → `"tokio-owned"`.
pub fn slug(spec: &AdapterSpec) -> String {
    spec.name
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

/// The mode whose [`slug`] or name is `word`.
pub fn find(word: &str) -> Option<AdapterSpec> {
    modes()
        .into_iter()
        .find(|s| slug(s) == word || s.name == word)
}

/// A fresh loop of `spec`'s mode, wrapped for a check named `id` whose
/// every `run_*` must finish within `deadline`.
///
/// # Panics
/// If the mode cannot be set up.
pub fn env(id: &'static str, spec: &AdapterSpec, deadline: Duration) -> Env {
    let setup = (spec.setup)().unwrap_or_else(|e| panic!("cannot set up {}: {e}", spec.name));
    Env::new(id, spec, setup, deadline)
}

/// Close the loop of `env` and fail on anything its exception handler was
/// told and nobody took: a report nobody expected is a bug.
///
/// # Panics
/// On a leftover report, or if closing fails.
pub fn finish(env: Env) {
    let reports = env.take_reports();
    assert!(
        reports.is_empty(),
        "the exception handler was told what nobody expected:\n  {}",
        reports.join("\n  ")
    );
    // Close the loop while its host is still there, as an orderly program
    // does (the other order is `leaks::dropped`'s and the smol
    // adapter's `host_dropped_first` test's).
    env.lp()
        .close()
        .unwrap_or_else(|e| panic!("closing the loop failed: {e}"));
    drop(env);
}
