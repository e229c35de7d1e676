//! [`Harness`]: the libtest-mimic front end (`harness = false`), which shows
//! ignored checks with their reasons, runs on the main thread when an
//! adapter needs it, and writes a results file for the report.

use std::fmt;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::registry::{Check, checks};
use crate::results::{self, Row};
use crate::runner::{self, Options, Outcome};
use crate::spec::AdapterSpec;

/// The environment variable naming the directory the harness writes its
/// results to (`<dir>/<adapter>.tsv`), for `oneloop-report`. A relative
/// directory is taken from the workspace root.
pub const RESULTS_ENV: &str = "ONELOOP_CONFORMANCE_OUT";

/// Runs every check on every spec given, as one libtest-mimic trial each.
///
/// Put it in `tests/conformance.rs` with `harness = false` for that test in
/// `Cargo.toml`:
///
/// ```no_run
/// // tests/conformance.rs: `fn main() { ... }` around this line.
/// oneloop_conformance::Harness::new(oneloop_conformance::native_spec()).run()
/// ```
///
/// Trials are named `<adapter>::<ID>::<check>` (filter with the usual test
/// arguments), carry their level as kind, and show missing capabilities and
/// attached-only gaps as *ignored* with the reason; a check that could not
/// run here ([`Outcome::Skipped`]) is shown as ignored too, its reason
/// starting with `skipped:`, and the results file records it as skipped. A listed divergence runs
/// as an expected failure. If any spec needs the main thread, all trials run
/// on the main thread, one at a time, and a check that hangs there ends the
/// process (exit code 101) after naming itself, instead of hanging CI.
pub struct Harness {
    specs: Vec<AdapterSpec>,
    options: Options,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field(
                "specs",
                &self.specs.iter().map(|s| s.name).collect::<Vec<_>>(),
            )
            .field("options", &self.options)
            .finish()
    }
}

impl Harness {
    /// A harness for one adapter spec.
    pub fn new(spec: AdapterSpec) -> Harness {
        Harness {
            specs: vec![spec],
            options: Options::default(),
        }
    }

    /// Add another spec (another adapter, or another mode of the same one).
    pub fn with(mut self, spec: AdapterSpec) -> Harness {
        self.specs.push(spec);
        self
    }

    /// The specs, for test suites of their own that run one body on every
    /// mode (the interop matrix).
    pub fn specs(&self) -> &[AdapterSpec] {
        &self.specs
    }

    /// Change the per-check limits.
    pub fn options(mut self, options: Options) -> Harness {
        self.options = options;
        self
    }

    /// The trials, without running them; `sink` receives each outcome.
    fn trials(&self, sink: &Arc<Mutex<Vec<Row>>>) -> Vec<Trial> {
        let mut trials = Vec::new();
        for spec in &self.specs {
            for check in checks() {
                trials.push(self.trial(spec, check, sink));
            }
        }
        trials
    }

    fn trial(
        &self,
        spec: &AdapterSpec,
        check: &'static Check,
        sink: &Arc<Mutex<Vec<Row>>>,
    ) -> Trial {
        let name = format!("{}::{}::{}", spec.name, check.id, check.name);
        let kind = if spec.divergence(check.id).is_some() {
            "xfail"
        } else {
            check.level.as_str()
        };
        let spec = spec.clone();
        let sink = sink.clone();
        let options = self.options;
        Trial::ignorable_test(name, move || {
            let outcome = runner::run_check_with(&spec, check, options);
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Row::new(spec.name, check, outcome.clone()));
            match outcome {
                Outcome::Pass | Outcome::ExpectedFailure(_) => Ok(Completion::Completed),
                Outcome::Ignored(reason) => Ok(Completion::ignored_with(reason)),
                Outcome::Skipped(reason) => {
                    Ok(Completion::ignored_with(format!("skipped: {reason}")))
                }
                Outcome::Fail(msg) | Outcome::UnexpectedPass(msg) => Err(Failed::from(msg)),
            }
        })
        .with_kind(kind)
    }

    /// Parse the test arguments, run the trials, write the results file when
    /// [`RESULTS_ENV`] is set, and exit with the test run's status.
    pub fn run(self) -> ! {
        if let Some((adapter, id)) = runner::child_request() {
            self.run_child(&adapter, &id)
        }
        let mut args = Arguments::from_args();
        if self.specs.iter().any(|s| s.main_thread) {
            args.test_threads = Some(1);
        }
        let sink = Arc::new(Mutex::new(Vec::new()));
        let trials = self.trials(&sink);
        let conclusion = libtest_mimic::run(&args, trials);
        if let Some(dir) = std::env::var_os(RESULTS_ENV) {
            let dir = results::resolve_dir(dir.as_ref());
            let rows = std::mem::take(&mut *sink.lock().unwrap_or_else(|e| e.into_inner()));
            for spec in &self.specs {
                let mine: Vec<Row> = rows
                    .iter()
                    .filter(|r| r.adapter == spec.name)
                    .cloned()
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                if let Err(e) = results::write(&dir, spec.name, &mine) {
                    eprintln!("oneloop-conformance: cannot write results to {dir:?}: {e}");
                }
            }
        }
        conclusion.exit()
    }

    /// In an isolated check's child process: run that one check on the main
    /// thread, print its outcome for the parent, and exit.
    fn run_child(&self, adapter: &str, id: &str) -> ! {
        let spec = self.specs.iter().find(|s| s.name == adapter);
        match (spec, crate::registry::check(id)) {
            (Some(spec), Some(check)) => runner::run_as_child(spec, check, self.options),
            _ => {
                println!("oneloop-conformance: no check {id} for adapter {adapter} in this binary")
            }
        }
        std::process::exit(0)
    }
}

/// The body of one `#[test]` stamped by [`suite!`](crate::suite).
#[doc(hidden)]
pub fn run_for_test(spec: &AdapterSpec, id: &str) {
    if spec.main_thread && std::thread::current().name() != Some("main") {
        panic!(
            "{} needs the main thread, which libtest's #[test] threads are not: \
             run it with oneloop_conformance::Harness (harness = false)",
            spec.name
        );
    }
    let check = crate::registry::check(id).unwrap_or_else(|| panic!("no check with ID {id}"));
    if let Some((adapter, child_id)) = runner::child_request() {
        if adapter == spec.name && child_id == id {
            runner::run_as_child(spec, check, Options::default());
        }
        return;
    }
    let outcome = runner::run_check_from(spec, check, Options::default(), runner::FrontEnd::Suite);
    match outcome {
        Outcome::Pass => {}
        Outcome::Ignored(reason) => eprintln!("{}::{id} ignored: {reason}", spec.name),
        // libtest cannot mark a test ignored once it runs: the test passes
        // after saying so (the Harness and the report show it as skipped).
        Outcome::Skipped(reason) => eprintln!("{}::{id} skipped: {reason}", spec.name),
        Outcome::ExpectedFailure(note) => {
            eprintln!("{}::{id} expected failure: {note}", spec.name)
        }
        Outcome::Fail(msg) | Outcome::UnexpectedPass(msg) => {
            panic!("{}::{id}: {msg}", spec.name)
        }
    }
}
