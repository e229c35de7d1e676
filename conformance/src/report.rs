//! The guarantee × adapter matrix of `oneloop-report`, for the terminal and
//! as `docs/conformance.md`, and `docs/guarantees.md` from the registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::registry::{Group, LEFT_OUT, Level, checks};
use crate::results::Row;
use crate::runner::Outcome;

/// The adapters of `rows`, in first-seen order.
pub fn adapters(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.adapter) {
            out.push(r.adapter.clone());
        }
    }
    out
}

fn cell(o: Option<&Outcome>) -> &'static str {
    match o {
        None => "·",
        Some(Outcome::Pass) => "pass",
        Some(Outcome::Fail(_)) => "FAIL",
        Some(Outcome::Ignored(_)) => "ignored",
        Some(Outcome::Skipped(_)) => "skipped",
        Some(Outcome::ExpectedFailure(_)) => "xfail",
        Some(Outcome::UnexpectedPass(_)) => "XPASS",
    }
}

/// Counts of one adapter: pass, fail, ignored, skipped, xfail, xpass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Ignored (not applicable).
    pub ignored: usize,
    /// Skipped: applicable, but could not run (fully) on this system.
    pub skipped: usize,
    /// Expected failures (listed divergences).
    pub xfail: usize,
    /// Divergences that pass (no longer needed): count as failures.
    pub xpass: usize,
}

impl Counts {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail(_) => self.fail += 1,
            Outcome::Ignored(_) => self.ignored += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::ExpectedFailure(_) => self.xfail += 1,
            Outcome::UnexpectedPass(_) => self.xpass += 1,
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pass, {} fail, {} ignored",
            self.pass, self.fail, self.ignored
        )?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        if self.xfail > 0 {
            write!(f, ", {} xfail", self.xfail)?;
        }
        if self.xpass > 0 {
            write!(f, ", {} XPASS", self.xpass)?;
        }
        Ok(())
    }
}

/// Counts per adapter and level.
pub fn counts_by_level(rows: &[Row]) -> BTreeMap<(String, Level), Counts> {
    let mut m: BTreeMap<(String, Level), Counts> = BTreeMap::new();
    for r in rows {
        m.entry((r.adapter.clone(), r.level))
            .or_default()
            .add(&r.outcome);
    }
    m
}

/// Counts per adapter and group.
pub fn counts_by_group(rows: &[Row]) -> BTreeMap<(String, Group), Counts> {
    let mut m: BTreeMap<(String, Group), Counts> = BTreeMap::new();
    for r in rows {
        m.entry((r.adapter.clone(), r.group))
            .or_default()
            .add(&r.outcome);
    }
    m
}

/// How many guarantees of the covered groups have a check, out of all of
/// them (the `UNSUP-*` checks of missing capabilities not counted), and
/// how many of the checked ones pass on at least one adapter and fail on
/// none: `(checked, total, held)`.
pub fn coverage(rows: &[Row]) -> (usize, usize, usize) {
    let ids: Vec<&str> = checks()
        .iter()
        .map(|c| c.id)
        .filter(|id| !id.starts_with("UNSUP-"))
        .collect();
    let held = ids
        .iter()
        .filter(|id| {
            let mine = || rows.iter().filter(|r| r.id == **id);
            mine().any(|r| r.outcome == Outcome::Pass) && !mine().any(|r| r.outcome.is_failure())
        })
        .count();
    (ids.len(), ids.len() + LEFT_OUT.len(), held)
}

fn coverage_line(rows: &[Row]) -> String {
    let (checked, total, held) = coverage(rows);
    format!(
        "Guarantees checked: {checked}/{total}; holding (passing on at least one adapter, failing on none): {held}/{total}"
    )
}

/// Whether any MUST check failed on any adapter.
pub fn must_failed(rows: &[Row]) -> bool {
    rows.iter()
        .any(|r| r.level == Level::Must && r.outcome.is_failure())
}

fn find<'a>(rows: &'a [Row], adapter: &str, id: &str) -> Option<&'a Outcome> {
    rows.iter()
        .find(|r| r.adapter == adapter && r.id == id)
        .map(|r| &r.outcome)
}

/// The matrix for a terminal.
pub fn terminal(rows: &[Row]) -> String {
    let ads = adapters(rows);
    let mut out = String::new();
    let w = 9usize;
    let _ = write!(out, "{:<10} {:<7}", "ID", "level");
    for a in &ads {
        let _ = write!(out, " {:>w$}", truncate(a, w));
    }
    out.push('\n');
    for c in checks() {
        let _ = write!(out, "{:<10} {:<7}", c.id, c.level.as_str());
        for a in &ads {
            let _ = write!(out, " {:>w$}", cell(find(rows, a, c.id)));
        }
        out.push('\n');
    }
    for l in LEFT_OUT {
        let _ = write!(out, "{:<10} {:<7}", l.id, l.level.as_str());
        for _ in &ads {
            let _ = write!(out, " {:>w$}", "left out");
        }
        out.push('\n');
    }
    out.push('\n');
    let _ = writeln!(out, "{}\n", coverage_line(rows));
    let by_level = counts_by_level(rows);
    let by_group = counts_by_group(rows);
    for a in &ads {
        for level in [Level::Must, Level::Should] {
            if let Some(c) = by_level.get(&(a.clone(), level)) {
                let _ = writeln!(out, "{a}: {level}: {c}");
            }
        }
        let groups: Vec<String> = Group::ALL
            .iter()
            .filter_map(|g| {
                let c = by_group.get(&(a.clone(), *g))?;
                let ran = c.pass + c.fail + c.xfail + c.xpass;
                let skipped = if c.skipped > 0 {
                    format!(" ({} skipped)", c.skipped)
                } else {
                    String::new()
                };
                Some(if ran == 0 && c.skipped == 0 {
                    format!("{g} ignored")
                } else {
                    format!("{g} {}/{ran}{skipped}", c.pass + c.xfail)
                })
            })
            .collect();
        let _ = writeln!(out, "{a}: per group: {}", groups.join(", "));
    }
    let notes: Vec<&Row> = rows
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Pass))
        .collect();
    if !notes.is_empty() {
        out.push_str("\nnot passing:\n");
        for a in &ads {
            let mine: Vec<&Row> = notes.iter().copied().filter(|r| &r.adapter == a).collect();
            for (ids, tag, detail) in grouped(&mine) {
                let _ = writeln!(out, "  {a}: {} {tag}: {detail}", ids.join(", "));
            }
        }
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The full report as Markdown (`docs/conformance.md`).
pub fn markdown(rows: &[Row]) -> String {
    let ads = adapters(rows);
    let mut out = String::new();
    out.push_str("# oneloop conformance report\n\n");
    out.push_str(
        "Generated by `oneloop-report` (`make demo`, or `cargo run -p oneloop-conformance --bin \
         oneloop-report -- --workspace --write docs/conformance.md`) from the results of every \
         adapter's conformance harness; do not edit by hand. Each guarantee of `GUARANTEES.md` in the covered groups is a check \
         of `oneloop-conformance`; see `docs/guarantees.md` for the statements.\n\n",
    );
    out.push_str(
        "Legend: **pass**; **FAIL**; *ignored* (does not apply, reason below); \
                  *skipped* (applies, but could not run, or run in full, on the machine that \
                  made the report: not a pass, reason below); \
                  *xfail* (a reviewed divergence from a SHOULD, failing as declared); \
                  **XPASS** (a listed divergence that passes: remove it); · (not run).\n\n",
    );
    let _ = writeln!(out, "{}.\n", coverage_line(rows));
    out.push_str("## Summary\n\n| adapter | level | pass | fail | ignored | skipped | xfail | xpass |\n|---|---|---|---|---|---|---|---|\n");
    let by_level = counts_by_level(rows);
    for a in &ads {
        for level in [Level::Must, Level::Should] {
            if let Some(c) = by_level.get(&(a.clone(), level)) {
                let _ = writeln!(
                    out,
                    "| {a} | {level} | {} | {} | {} | {} | {} | {} |",
                    c.pass, c.fail, c.ignored, c.skipped, c.xfail, c.xpass
                );
            }
        }
    }
    out.push_str("\n## Per group\n\n| group |");
    for a in &ads {
        let _ = write!(out, " {a} |");
    }
    out.push_str("\n|---|");
    for _ in &ads {
        out.push_str("---|");
    }
    out.push('\n');
    let by_group = counts_by_group(rows);
    for g in Group::ALL {
        let _ = write!(out, "| {} {} |", g.prefix(), g.title());
        for a in &ads {
            match by_group.get(&(a.clone(), g)) {
                Some(c) => {
                    let _ = write!(
                        out,
                        " {}/{} pass",
                        c.pass,
                        c.pass + c.fail + c.xfail + c.xpass
                    );
                    if c.fail + c.xpass > 0 {
                        let _ = write!(out, ", **{} fail**", c.fail + c.xpass);
                    }
                    if c.ignored > 0 {
                        let _ = write!(out, ", {} ignored", c.ignored);
                    }
                    if c.skipped > 0 {
                        let _ = write!(out, ", {} skipped", c.skipped);
                    }
                    out.push_str(" |");
                }
                None => out.push_str(" · |"),
            }
        }
        out.push('\n');
    }
    out.push_str("\n## Matrix\n\n| ID | level | guarantee |");
    for a in &ads {
        let _ = write!(out, " {a} |");
    }
    out.push_str("\n|---|---|---|");
    for _ in &ads {
        out.push_str("---|");
    }
    out.push('\n');
    for c in checks() {
        let _ = write!(
            out,
            "| {} | {} | {} |",
            c.id,
            c.level,
            c.statement.replace('|', "\\|")
        );
        for a in &ads {
            let s = match find(rows, a, c.id) {
                Some(Outcome::Ignored(_)) => "*ignored*",
                Some(Outcome::Skipped(_)) => "*skipped*",
                Some(Outcome::ExpectedFailure(_)) => "*xfail*",
                Some(Outcome::Fail(_)) => "**FAIL**",
                Some(Outcome::UnexpectedPass(_)) => "**XPASS**",
                Some(Outcome::Pass) => "pass",
                None => "·",
            };
            let _ = write!(out, " {s} |");
        }
        out.push('\n');
    }
    out.push_str(
        "\n## Left out\n\nGuarantees of the covered groups without a check yet, and why:\n\n",
    );
    for l in LEFT_OUT {
        let _ = writeln!(
            out,
            "- **{}** ({}): {} — *{}*",
            l.id, l.level, l.statement, l.reason
        );
    }
    if LEFT_OUT.is_empty() {
        out.push_str("None: every guarantee of the covered groups has a check.\n");
    }
    out.push_str("\n## Notes: failures, ignored and skipped checks, and divergences\n\n");
    for a in &ads {
        let notes: Vec<&Row> = rows
            .iter()
            .filter(|r| &r.adapter == a && r.outcome != Outcome::Pass)
            .collect();
        if notes.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {a}\n");
        for (ids, tag, detail) in grouped(&notes) {
            let _ = writeln!(
                out,
                "- {} {tag}: {}",
                ids.join(", "),
                detail.replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    out
}

/// `docs/guarantees.md`: the contract as users read it, generated from the
/// same registry as the checks, so the two cannot drift.
pub fn guarantees_markdown() -> String {
    let mut out = String::new();
    out.push_str("# oneloop guarantees\n\n");
    out.push_str(
        "The contract every oneloop loop keeps, as the conformance suite checks it. \
         Generated from the registry of `oneloop-conformance` (the same list the checks run from); \
         regenerate with `ONELOOP_BLESS=1 cargo test -p oneloop-conformance --test docs`. \
         IDs are stable: adapters' divergence lists and issue threads refer to them. \
         The sources (PEP 3156, the asyncio docs, the reference suites) are cited in the \
         project's `GUARANTEES.md`.\n\n",
    );
    out.push_str("**MUST**: part of the contract (PEP 3156 or the asyncio reference); never waived. \
                  **SHOULD**: a reference suite tests it or users rely on it; an adapter may declare a \
                  reviewed divergence, with its reason.\n\n");
    let caps: Vec<String> = crate::spec::Caps::NAMES
        .iter()
        .map(|(_, name)| format!("`{name}`"))
        .collect();
    let _ = write!(
        out,
        "Capabilities: `core` (every adapter), {}; a check that needs a capability the adapter \
         does not declare is reported as ignored, and `UNSUP-*` checks that the API then answers \
         `Unsupported`.\n\n",
        caps.join(", ")
    );
    for g in Group::ALL {
        let _ = writeln!(out, "## {} — {}\n", g.prefix(), g.title());
        out.push_str("| ID | level | needs | guarantee | check |\n|---|---|---|---|---|\n");
        for c in checks().iter().filter(|c| c.group == g) {
            let needs = if c.caps.is_empty() {
                "core".to_string()
            } else {
                c.caps.to_string()
            };
            let needs = match c.mode {
                crate::Mode::Any => needs,
                crate::Mode::Owned => format!("{needs}, owned loop"),
                crate::Mode::Attached => format!("{needs}, attached loop"),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | `{}` |",
                c.id,
                c.level,
                needs,
                c.statement.replace('|', "\\|"),
                c.name
            );
        }
        for l in LEFT_OUT.iter().filter(|l| Group::of_id(l.id) == Some(g)) {
            let _ = writeln!(
                out,
                "| {} | {} | | {} | *not checked yet: {}* |",
                l.id, l.level, l.statement, l.reason
            );
        }
        out.push('\n');
    }
    out
}

/// Rows with the same outcome and detail, folded into one line each (in
/// first-seen order): `(ids, tag, detail)`.
fn grouped<'a>(rows: &[&'a Row]) -> Vec<(Vec<&'a str>, &'static str, &'a str)> {
    let mut out: Vec<(Vec<&'a str>, &'static str, &'a str)> = Vec::new();
    for r in rows {
        let (tag, detail) = (cell(Some(&r.outcome)), r.outcome.detail());
        match out.iter_mut().find(|(_, t, d)| *t == tag && *d == detail) {
            Some((ids, _, _)) => ids.push(&r.id),
            None => out.push((vec![&r.id], tag, detail)),
        }
    }
    out
}
