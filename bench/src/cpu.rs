//! CPU time of the calling thread, the figure the timer benchmarks compare:
//! a loop that waits for deadlines spends wall time idle, and only the CPU it
//! burns per timer tells two loops apart.

use std::time::Duration;

/// CPU time consumed so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
///
/// ```
/// let before = oneloop_bench::cpu::thread_cpu_time();
/// let mut x = 0u64;
/// for i in 0..1_000_000u64 { x = std::hint::black_box(x ^ i); }
/// assert!(oneloop_bench::cpu::thread_cpu_time() >= before);
/// ```
pub fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    // Both fields are non-negative for a CPU clock.
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time consumed so far by the whole process, every thread, user and
/// system (`CLOCK_PROCESS_CPUTIME_ID`, what `getrusage` sums): the echo
/// server's cost, kernel work on its sockets included.
///
/// Through libc's `clock_gettime`, not rustix's: rustix looks the vDSO up
/// in the auxiliary vector, which crashes under valgrind, where the echo
/// servers run for their instruction counts (libc falls back to the
/// syscall there).
///
/// ```
/// let before = oneloop_bench::cpu::process_cpu_time();
/// let mut x = 0u64;
/// for i in 0..1_000_000u64 { x = std::hint::black_box(x ^ i); }
/// assert!(oneloop_bench::cpu::process_cpu_time() >= before);
/// ```
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call, and
    // CLOCK_PROCESS_CPUTIME_ID is a clock every Linux has; the call writes
    // only `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    // Both fields are non-negative for a CPU clock.
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
