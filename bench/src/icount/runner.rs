//! Runs cases under callgrind, reads their dumps, and compares the counts
//! with the ones recorded in the repository (the perf gate).
//!
//! Each case runs in its own process, so no case's allocations or lazy
//! state change another's count, with an empty environment but for
//! `PATH`. An in-process case runs as `bench_icount case <name>` under
//! `valgrind --tool=callgrind --separate-threads=yes`: each thread that
//! measures writes its own dump under the case's name, and the runner adds
//! them up and divides by the case's operations. An echo case runs
//! `bench_echo_server` under callgrind and counts it from outside
//! ([`count_server`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{Case, Run};
use crate::echo::instructions::count_server;

/// The gate's bound: a count more than this much above its recorded value fails.
pub const TOLERANCE: f64 = 0.10;

/// Whether `valgrind` runs here, and its version.
pub fn valgrind_version() -> Option<String> {
    let out = Command::new("valgrind").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Why instruction counts cannot be taken here, if they cannot.
pub fn unsupported() -> Option<String> {
    if !cfg!(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )) {
        return Some(format!(
            "callgrind client requests are implemented for x86_64 and aarch64 Linux only (this is {} {})",
            std::env::consts::ARCH,
            std::env::consts::OS
        ));
    }
    if valgrind_version().is_none() {
        return Some("`valgrind` is not installed (scripts/install-deps.sh installs it)".into());
    }
    None
}

/// Run `case` under callgrind with `exe` (a `bench_icount` binary), its
/// files in `dir`; instructions per operation.
///
/// # Errors
/// If valgrind fails, the case fails, or its dump is missing.
pub fn run_case(exe: &Path, case: &Case, dir: &Path) -> io::Result<f64> {
    let stem = case.name.replace('/', "-");
    if let Run::EchoServer(server, kind) = case.run {
        let bin = exe.parent().unwrap_or(Path::new("."));
        let argv = [
            bin.join("bench_echo_server").display().to_string(),
            "--server".into(),
            server.to_string(),
            "--loop".into(),
            kind.to_string(),
        ];
        let counts = count_server(
            &argv,
            &[super::echo::SIZE],
            super::echo::WARMUP,
            case.ops,
            dir,
            &stem,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", case.name)))?;
        return Ok(counts[0]);
    }
    let out_file = dir.join(format!("{stem}.out"));
    let log_file = dir.join(format!("{stem}.log"));
    // Left from an earlier run: not this run's dumps.
    for f in std::fs::read_dir(dir)? {
        let f = f?;
        if f.file_name()
            .to_string_lossy()
            .starts_with(&format!("{stem}.out"))
        {
            std::fs::remove_file(f.path())?;
        }
    }
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--separate-threads=yes")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(format!("--log-file={}", log_file.display()))
        .arg(exe)
        .args(["case", &case.name])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        return Err(io::Error::other(format!(
            "{}: `bench_icount case` under callgrind exited with {status}; the end of {}:\n{}",
            case.name,
            log_file.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    let per_thread = read_dump(dir, &format!("{stem}.out"), &case.name)?;
    if !per_thread.contains_key(&1) {
        return Err(io::Error::other(format!(
            "{}: no dump of the main thread",
            case.name
        )));
    }
    let total: u64 = per_thread.values().sum();
    Ok(total as f64 / case.ops as f64)
}

/// The instructions of each thread in the dump whose trigger names
/// `reason`, from the files `<prefix>.<dump>-<thread>` in `dir`.
fn read_dump(dir: &Path, prefix: &str, reason: &str) -> io::Result<BTreeMap<u32, u64>> {
    let mut per_thread = BTreeMap::new();
    let trigger = format!("desc: Trigger: Client Request: {reason}");
    for f in std::fs::read_dir(dir)? {
        let f = f?;
        let name = f.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        // `.1-01`: dump 1, thread 1; the dump at exit has no dump number.
        let Some(thread) = rest
            .rsplit_once('-')
            .and_then(|(_, t)| t.parse::<u32>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(f.path())?;
        if !text.lines().any(|l| l == trigger) {
            continue;
        }
        let total = text
            .lines()
            .find_map(|l| l.strip_prefix("summary:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("{name}: no `summary:` line")))?;
        per_thread.insert(thread, total);
    }
    if per_thread.is_empty() {
        return Err(io::Error::other(format!(
            "no callgrind dump `{prefix}.*` with `{trigger}` in {}",
            dir.display()
        )));
    }
    Ok(per_thread)
}

/// Run `cases` with `jobs` processes at a time; counts by case name,
/// printing progress to stderr.
///
/// # Errors
/// The first case that failed.
pub fn run_all(
    exe: &Path,
    cases: &[Case],
    dir: &Path,
    jobs: usize,
) -> io::Result<BTreeMap<String, f64>> {
    std::fs::create_dir_all(dir)?;
    let next = Mutex::new(0usize);
    let results = Mutex::new(BTreeMap::new());
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().expect("lock");
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(case) = cases.get(i) else { return };
                    match run_case(exe, case, dir) {
                        Ok(count) => {
                            eprintln!("  {:<34} {count:>10.1} instructions per op", case.name);
                            results
                                .lock()
                                .expect("lock")
                                .insert(case.name.clone(), count);
                        }
                        Err(e) => {
                            eprintln!("  {:<34} FAILED", case.name);
                            first_error.lock().expect("lock").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(results.into_inner().expect("lock"))
}

/// The recorded counts: `case<TAB>instructions per op` lines; `#` starts a
/// comment, and a `# machine:` comment names where they were recorded.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// Counts by case name.
    pub counts: BTreeMap<String, f64>,
    /// The `# machine:` line's value (architecture), if any.
    pub machine: Option<String>,
}

impl Baseline {
    /// Read `path`.
    ///
    /// # Errors
    /// If it cannot be read or a line does not parse.
    pub fn read(path: &Path) -> io::Result<Baseline> {
        let text = std::fs::read_to_string(path)?;
        let mut b = Baseline::default();
        for (i, line) in text.lines().enumerate() {
            if let Some(m) = line.strip_prefix("# machine:") {
                b.machine = Some(m.trim().to_owned());
            }
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, n) = line
                .split_once('\t')
                .and_then(|(c, n)| Some((c, n.trim().parse::<f64>().ok()?)))
                .ok_or_else(|| {
                    io::Error::other(format!(
                        "{}:{}: expected `case<TAB>count`",
                        path.display(),
                        i + 1
                    ))
                })?;
            b.counts.insert(name.to_owned(), n);
        }
        Ok(b)
    }

    /// Write `counts` to `path`, with the header that says how to update it.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn write(path: &Path, counts: &BTreeMap<String, f64>, cases: &[Case]) -> io::Result<()> {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# The perf gate's recorded instruction counts (user-space instructions per\n\
             # operation, callgrind): `make perf-gate` fails when a count is more than\n\
             # {:.0} % above its line here. Recorded by `make perf-gate-update` (see\n\
             # docs/benchmarks.md, \"The perf gate\"); commit this file with the change\n\
             # that moved the counts and say why in the message.",
            TOLERANCE * 100.0
        );
        let _ = writeln!(s, "# machine: {}", machine());
        let _ = writeln!(s, "# recorded with: {}", toolchain());
        for case in cases {
            if let Some(n) = counts.get(&case.name) {
                let _ = writeln!(s, "{}\t{n:.1}", case.name);
            }
        }
        std::fs::write(path, s)
    }
}

/// The architecture the counts are for.
pub fn machine() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// The compiler and valgrind, for the record.
fn toolchain() -> String {
    let rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "rustc ?".into());
    format!(
        "{rustc}, {}",
        valgrind_version().unwrap_or_else(|| "valgrind ?".into())
    )
}

/// One gate verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within the tolerance.
    Ok,
    /// More than the tolerance below the record: worth recording.
    Improved,
    /// More than the tolerance above the record.
    Regressed,
    /// No recorded count.
    New,
}

/// Compare `counts` with `baseline`; each case's verdict, in case order.
pub fn compare(
    cases: &[Case],
    counts: &BTreeMap<String, f64>,
    baseline: &Baseline,
) -> Vec<(String, Option<f64>, f64, Verdict)> {
    let mut v = Vec::new();
    for case in cases {
        let Some(&now) = counts.get(&case.name) else {
            continue;
        };
        let recorded = baseline.counts.get(&case.name).copied();
        let verdict = match recorded {
            None => Verdict::New,
            Some(r) if now > r * (1.0 + TOLERANCE) => Verdict::Regressed,
            Some(r) if now < r * (1.0 - TOLERANCE) => Verdict::Improved,
            Some(_) => Verdict::Ok,
        };
        v.push((case.name.clone(), recorded, now, verdict));
    }
    v
}

/// The reference rows of a variant within its workload: the floor, and for
/// `on-<host>` / `streams-on-<host>` the host's own row.
fn references(case: &str) -> (Option<String>, Option<String>) {
    let Some((workload, variant)) = case.split_once('/') else {
        return (None, None);
    };
    let floor = (variant != "floor").then(|| format!("{workload}/floor"));
    let v = variant.strip_prefix("streams-").unwrap_or(variant);
    // An attached loop is compared with its host's own primitive too.
    let host = v.strip_prefix("on-").map(|h| {
        let h = h.strip_suffix("-attached").unwrap_or(h);
        format!("{workload}/{h}")
    });
    (floor, host)
}

/// A markdown table of `counts`: per case, instructions per operation,
/// × the floor and × the host's own primitive (same run), and with a
/// baseline the recorded count, the change and the verdict.
pub fn table(
    cases: &[Case],
    counts: &BTreeMap<String, f64>,
    baseline: Option<&Baseline>,
) -> String {
    let mut s = String::new();
    let verdicts: BTreeMap<String, (Option<f64>, Verdict)> = baseline
        .map(|b| {
            compare(cases, counts, b)
                .into_iter()
                .map(|(n, r, _, v)| (n, (r, v)))
                .collect()
        })
        .unwrap_or_default();
    if baseline.is_some() {
        let _ = writeln!(
            s,
            "| case | instructions/op | × floor | × host | recorded | change | gate |\n|---|---|---|---|---|---|---|"
        );
    } else {
        let _ = writeln!(
            s,
            "| case | instructions/op | × floor | × host |\n|---|---|---|---|"
        );
    }
    let ratio = |num: f64, den: Option<String>| {
        den.and_then(|d| counts.get(&d))
            .map_or("—".to_owned(), |d| format!("{:.2}", num / d))
    };
    for case in cases {
        let Some(&now) = counts.get(&case.name) else {
            continue;
        };
        let (floor, host) = references(&case.name);
        let _ = write!(
            s,
            "| {} | {now:.1} | {} | {} |",
            case.name,
            ratio(now, floor),
            ratio(now, host)
        );
        if let Some((recorded, verdict)) = verdicts.get(&case.name) {
            let (rec, change) = match recorded {
                Some(r) => (
                    format!("{r:.1}"),
                    format!("{:+.1} %", (now / r - 1.0) * 100.0),
                ),
                None => ("—".into(), "—".into()),
            };
            let v = match verdict {
                Verdict::Ok => "ok",
                Verdict::Improved => "improved (record it)",
                Verdict::Regressed => "**REGRESSED**",
                Verdict::New => "new (record it)",
            };
            let _ = write!(s, " {rec} | {change} | {v} |");
        }
        let _ = writeln!(s);
    }
    s
}

/// Where the gate keeps its callgrind files: `$CARGO_TARGET_DIR` or the
/// workspace's `target/`, then `icount/`.
pub fn work_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("icount")
}

/// The recorded counts of this checkout.
pub fn default_baseline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("icount-baseline.tsv")
}
