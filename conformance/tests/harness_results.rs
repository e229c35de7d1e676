//! The runner's own accounting: results files round-trip, the report counts
//! per level and group, and a failing MUST is what fails the report.

use oneloop_conformance::results::{Row, read_dir, write};
use oneloop_conformance::{Level, Outcome, check, report};

fn row(adapter: &str, id: &str, outcome: Outcome) -> Row {
    Row::new(adapter, check(id).expect("a check"), outcome)
}

#[test]
fn results_round_trip_and_the_report_counts_them() {
    let dir = std::env::temp_dir().join(format!(
        "oneloop-conformance-selftest-{}",
        std::process::id()
    ));
    let rows = vec![
        row("a (owned)", "CB-01", Outcome::Pass),
        row(
            "a (owned)",
            "TM-03",
            Outcome::ExpectedFailure("coarse\ttimers\nreason".into()),
        ),
        row(
            "a (owned)",
            "FD-01",
            Outcome::Ignored("needs the fd capability".into()),
        ),
        row("a (owned)", "LC-01", Outcome::Fail("lost a stop".into())),
    ];
    write(&dir, "a (owned)", &rows).expect("write");
    write(&dir, "b", &[row("b", "CB-01", Outcome::Pass)]).expect("write");
    let back = read_dir(&dir).expect("read");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(back.len(), 5);
    let ids: Vec<&str> = back.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["LC-01", "CB-01", "TM-03", "FD-01", "CB-01"],
        "registry order per adapter"
    );
    assert_eq!(back[1].outcome, Outcome::Pass);
    assert_eq!(
        back[2].outcome,
        Outcome::ExpectedFailure("coarse timers reason".into())
    );
    assert_eq!(report::adapters(&back), ["a (owned)", "b"]);

    let by_level = report::counts_by_level(&back);
    let must = by_level[&("a (owned)".to_string(), Level::Must)];
    assert_eq!((must.pass, must.fail, must.ignored), (1, 1, 1));
    let should = by_level[&("a (owned)".to_string(), Level::Should)];
    assert_eq!(should.xfail, 1);
    assert!(
        report::must_failed(&back),
        "a failing MUST fails the report"
    );
    assert!(
        !report::must_failed(&back[1..]),
        "pass, ignored and xfail do not"
    );

    let md = report::markdown(&back);
    assert!(md.contains("| LC-01 | MUST |") && md.contains("**FAIL**"));
    assert!(
        md.contains("needs the fd capability"),
        "ignored checks show their reason"
    );
    assert!(
        md.contains("Guarantees checked: ") && md.contains("| EM-09 |"),
        "the coverage line, and a matrix row for every guarantee"
    );
    let term = report::terminal(&back);
    assert!(
        term.contains("a (owned): MUST: 1 pass, 1 fail, 1 ignored"),
        "{term}"
    );
}

#[test]
fn check_ids_are_unique_and_filed_under_their_group() {
    // `checks()` asserts both the first time it is called.
    assert!(oneloop_conformance::checks().len() >= 75);
}
