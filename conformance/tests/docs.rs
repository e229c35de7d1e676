//! `docs/guarantees.md` is generated from the registry the checks run from,
//! so the contract users read and the checks cannot drift. Regenerate with
//! `ONELOOP_BLESS=1 cargo test -p oneloop-conformance --test docs`.

use std::path::PathBuf;

fn docs(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name)
}

#[test]
fn guarantees_md_matches_the_registry() {
    let want = oneloop_conformance::report::guarantees_markdown();
    let path = docs("guarantees.md");
    if std::env::var_os("ONELOOP_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write docs/guarantees.md");
        return;
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "docs/guarantees.md is out of date with the checks; regenerate it with\n\
         ONELOOP_BLESS=1 cargo test -p oneloop-conformance --test docs"
    );
}

#[test]
fn every_guarantee_of_the_covered_groups_is_checked_or_left_out_with_a_reason() {
    use oneloop_conformance::{Group, LEFT_OUT, checks};
    // The IDs of GUARANTEES.md §1.1-1.9, 1.17-1.19, by group and count.
    let expected = [
        (Group::Lifecycle, 11),
        (Group::Callbacks, 6),
        (Group::Timers, 9),
        (Group::Threads, 5),
        (Group::Fd, 8),
        (Group::Futures, 7),
        (Group::Tasks, 5),
        (Group::Cancellation, 6),
        (Group::Errors, 5),
        (Group::Executor, 2),
        (Group::Policy, 4),
        (Group::Embedding, 10),
    ];
    let mut total = 0;
    for (group, n) in expected {
        for i in 1..=n {
            let id = format!("{}-{i:02}", group.prefix());
            let checked = checks().iter().any(|c| c.id == id);
            let left_out = LEFT_OUT.iter().any(|l| l.id == id && !l.reason.is_empty());
            assert!(
                checked ^ left_out,
                "{id}: neither checked nor left out with a reason (or both)"
            );
            total += 1;
        }
    }
    assert_eq!(total, 78);
    assert!(LEFT_OUT.len() <= 6, "at most 6 IDs may be left out");
}
