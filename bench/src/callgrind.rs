//! Callgrind's client requests: the few magic instruction sequences that a
//! program running under `valgrind --tool=callgrind` uses to zero its
//! counters and dump them, so an instruction count covers exactly a
//! measured region (after set-up and warm-up, before tear-down).
//!
//! The sequences are those of `valgrind.h` and `callgrind.h`: a run of
//! rotations that leave the register unchanged, then a no-op exchange that
//! valgrind's decoder recognises. On a real CPU they do nothing and return
//! the default value, so [`running_on_valgrind`] is `false` and the other
//! requests are no-ops. Only x86_64 and aarch64 Linux are supported (the
//! architectures this project runs on); elsewhere every request is a no-op
//! and [`running_on_valgrind`] is `false`, which the perf gate reports as a
//! skip.
//!
//! Its `unsafe` code is one `asm!` block per architecture.

use std::ffi::CStr;

/// `VG_USERREQ__RUNNING_ON_VALGRIND` (valgrind.h).
const RUNNING_ON_VALGRIND: usize = 0x1001;
/// `VG_USERREQ_TOOL_BASE('C', 'T')` (callgrind.h).
const CALLGRIND_BASE: usize = ((b'C' as usize) << 24) | ((b'T' as usize) << 16);
/// `VG_USERREQ__ZERO_STATS`.
const ZERO_STATS: usize = CALLGRIND_BASE + 1;
/// `VG_USERREQ__DUMP_STATS_AT`.
const DUMP_STATS_AT: usize = CALLGRIND_BASE + 3;

/// Issue a client request; `default` on a real CPU.
#[inline(always)]
fn request(default: usize, code: usize, arg1: usize) -> usize {
    let args: [usize; 6] = [code, arg1, 0, 0, 0, 0];
    imp::request(default, &args)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    #[inline(always)]
    pub(super) fn request(default: usize, args: &[usize; 6]) -> usize {
        let mut result = default;
        // SAFETY: valgrind's documented client-request sequence for amd64.
        // The four rotations of rdi add up to 128 bits (rdi is unchanged,
        // only the flags are touched, which `asm!` assumes clobbered) and
        // `xchg rbx, rbx` exchanges a register with itself; on a real CPU
        // nothing else happens. Under valgrind the request reads the six
        // words at rax (a live array borrowed for the call; `DUMP_STATS_AT`
        // also reads the NUL-terminated string its second word points to,
        // which the caller keeps alive) and writes its answer to rdx.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                inout("rdx") result,
                in("rax") args.as_ptr(),
                out("rdi") _,
                options(nostack),
            );
        }
        result
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
mod imp {
    #[inline(always)]
    pub(super) fn request(default: usize, args: &[usize; 6]) -> usize {
        let mut result = default;
        // SAFETY: valgrind's documented client-request sequence for arm64:
        // rotations of x12 adding up to 128 bits (x12 unchanged) and
        // `orr x10, x10, x10` (x10 unchanged); on a real CPU nothing else
        // happens. Under valgrind the request reads the six words at x4 (a
        // live array borrowed for the call, and for `DUMP_STATS_AT` the
        // NUL-terminated string its second word points to) and writes its
        // answer to x3.
        unsafe {
            std::arch::asm!(
                "ror x12, x12, #3",
                "ror x12, x12, #13",
                "ror x12, x12, #51",
                "ror x12, x12, #61",
                "orr x10, x10, x10",
                inout("x3") result,
                in("x4") args.as_ptr(),
                out("x12") _,
                out("x10") _,
                options(nostack),
            );
        }
        result
    }
}

#[cfg(not(any(
    all(target_arch = "x86_64", target_os = "linux"),
    all(target_arch = "aarch64", target_os = "linux")
)))]
mod imp {
    #[inline(always)]
    pub(super) fn request(default: usize, _args: &[usize; 6]) -> usize {
        default
    }
}

/// Whether this process runs under valgrind (any tool).
///
/// ```
/// // A doctest runs natively.
/// assert!(!oneloop_bench::callgrind::running_on_valgrind());
/// ```
pub fn running_on_valgrind() -> bool {
    request(0, RUNNING_ON_VALGRIND, 0) != 0
}

/// Zero callgrind's event counters (of every thread): what runs from here on
/// is what the next dump counts.
pub fn zero_stats() {
    request(0, ZERO_STATS, 0);
}

/// Write callgrind's counters since the last zero or dump to a new dump
/// file, whose `desc: Trigger:` line names `reason`, and zero them.
pub fn dump_stats_at(reason: &CStr) {
    request(0, DUMP_STATS_AT, reason.as_ptr() as usize);
}
