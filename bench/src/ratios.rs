//! Same-run ratio tables, read from criterion's estimates, and their medians
//! over several runs.
//!
//! Each bench ends by printing, for every group, a markdown table of
//! `median time of X / median time of the floor` (criterion's median of the
//! per-iteration sample times, from `<criterion dir>/<group>/<function>/<param>/new/estimates.json`),
//! and the same figures as `ratio\t<group>\t<function>\t<param>\t<value>`
//! lines. `cargo run -p oneloop-bench --bin summarize -- run1.log run2.log …`
//! takes the median of each ratio over the runs (PERFORMANCE.md: medians of
//! same-run ratios, never a single run).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

/// When this run started: results written before it belong to an earlier
/// run and are ignored. Fixed by the first call ([`crate::mode::criterion`]
/// makes it).
pub fn run_started() -> SystemTime {
    static STARTED: OnceLock<SystemTime> = OnceLock::new();
    *STARTED.get_or_init(SystemTime::now)
}

/// Where criterion writes its results, found the way criterion finds it:
/// `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// workspace's `target/criterion` (a bench runs in its package directory).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from("../target/criterion")
}

/// Criterion's median time of one iteration of `group/function/param`, in
/// nanoseconds, from this run; `None` if this run did not measure it.
pub fn median_ns(group: &str, function: &str, param: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join(param)
        .join("new/estimates.json");
    let written = std::fs::metadata(&path).ok()?.modified().ok()?;
    if written < run_started() {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// A ratio table of one criterion group: every function over `baseline`,
/// for each parameter.
#[derive(Debug, Clone)]
pub struct Table {
    /// Criterion group name.
    pub group: String,
    /// The function the others are divided by (a floor or a host primitive).
    pub baseline: String,
    /// The functions, in print order (the baseline may be among them).
    pub functions: Vec<String>,
    /// Each parameter and the number of elements one iteration processes.
    pub params: Vec<(String, u64)>,
}

impl Table {
    /// A table for `group` over `baseline`.
    pub fn new(group: &str, baseline: &str) -> Table {
        Table {
            group: group.to_owned(),
            baseline: baseline.to_owned(),
            functions: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Add a row.
    pub fn function(mut self, name: &str) -> Table {
        self.functions.push(name.to_owned());
        self
    }

    /// Add a column: parameter `param`, where one iteration handles `elements` items.
    pub fn param(mut self, param: impl ToString, elements: u64) -> Table {
        self.params.push((param.to_string(), elements));
        self
    }

    /// Print the table (ns per element, and × baseline) and the `ratio` lines.
    /// Prints nothing in a smoke run, which times nothing.
    pub fn print(&self) {
        if crate::mode::smoke() {
            return;
        }
        // A group the command line filtered out has no results of this run.
        let measured = self
            .params
            .iter()
            .any(|(p, _)| median_ns(&self.group, &self.baseline, p).is_some());
        if !measured {
            return;
        }
        println!(
            "\n### {} — ns per element (× {})\n",
            self.group, self.baseline
        );
        let header: Vec<&str> = self.params.iter().map(|(p, _)| p.as_str()).collect();
        println!("| function | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(header.len()));
        let mut lines = Vec::new();
        for f in &self.functions {
            let mut cells = Vec::new();
            for (p, elements) in &self.params {
                let cell = match (
                    median_ns(&self.group, f, p),
                    median_ns(&self.group, &self.baseline, p),
                ) {
                    (Some(t), Some(base)) => {
                        let ratio = t / base;
                        lines.push(format!("ratio\t{}\t{f}\t{p}\t{ratio:.4}", self.group));
                        format!("{:.1} (×{ratio:.2})", t / *elements as f64)
                    }
                    (Some(t), None) => format!("{:.1}", t / *elements as f64),
                    _ => "—".to_owned(),
                };
                cells.push(cell);
            }
            println!("| {f} | {} |", cells.join(" | "));
        }
        println!();
        for l in lines {
            println!("{l}");
        }
    }
}

/// One ratio's median, minimum, maximum and number of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median over the runs.
    pub median: f64,
    /// Smallest value seen.
    pub min: f64,
    /// Largest value seen.
    pub max: f64,
    /// Number of runs.
    pub runs: usize,
}

/// The `ratio` lines of several runs' output, summarised per
/// `(group, function, param)`.
///
/// ```
/// let run1 = "ratio\tg\tf\t1000\t1.5\nnoise\n";
/// let run2 = "ratio\tg\tf\t1000\t1.1\n";
/// let run3 = "ratio\tg\tf\t1000\t1.3\n";
/// let s = oneloop_bench::ratios::summarize([run1, run2, run3]);
/// let r = s[&("g".to_owned(), "f".to_owned(), "1000".to_owned())];
/// assert_eq!((r.median, r.min, r.max, r.runs), (1.3, 1.1, 1.5, 3));
/// ```
pub fn summarize<'a>(
    outputs: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<(String, String, String), Summary> {
    let mut values: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    for out in outputs {
        for line in out.lines() {
            let mut parts = line.split('\t');
            if parts.next() != Some("ratio") {
                continue;
            }
            let (Some(g), Some(f), Some(p), Some(v)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if let Ok(v) = v.trim().parse::<f64>() {
                values
                    .entry((g.to_owned(), f.to_owned(), p.to_owned()))
                    .or_default()
                    .push(v);
            }
        }
    }
    values
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let median = if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            };
            let summary = Summary {
                median,
                min: v[0],
                max: v[n - 1],
                runs: n,
            };
            (k, summary)
        })
        .collect()
}
