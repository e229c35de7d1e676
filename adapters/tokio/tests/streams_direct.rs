//! Streams (direct reads, reads parked on the fd's readiness) on tokio.

mod streams_support;

#[test]
fn a_stream_echo_runs_on_the_tokio_host() {
    let lp = oneloop_tokio::new_loop().unwrap();
    streams_support::with_watchdog(&lp, streams_support::round_trips(lp.clone()));
}
