//! Streams (direct reads, reads parked on the fd's readiness) on GLib.

mod streams_support;

#[test]
fn a_stream_echo_runs_on_the_glib_host() {
    let lp = oneloop_glib::new_loop().unwrap();
    streams_support::with_watchdog(&lp, streams_support::round_trips(lp.clone()));
}
