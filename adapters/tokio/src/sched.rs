//! The bridge thread's scheduling policy: `SCHED_BATCH` on Linux.
//!
//! The bridge's reactor thread wakes whenever a socket of the loop becomes
//! ready. Under the default policy that wake-up preempts the loop's thread
//! when both share a CPU, mid-batch, once per few ready sockets: measured
//! on the bridge echo benchmark (16 connections, both threads on one CPU),
//! about one preemption of the loop every 8 requests and 1.6–1.9× tokio's
//! CPU per request. A `SCHED_BATCH` thread does not preempt on wake-up
//! (sched(7): it is "mildly disfavored in scheduling decisions" against
//! wake-ups); it runs when the loop's thread blocks, or at once on an idle
//! CPU, so the sockets that became ready meanwhile are dispatched in one
//! turn. Its share of the CPU under load (nice value, weight) is unchanged.
//! The runtime's `spawn_blocking` threads inherit the policy (Linux threads
//! do), which suits work that is batch by nature.
//!
//! This is the crate's only `unsafe` outside `fd.rs`.

/// Make the calling thread `SCHED_BATCH`. Best effort: a kernel or sandbox
/// that refuses it leaves the thread as it was.
#[cfg(target_os = "linux")]
pub(crate) fn batch_this_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads `param` (a valid, initialised
    // struct that outlives the call) and changes only the policy of the
    // calling thread (pid 0); it has no memory effect on this process.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

/// Other systems keep the default policy.
#[cfg(not(target_os = "linux"))]
pub(crate) fn batch_this_thread() {}
