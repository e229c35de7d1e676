//! The interop matrix: every loop mode (the default loop, and tokio,
//! async-std, glib and calloop, owned and attached) × the kinds of code
//! that share it (oneloop's own callbacks and tasks, tokio libraries
//! through the bridge, the host's native code side by side).
//!
//! Each cell is one body run on a fresh loop of its mode, on the thread of
//! its trial; `tests/matrix.rs` runs every cell in `make test`. The modes
//! and their host drivers are the conformance suite's (`conformance/hosts`).

use std::time::Duration;

use oneloop_conformance::{AdapterSpec, Env};

#[path = "../../conformance/hosts/async_std.rs"]
mod async_std_host;
#[path = "../../conformance/hosts/calloop.rs"]
mod calloop_host;
#[path = "../../conformance/hosts/glib.rs"]
mod glib_host;
#[path = "../../conformance/hosts/tokio.rs"]
mod tokio_host;

mod cells;

pub use cells::GUESTS;

/// Every loop mode of the workspace, as the conformance suite declares it.
///
/// # Panics
/// If a mode cannot be set up (each is built once, to see whether it has a
/// host).
pub fn modes() -> Vec<Mode> {
    let mut specs = vec![oneloop_conformance::native_spec()];
    for harness in [
        tokio_host::harness(),
        async_std_host::harness(),
        glib_host::harness(),
        calloop_host::harness(),
    ] {
        specs.extend(harness.specs().iter().cloned());
    }
    specs
        .into_iter()
        .map(|spec| {
            let setup =
                (spec.setup)().unwrap_or_else(|e| panic!("cannot set up {}: {e}", spec.name));
            let has_host = setup.host.is_some();
            let _ = setup.lp.close();
            Mode { spec, has_host }
        })
        .collect()
}

/// How long one cell may take before it counts as hung.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// One kind of code riding on the shared loop: a column of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Guest {
    /// The column title.
    pub name: &'static str,
    /// The code is the host's own, so the cell needs a mode with a host.
    pub needs_host: bool,
    /// The body: panics on a failed check.
    pub run: fn(&Env),
}

impl Guest {
    /// Why this guest cannot run on a mode, if it cannot: decided before
    /// the cell runs, so a skipped cell is reported as skipped.
    pub fn not_applicable(&self, mode: &Mode) -> Option<&'static str> {
        (self.needs_host && !mode.has_host)
            .then_some("the mode has no host loop of its own to drive beside oneloop")
    }
}

/// A loop mode and what it offers the guests.
#[derive(Debug, Clone)]
pub struct Mode {
    /// How to build a loop of this mode.
    pub spec: AdapterSpec,
    /// A host loop runs beside oneloop (and the suite can drive it).
    pub has_host: bool,
}

/// Run one cell: a fresh loop of `spec`'s mode, the guest's body, close.
///
/// # Panics
/// On a failed check, a hang past [`DEADLINE`], or a mode that cannot be
/// set up.
pub fn run_cell(spec: &AdapterSpec, guest: &Guest) {
    let setup = (spec.setup)().unwrap_or_else(|e| panic!("cannot set up {}: {e}", spec.name));
    let env = Env::new("interop", spec, setup, DEADLINE);
    (guest.run)(&env);
    let lp = env.lp().clone();
    drop(env);
    lp.close()
        .unwrap_or_else(|e| panic!("closing the loop failed: {e}"));
}
