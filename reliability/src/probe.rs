//! What the process holds: open fds, threads, resident memory (Linux
//! `/proc/self`), so that a check can say "back to where it started".

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Open file descriptors.
    pub fds: usize,
    /// Threads, but for idle pool threads (see [`pool_threads`]).
    pub threads: usize,
    /// Threads of the `blocking` crate's pool (the smol adapter's
    /// executor, as async-std's), which parks idle threads instead of
    /// ending them.
    pub pool_threads: usize,
    /// Resident set size, bytes.
    pub rss: u64,
}

impl Usage {
    /// Read them now.
    ///
    /// # Panics
    /// Where `/proc/self` cannot be read (these checks are Linux-only, as
    /// the suite's CPU-time probes are).
    pub fn now() -> Usage {
        let pool = pool_threads();
        Usage {
            fds: fd_table().len(),
            threads: threads().saturating_sub(pool),
            pool_threads: pool,
            rss: rss(),
        }
    }
}

/// Every open fd and what it refers to (`readlink /proc/self/fd/N`),
/// without the one the listing itself used.
///
/// # Panics
/// If `/proc/self/fd` cannot be read.
pub fn fd_table() -> BTreeMap<i32, String> {
    let dir = std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd");
    let mut table = BTreeMap::new();
    // The listing's own fd: a directory fd on /proc/<pid>/fd.
    let own = format!("/proc/{}/fd", std::process::id());
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            table.insert(fd, target.to_string_lossy().into_owned());
        }
    }
    table.retain(|_, target| *target != own);
    table
}

/// The fds of `after` that `before` did not have, as `"fd -> target"`.
pub fn new_fds(before: &BTreeMap<i32, String>, after: &BTreeMap<i32, String>) -> Vec<String> {
    after
        .iter()
        .filter(|(fd, target)| before.get(fd) != Some(target))
        .map(|(fd, target)| format!("{fd} -> {target}"))
        .collect()
}

/// Threads of this process (`Threads:` of `/proc/self/status`).
///
/// # Panics
/// If `/proc/self/status` cannot be read.
pub fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads: line in /proc/self/status")
}

/// Threads named `blocking-N`: the `blocking` crate's pool (the smol
/// adapter's executor, as async-std's). Its idle threads stay parked for the next
/// job rather than exit (blocking 1.7 ends a thread only above its limit of
/// 500), so their number follows the most jobs run at once, not how many
/// were run.
pub fn pool_threads() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.starts_with("blocking-"))
        })
        .count()
}

/// The pids of this process's children (every thread's
/// `/proc/self/task/<tid>/children`): running or exited and not yet reaped.
pub fn children() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Resident memory in bytes (`/proc/self/statm`, pages × page size).
///
/// # Panics
/// If `/proc/self/statm` cannot be read.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages in /proc/self/statm");
    pages * rustix::param::page_size() as u64
}

/// Wait until the thread count, pool threads aside, is at most `base`
/// (other pools' threads exit on their own after idling), up to `limit`;
/// the last count seen.
pub fn threads_settle(base: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let n = threads().saturating_sub(pool_threads());
        if n <= base || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
