//! A check that cannot run reports *skipped* with its reason, never a pass:
//! `Env::skip` ends it as skipped, `Env::skip_part` makes a check that
//! otherwise passes "only partly checked" (still skipped, not passed), a
//! failure still wins, and results files and the report keep the outcome.

use oneloop_conformance::results::{Row, read_dir, write};
use oneloop_conformance::{
    Caps, Check, Env, Group, Level, Mode, Options, Outcome, check, native_spec, report,
    run_check_with,
};

/// A check of the registry's shape with a body of the test's own.
fn probe(id: &'static str, run: fn(&Env)) -> &'static Check {
    Box::leak(Box::new(Check {
        id,
        level: Level::Should,
        group: Group::of_id(id).expect("a group"),
        caps: Caps::NONE,
        absent: Caps::NONE,
        mode: Mode::Any,
        name: "probe",
        statement: "a probe of the runner",
        run,
    }))
}

fn run(c: &'static Check) -> Outcome {
    run_check_with(&native_spec(), c, Options::default())
}

#[test]
fn skip_ends_the_check_as_skipped_with_its_reason() {
    fn body(env: &Env) {
        env.run_briefly();
        env.skip("no widget on this system");
    }
    match run(probe("CB-01", body)) {
        Outcome::Skipped(reason) => {
            assert!(reason.contains("no widget on this system"), "{reason}");
            assert!(reason.starts_with("CB-01"), "names the check: {reason}");
        }
        other => panic!("a check that called skip(): {other:?}"),
    }
}

#[test]
fn a_partly_checked_guarantee_is_skipped_not_passed() {
    fn body(env: &Env) {
        env.skip_part("the no-spin half needs /proc");
        env.run_briefly();
    }
    match run(probe("TM-08", body)) {
        Outcome::Skipped(reason) => {
            assert!(reason.contains("only partly checked"), "{reason}");
            assert!(reason.contains("the no-spin half needs /proc"), "{reason}");
        }
        other => panic!("a check that skipped a part: {other:?}"),
    }
}

#[test]
fn a_failure_wins_over_a_skipped_part() {
    fn body(env: &Env) {
        env.skip_part("one half cannot run");
        panic!("the other half fails");
    }
    match run(probe("TM-08", body)) {
        Outcome::Fail(msg) => assert!(msg.contains("the other half fails"), "{msg}"),
        other => panic!("a failing check with a skipped part: {other:?}"),
    }
}

#[test]
fn unexpected_reports_still_fail_a_skipped_check() {
    fn body(env: &Env) {
        env.lp()
            .call_soon(|| panic!("a callback that panics"))
            .unwrap();
        env.run_briefly();
        env.skip("cannot go on");
    }
    assert!(
        matches!(run(probe("CB-02", body)), Outcome::Fail(m) if m.contains("exception-handler")),
        "a report left by a skipped check fails it"
    );
}

#[test]
fn skipped_outcomes_survive_the_results_file_and_show_in_the_report() {
    let dir = std::env::temp_dir().join(format!(
        "oneloop-conformance-skipped-{}",
        std::process::id()
    ));
    let rows = vec![
        Row::new(
            "a",
            check("PI-04").unwrap(),
            Outcome::Skipped("no pty".into()),
        ),
        Row::new("a", check("PI-01").unwrap(), Outcome::Pass),
    ];
    write(&dir, "a", &rows).expect("write");
    let back = read_dir(&dir).expect("read");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(back[1].outcome, Outcome::Skipped("no pty".into()));
    assert!(!back[1].outcome.is_failure());

    let c = report::counts_by_level(&back)[&("a".to_string(), Level::Should)];
    assert_eq!(
        (c.pass, c.skipped),
        (0, 1),
        "a skip is not counted as a pass"
    );
    let md = report::markdown(&back);
    assert!(md.contains("*skipped*") && md.contains("no pty"), "{md}");
    let term = report::terminal(&back);
    assert!(
        term.contains("a: SHOULD: 0 pass, 0 fail, 0 ignored, 1 skipped"),
        "{term}"
    );
    assert!(term.contains("PI 1/1 (1 skipped)"), "{term}");
}
