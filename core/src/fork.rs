//! A process forked while a loop runs (from one of its callbacks: Python's
//! `multiprocessing` with the fork start method, a plain `fork()`) starts
//! with no running loop, as asyncio's child does (it keys its running loop
//! by pid): the child may make and run a loop of its own, and handle signals
//! with it (`crate::signal::sys::forget_after_fork`), and close its copy of the
//! parent's loop without touching what the two share in the kernel
//! ([`generation`]). The one place of the crate with `unsafe` code for it.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many forks lie between this process and the first one that made a
/// loop (counted by the child handler): a loop made at another count is a
/// copy of a parent's, whose kernel objects (its poller above all) it
/// shares with that parent.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// This process's fork count; see [`GENERATION`].
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Register the child handler, once per process.
pub(crate) fn forget_running_loop_in_children() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `pthread_atfork` only records the three function pointers
        // (two null), valid for the whole program; `in_child` obeys what
        // a fork child may do before `exec` (see below).
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
}

/// Runs in the child, on the thread that called `fork`, before `fork`
/// returns there. After a fork of a multi-threaded process only
/// async-signal-safe work is allowed until `exec`: this touches this
/// thread's own thread-locals and three atomics, and frees nothing (the
/// parent's loop stays leaked in the child).
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::context::forget_running_after_fork();
    #[cfg(feature = "signal")]
    crate::signal::sys::forget_after_fork();
}
