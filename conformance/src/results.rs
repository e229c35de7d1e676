//! Results files: one TSV per adapter, written by the [`Harness`](crate::Harness)
//! and read by `oneloop-report`.

use std::io;
use std::path::{Path, PathBuf};

use crate::registry::{Check, Group, Level};
use crate::runner::Outcome;

/// The outcome of one check on one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The adapter spec's name.
    pub adapter: String,
    /// The check's ID.
    pub id: String,
    /// MUST or SHOULD.
    pub level: Level,
    /// The group.
    pub group: Group,
    /// What happened.
    pub outcome: Outcome,
}

impl Row {
    /// The row for `check` on `adapter`.
    pub fn new(adapter: &str, check: &Check, outcome: Outcome) -> Row {
        Row {
            adapter: adapter.to_owned(),
            id: check.id.to_owned(),
            level: check.level,
            group: check.group,
            outcome,
        }
    }
}

const HEADER: &str = "adapter\tid\tlevel\tgroup\toutcome\tdetail";

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// Where a results directory is: a relative `dir` is taken from the
/// workspace root (the nearest directory above the current one that holds
/// `Cargo.lock`), because cargo runs each test binary in its own package's
/// directory.
pub fn resolve_dir(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        return dir.to_path_buf();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let root = cwd
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(&cwd);
    root.join(dir)
}

/// The results file of `adapter` in `dir`.
pub fn path_for(dir: &Path, adapter: &str) -> PathBuf {
    let file: String = adapter
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{file}.tsv"))
}

/// Write `rows` (all of one adapter) to `dir`, replacing its earlier file.
///
/// # Errors
/// If the directory cannot be created or the file written.
pub fn write(dir: &Path, adapter: &str, rows: &[Row]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut out = String::from(HEADER);
    out.push('\n');
    // In registry order, whatever order the trials finished in.
    let index = |id: &str| crate::registry::checks().iter().position(|c| c.id == id);
    let mut rows: Vec<&Row> = rows.iter().collect();
    rows.sort_by_key(|r| index(&r.id));
    for r in rows {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            clean(&r.adapter),
            r.id,
            r.level,
            r.group,
            r.outcome.tag(),
            clean(r.outcome.detail())
        ));
    }
    std::fs::write(path_for(dir, adapter), out)
}

/// Read every `*.tsv` results file in `dir`: the default loop's first, then
/// by file name.
///
/// # Errors
/// If the directory cannot be read, or a file is malformed.
pub fn read_dir(dir: &Path) -> io::Result<Vec<Row>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    // The default loop first: it is the reference column.
    files.sort_by_key(|p| (p.file_name().is_none_or(|n| n != "native.tsv"), p.clone()));
    let mut rows = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        for (n, line) in text.lines().enumerate().skip(1) {
            if line.is_empty() {
                continue;
            }
            let bad = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: malformed row", f.display(), n + 1),
                )
            };
            let cols: Vec<&str> = line.splitn(6, '\t').collect();
            let [adapter, id, level, group, tag, detail] = cols[..] else {
                return Err(bad());
            };
            let level = match level {
                "MUST" => Level::Must,
                "SHOULD" => Level::Should,
                _ => return Err(bad()),
            };
            let group = Group::of_id(id)
                .filter(|g| g.prefix() == group)
                .ok_or_else(bad)?;
            let outcome = Outcome::from_tag(tag, detail.to_owned()).ok_or_else(bad)?;
            rows.push(Row {
                adapter: adapter.to_owned(),
                id: id.to_owned(),
                level,
                group,
                outcome,
            });
        }
    }
    Ok(rows)
}
