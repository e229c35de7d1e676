//! An attached loop whose host executor is dropped before the loop: the
//! loop's fds (its wake socket pair) must still be released when the loop
//! goes, even though its driver task may never be dropped.
//!
//! Why it could leak: async-executor drops the tasks it holds when it is
//! dropped, but a wake from another thread (async-io's reactor thread)
//! racing with that drop queues the task again into the dropped executor,
//! where nothing ever drops it: about 1 attached loop in 500 leaked its
//! wake socket pair here before the driver task held the backend's state
//! weakly. The loops are made and driven by the conformance suite's host
//! (an `async_io::block_on(ex.tick())` host with a deadline timer), as the
//! reliability checks found it.

#[path = "../../../conformance/hosts/smol.rs"]
mod host;

use std::time::Duration;

use oneloop_conformance::Env;

/// Open fds of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn dropping_the_host_before_the_loop_leaks_no_fd() {
    let harness = host::harness();
    let spec = harness
        .specs()
        .iter()
        .find(|s| s.name == "smol (attached)")
        .expect("the attached spec")
        .clone();
    let mut before = 0;
    for i in 0..10_000 {
        if i == 1 {
            // From the second on: async-io's reactor keeps its own fds.
            before = open_fds();
        }
        let env = Env::new(
            "host-dropped-first",
            &spec,
            (spec.setup)().unwrap(),
            Duration::from_secs(10),
        );
        let lp = env.lp().clone();
        let task = lp
            .spawn(async { oneloop::sleep(Duration::ZERO).await })
            .unwrap();
        env.run_until(task).unwrap().unwrap();
        // The host goes first (with the Env), then the loop's last handle.
        drop(env);
        drop(lp);
    }
    assert_eq!(
        open_fds(),
        before,
        "fds leaked by loops whose host went first"
    );
}
