//! The oneloop conformance suite: every guarantee of the interface as a check, runnable against any adapter.
//!
//! Each guarantee of `GUARANTEES.md` in the groups lifecycle, callbacks,
//! timers, threads, fd, futures, tasks, cancellation, errors, the
//! transports (TCP, flow control, UDP, Unix sockets, pipes, subprocesses,
//! signals), executor, policy and embedding is one documented check in
//! [`checks`](mod@checks), under its
//! stable ID; the first line of each check's documentation states the
//! guarantee, so these pages read as the specification. One registry
//! ([`CHECKS`]) lists them all, and both front ends expand from it:
//!
//! - the [`Harness`] (libtest-mimic, `harness = false`): missing capabilities
//!   and attached-mode gaps show as *ignored* with the reason, checks that
//!   could not run on this system as ignored with `skipped: <reason>`,
//!   reviewed divergences run as expected failures, and it can run on the
//!   main thread;
//! - the [`suite!`] macro, which stamps one `#[test]` per check.
//!
//! An adapter declares itself as data, in an [`AdapterSpec`]:
//!
//! ```no_run
//! use std::time::Duration;
//! use oneloop_conformance::{AdapterSpec, Caps, Harness, Setup};
//!
//! fn setup() -> oneloop::Result<Setup> {
//!     Ok(Setup::new(oneloop::Loop::new()?)) // your `Loop::with_backend(...)`
//! }
//!
//! const SPEC: AdapterSpec = AdapterSpec {
//!     name: "my-loop",
//!     setup,
//!     caps: Caps::FD.union(Caps::THREADS).union(Caps::EXECUTOR),
//!     clock_resolution: Duration::from_millis(1),
//!     divergences: &[],
//!     main_thread: false,
//! };
//!
//! fn main() {
//!     Harness::new(SPEC).run()
//! }
//! ```
//!
//! The subprocess and signal checks touch process-wide state, so each runs
//! in a child process of the test binary (re-executed with the check's ID in
//! `ONELOOP_CONFORMANCE_CHILD`), signal checks on that child's main thread;
//! the parent reads the outcome, under the same hang timeout.
//!
//! Every check runs on a fresh loop built on the thread that runs it, under
//! a watchdog (a missed wake-up fails with the check's ID, it never hangs
//! CI), with a tripwire on the exception handler (an unexpected report fails
//! the check), and asserts timing one-sidedly: never early, generous upper
//! bounds, ordering over durations.
//!
//! A check that applies but cannot run on the system at hand (no
//! pseudo-terminal, no `/proc`, a kernel that took another path) says so
//! with [`Env::skip`] or, for one part of it, [`Env::skip_part`]: it is
//! reported [`Outcome::Skipped`] with the reason, never as a pass.
//!
//! # For adapters' own tests
//!
//! [`support`] holds the one [`Watchdog`](support::Watchdog) (a hang fails
//! a test instead of blocking CI) and [`wait_until`](support::wait_until)
//! (wait for a condition with a deadline instead of sleeping and hoping),
//! which this workspace's adapters use in their behaviour tests too. Their
//! host drivers live beside this crate, in `conformance/hosts/` (one module
//! per host, compiled into each adapter's `tests/conformance.rs`).
//!
//! # Stability
//!
//! Adding a check can make an adapter that passed before fail, so a new
//! check is a minor version of this crate, released in lockstep with
//! `oneloop`. The check functions are public so that they can be read and
//! called one by one; their signatures follow the registry.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod checks;
mod env;
mod harness;
mod native;
mod registry;
pub mod report;
pub mod results;
mod runner;
mod spec;
pub mod support;

pub use env::{Env, Log, thread_cpu_time};
pub use harness::{Harness, RESULTS_ENV};
pub use native::native_spec;
pub use registry::{CHECKS, Check, Group, LEFT_OUT, LeftOut, Level, Mode, check, checks};
pub use runner::{Options, Outcome, not_applicable, run_check, run_check_with};
pub use spec::{
    AdapterSpec, Caps, Divergence, GuestDriver, GuestEnd, GuestMain, HostDriver, Setup,
};

/// Stamps one `#[test]` per check for an adapter spec.
///
/// The two lines of an adapter's `tests/conformance.rs` (a normal test, no
/// `harness = false` needed) are a `//!` line saying what it is, and:
///
/// ```
/// oneloop_conformance::suite!(oneloop_conformance::native_spec()); // your spec here
/// ```
///
/// Each check becomes `<id>::<check>` (for example `tm_03::timer_never_early`).
/// libtest cannot mark a test ignored at run time (`#[ignore]` is decided
/// at compile time), so a check that does not apply, or that could not run
/// here ([`Outcome::Skipped`]), *passes* after printing
/// `<adapter>::<ID> ignored: <reason>` or `<adapter>::<ID> skipped: <reason>`
/// on stderr (shown with `--nocapture`). Use the [`Harness`] to see them as
/// ignored, and its results file and `oneloop-report` to see them counted
/// as ignored and skipped, never as passes.
#[macro_export]
macro_rules! suite {
    ($spec:expr) => {
        $crate::__with_checks!(suite $spec);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::harness::run_for_test;
}

/// The adapter author's guide, `docs/writing-an-adapter.md` (linked into this
/// crate so that it is packaged with it), here so that its
/// example backend is compiled and run as a doc test.
#[doc = include_str!("../writing-an-adapter.md")]
pub mod guide {}
