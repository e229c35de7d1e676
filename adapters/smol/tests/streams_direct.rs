//! Streams (direct reads, reads parked on the fd's readiness) on smol,
//! polled by a oneloop task and by a task of smol's own executor.

mod streams_support;

use std::rc::Rc;

use async_executor::LocalExecutor;
use oneloop::Loop;
use oneloop_smol::SmolBackend;

#[test]
fn a_stream_echo_runs_on_the_smol_host() {
    let lp = Loop::with_backend(SmolBackend::new().unwrap()).unwrap();
    streams_support::with_watchdog(&lp, streams_support::round_trips(lp.clone()));
}

#[test]
fn a_stream_read_by_a_smol_task_is_woken() {
    let ex = Rc::new(LocalExecutor::new());
    let lp = Loop::with_backend(SmolBackend::with_executor(ex.clone()).unwrap()).unwrap();
    let task = ex.spawn(streams_support::round_trips(lp.clone()));
    streams_support::with_watchdog(&lp, task);
}
