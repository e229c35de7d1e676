//! Closing a loop stops what the tokio bridge started: its threads are
//! joined and its fds (the reactor's epoll, its waker) are closed. One test
//! in its own binary, so no other test's bridge is alive while it counts.

mod util;

use std::time::Duration;

use oneloop::Loop;
use util::{LIMIT, Watchdog};

fn bridge_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("oneloop-tokio"))
        .count()
}

fn open_fds() -> Vec<std::path::PathBuf> {
    let mut fds: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| !target.starts_with("/proc")) // read_dir's own
        .collect();
    fds.sort();
    fds
}

/// A loop with the bridge, used for a reactor registration, a timer and a
/// blocking-pool thread, then closed.
fn one_cycle() {
    let lp = Loop::new().unwrap();
    oneloop_tokio::enable(&lp).unwrap();
    assert_eq!(bridge_threads(), 1, "one helper thread per bridge");
    let watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let task = lp
        .spawn(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            tokio::task::spawn_blocking(|| 1).await.unwrap();
            listener.local_addr().unwrap()
        })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    drop(watchdog);
    lp.close().unwrap();
}

#[test]
fn closing_the_loop_joins_the_bridge_thread_and_closes_its_fds() {
    assert_eq!(bridge_threads(), 0);
    // The first cycle makes what lives as long as the process, made once:
    // oneloop's process-wide pool, tokio's signal-driver socket pair.
    one_cycle();
    assert_eq!(bridge_threads(), 0, "closing joins the bridge's threads");
    let fds = open_fds();
    for _ in 0..3 {
        one_cycle();
        assert_eq!(bridge_threads(), 0, "closing joins the bridge's threads");
        assert_eq!(open_fds(), fds, "closing leaves no fd of the bridge behind");
    }
}
