//! glib and gio futures awaited in oneloop tasks on this loop.

mod common;

use std::time::{Duration, Instant};

use common::iterate_until;
use glib::MainContext;
use oneloop_conformance::support::Watchdog;

const LIMIT: Duration = Duration::from_secs(5);

/// `glib::timeout_future` and a gio async read, awaited inside a task on
/// an attached loop.
#[test]
fn glib_and_gio_futures_in_attached_tasks() {
    let ctx = MainContext::new();
    // The context a host iterates is its thread-default one while it runs
    // (GTK: the default context); glib futures attach to it.
    let _td = ctx.acquire().unwrap();
    ctx.with_thread_default(|| {
        let lp = oneloop_glib::attach(&ctx).unwrap();
        let _tw = common::tripwire(&lp);
        let task = lp
            .spawn(async {
                let start = Instant::now();
                glib::timeout_future(Duration::from_millis(5)).await;
                assert!(start.elapsed() >= Duration::from_millis(5));
                let stream =
                    gio::MemoryInputStream::from_bytes(&glib::Bytes::from_static(b"gio says hi"));
                let bytes = gio::prelude::InputStreamExtManual::read_all_future(
                    &stream,
                    vec![0u8; 32],
                    glib::Priority::DEFAULT,
                )
                .await
                .map_err(|(_, e)| e)
                .unwrap();
                let (buf, n, _) = bytes;
                String::from_utf8(buf[..n].to_vec()).unwrap()
            })
            .unwrap();
        assert!(iterate_until(&ctx, LIMIT, || task.done()));
        assert_eq!(task.result().unwrap(), "gio says hi");
        lp.close().unwrap();
    })
    .unwrap();
}

/// In owned mode each iteration pushes the loop's context as thread
/// default, so the same works under `run_until_complete(task)`.
#[test]
fn glib_futures_in_owned_tasks() {
    let lp = oneloop_glib::new_loop().unwrap();
    let _tw = common::tripwire(&lp);
    let task = lp
        .spawn(async {
            glib::timeout_future(Duration::from_millis(2)).await;
            oneloop::sleep(Duration::from_millis(1)).await?;
            glib::timeout_future(Duration::from_millis(2)).await;
            Ok::<_, oneloop::Error>(3)
        })
        .unwrap();
    let _wd = Watchdog::stop_loop(&lp, LIMIT);
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap().unwrap(), 3);
    lp.close().unwrap();
}

#[test]
fn run_until_complete_awaits_glib_futures_directly_in_owned_mode() {
    let lp = oneloop_glib::new_loop().unwrap();
    let out = lp
        .run_until_complete(oneloop::timeout(
            std::time::Duration::from_secs(10),
            async {
                // Without the context pushed around the root poll, this source
                // would land on the global default context and never fire.
                glib::timeout_future(std::time::Duration::from_millis(2)).await;
                7
            },
        ))
        .unwrap();
    assert_eq!(out.unwrap(), 7);
}
