//! A process forked while a loop runs (from one of its callbacks: Python's
//! `multiprocessing` with the fork start method, a plain `fork()`) starts
//! with no running loop, as asyncio's child does (it keys its running loop
//! by pid): the child may make and run a loop of its own, and handle signals
//! with it (`crate::signal::forget_after_fork`). The one place of the crate
//! with `unsafe` code for it.

use std::sync::Once;

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
/// thread's own thread-locals and two atomics, and frees nothing (the
/// parent's loop stays leaked in the child).
extern "C" fn in_child() {
    crate::context::forget_running_after_fork();
    #[cfg(feature = "signal")]
    crate::signal::forget_after_fork();
}
