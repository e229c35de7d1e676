//! Helpers shared by the behaviour tests: the conformance suite's watchdog
//! and waits (so that a missed wake-up fails a test instead of hanging CI),
//! and runs on the host executor or the owned loop under a deadline.

#![allow(dead_code, unused_imports)] // each test crate uses a subset

use std::future::Future;

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::FutureExt;
use oneloop::Loop;

/// The suite's one watchdog, its limit, and its waits.
pub(crate) use oneloop_conformance::support::{
    LIMIT, Watchdog, current_tid, wait_until, wait_until_asleep,
};

/// Run `fut` on the host executor `ex` (as the host program would), giving
/// up after [`LIMIT`].
///
/// # Panics
/// On timeout.
pub(crate) fn host_run<T>(ex: &LocalExecutor<'_>, fut: impl Future<Output = T>) -> T {
    let limited = async { Some(fut.await) }.or(async {
        Timer::after(LIMIT).await;
        None
    });
    async_io::block_on(ex.run(limited)).expect("timed out: a wake-up was missed")
}

/// `run_until_complete` on an owned loop under the suite's watchdog.
///
/// # Panics
/// On timeout or if the run fails.
pub(crate) fn run_owned<F: Future>(lp: &Loop, fut: F) -> F::Output {
    oneloop_conformance::support::run_within(lp, LIMIT, fut)
}
