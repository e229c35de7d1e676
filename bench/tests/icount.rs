//! The instruction-count cases and the perf gate's bookkeeping: every
//! in-process case runs natively once (its own checks: every callback ran
//! once, every timer fired), the recorded counts cover every gated case,
//! and the gate's comparison fails exactly on a regression. Nothing is
//! timed and nothing needs valgrind here; `make perf-gate` runs the cases
//! under callgrind.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use oneloop_bench::icount::{self, Run, runner};
use oneloop_bench::watchdog::Watchdog;

#[test]
fn every_in_process_case_runs_natively() {
    let _guard = Watchdog::arm("icount cases", Duration::from_secs(120));
    let mut ran = 0;
    for case in icount::cases() {
        // The large iteration cases set up 1e3…1e4 fds: the small one
        // checks the code path.
        if case.workload().starts_with("iteration_") && !case.workload().ends_with("_10") {
            continue;
        }
        if let Run::InProcess(_) = case.run {
            let out = Command::new(env!("CARGO_BIN_EXE_bench_icount"))
                .args(["case", &case.name])
                .output()
                .expect("run bench_icount");
            assert!(
                out.status.success(),
                "{}: {}",
                case.name,
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} cases ran");
}

#[test]
fn the_recorded_counts_cover_every_gated_case() {
    let baseline = runner::Baseline::read(&runner::default_baseline()).expect("read the baseline");
    if !cfg!(all(
        feature = "tokio",
        feature = "smol",
        feature = "glib",
        feature = "calloop"
    )) {
        return;
    }
    for case in icount::cases().into_iter().filter(|c| c.gated) {
        assert!(
            baseline.counts.contains_key(&case.name),
            "`{}` has no recorded count: `make perf-gate-update`",
            case.name
        );
    }
}

#[test]
fn the_gate_fails_on_a_regression_and_only_then() {
    let cases: Vec<_> = icount::cases().into_iter().filter(|c| c.gated).collect();
    let name = cases[0].name.clone();
    let mut recorded = runner::Baseline::default();
    recorded.counts.insert(name.clone(), 100.0);
    let verdict = |now: f64| {
        let counts = BTreeMap::from([(name.clone(), now)]);
        runner::compare(&cases, &counts, &recorded)[0].3.clone()
    };
    assert_eq!(verdict(100.0), runner::Verdict::Ok);
    assert_eq!(verdict(109.9), runner::Verdict::Ok);
    assert_eq!(verdict(110.1), runner::Verdict::Regressed);
    assert_eq!(verdict(89.0), runner::Verdict::Improved);
    let unrecorded = runner::Baseline::default();
    let counts = BTreeMap::from([(name.clone(), 1.0)]);
    assert_eq!(
        runner::compare(&cases, &counts, &unrecorded)[0].3,
        runner::Verdict::New
    );
}

#[test]
fn an_echo_case_is_refused_in_process() {
    let case = icount::cases()
        .into_iter()
        .find(|c| matches!(c.run, Run::EchoServer(..)))
        .expect("an echo case");
    let out = Command::new(env!("CARGO_BIN_EXE_bench_icount"))
        .args(["case", &case.name])
        .output()
        .expect("run bench_icount");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("from outside"));
}
