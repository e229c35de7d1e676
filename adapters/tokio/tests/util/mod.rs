//! Helpers shared by the integration tests: the conformance suite's
//! watchdog and waits, and host builders.
#![allow(dead_code, unreachable_pub, unused_imports)] // each test crate uses a subset

use std::future::Future;

/// The suite's one watchdog and its limit: a hang fails the test after
/// `LIMIT`, it never blocks CI.
pub use oneloop_conformance::support::{
    LIMIT, Watchdog, current_tid, wait_until, wait_until_asleep,
};

/// A current-thread runtime and a `LocalSet`, as a tokio program has.
pub fn tokio_host() -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (rt, tokio::task::LocalSet::new())
}

/// Run `fut` on a fresh tokio host, failing after `LIMIT`.
pub fn in_local_set<F: Future>(fut: F) -> F::Output {
    let (rt, local) = tokio_host();
    local.block_on(&rt, async {
        tokio::time::timeout(LIMIT, fut)
            .await
            .expect("watchdog: the test ran past its limit")
    })
}
