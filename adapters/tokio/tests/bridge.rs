//! The tokio bridge's edges: enabling twice, after close, on the tokio
//! adapter itself; the hint a tokio panic carries on a loop without it;
//! `tokio::spawn`ed (`Send`) work and a task cancelled in tokio I/O. (Every
//! mode × the bridge is a column of the interop matrix, `interop/`.)

mod util;

use std::time::Duration;

use oneloop::{ErrorKind, Loop};
use util::{LIMIT, Watchdog};

#[test]
fn enabling_twice_is_an_invalid_state_and_the_first_bridge_keeps_working() {
    let lp = Loop::new().unwrap();
    assert!(!oneloop_tokio::is_enabled(&lp));
    oneloop_tokio::enable(&lp).unwrap();
    let err = oneloop_tokio::enable(&lp).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains("already enabled"), "{err}");
    assert!(oneloop_tokio::is_enabled(&lp));
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let task = lp
        .spawn(async { tokio::time::sleep(Duration::from_millis(1)).await })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    lp.close().unwrap();
}

#[test]
fn enabling_a_closed_loop_is_closed() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    assert_eq!(
        oneloop_tokio::enable(&lp).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert!(!oneloop_tokio::is_enabled(&lp));
}

#[test]
fn on_the_tokio_adapter_enable_is_a_no_op_every_time() {
    let lp = oneloop_tokio::new_loop().unwrap();
    assert!(oneloop_tokio::is_enabled(&lp));
    oneloop_tokio::enable(&lp).unwrap();
    oneloop_tokio::enable(&lp).unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let task = lp
        .spawn(async { tokio::time::sleep(Duration::from_millis(1)).await })
        .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    lp.close().unwrap();
}

#[test]
fn a_tokio_future_on_a_loop_without_the_bridge_fails_with_the_fix_named() {
    let lp = Loop::new().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let sleep = lp
        .spawn(async { tokio::time::sleep(Duration::from_millis(1)).await })
        .unwrap();
    let err = lp.run_until_complete(sleep).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    let msg = err.to_string();
    assert!(
        msg.contains("Tokio 1.x runtime"),
        "tokio's own text is kept: {msg}"
    );
    assert!(
        msg.contains("oneloop_tokio::enable(&lp)"),
        "the fix is named: {msg}"
    );
    let local = lp
        .spawn(async { tokio::task::spawn_local(async {}).await.unwrap() })
        .unwrap();
    let err = lp.run_until_complete(local).unwrap().unwrap_err();
    assert!(
        err.to_string().contains("oneloop_tokio::enable(&lp)"),
        "{err}"
    );
    lp.close().unwrap();
}

#[test]
fn tokio_spawned_send_work_runs_and_its_result_comes_back_to_the_loop() {
    let lp = Loop::new().unwrap();
    oneloop_tokio::enable(&lp).unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let loop_thread = std::thread::current().id();
    let task = lp
        .spawn(async move {
            let worker = tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                std::thread::current().id()
            });
            let ran_on = worker.await.unwrap();
            (ran_on, std::thread::current().id())
        })
        .unwrap();
    let (ran_on, resumed_on) = lp.run_until_complete(task).unwrap().unwrap();
    assert_ne!(
        ran_on, loop_thread,
        "`tokio::spawn` runs on the bridge's runtime"
    );
    assert_eq!(
        resumed_on, loop_thread,
        "the awaiting task resumes on the loop's thread"
    );
    lp.close().unwrap();
}

#[test]
fn a_spawn_local_task_still_pending_at_close_is_dropped_with_the_loop() {
    struct Flag(std::rc::Rc<std::cell::Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let lp = Loop::new().unwrap();
    oneloop_tokio::enable(&lp).unwrap();
    let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = Flag(dropped.clone());
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let started = lp
        .spawn(async move {
            tokio::task::spawn_local(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
        })
        .unwrap();
    lp.run_until_complete(started).unwrap().unwrap();
    assert!(!dropped.get());
    lp.close().unwrap();
    assert!(dropped.get(), "closing the loop drops the LocalSet's tasks");
}

/// The scheduling policy of the calling thread, from `/proc/thread-self/stat`
/// (field 41; 3 is `SCHED_BATCH`).
#[cfg(target_os = "linux")]
fn this_threads_policy() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command name, which is in parentheses: the 3rd is field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(41 - 3).unwrap().parse().unwrap()
}

#[test]
#[cfg(target_os = "linux")]
fn the_reactor_thread_is_sched_batch_and_the_loop_thread_keeps_its_policy() {
    let lp = Loop::new().unwrap();
    oneloop_tokio::enable(&lp).unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let task = lp
        .spawn(async { tokio::spawn(async { this_threads_policy() }).await })
        .unwrap();
    let reactor = lp.run_until_complete(task).unwrap().unwrap().unwrap();
    assert_eq!(reactor, 3, "the bridge's reactor thread is not SCHED_BATCH");
    assert_eq!(this_threads_policy(), 0, "the loop's thread changed policy");
    lp.close().unwrap();
}
