//! The glib guest's bookkeeping of what it watches on the loop: nothing is
//! left behind by a guest that ended inside a batch.

use std::rc::Rc;
use std::time::Duration;

use glib::MainContext;
use oneloop::Loop;
use oneloop_conformance::support::{LIMIT, Watchdog};

#[test]
fn a_guest_detached_inside_a_batch_leaves_nothing_watched() {
    // Detaching from a task (the usual place on an owned loop: all user
    // code runs in a batch) must not let the end of that batch watch the
    // context's fds again for a guest that has ended: they would stay
    // watched for good, and a wake-up of the context (its eventfd, never
    // read again) would make the loop spin.
    let lp = Loop::new().unwrap();
    let ctx = MainContext::new();
    let guest = Rc::new(oneloop_glib::guest(&lp, &ctx).unwrap());
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let g = guest.clone();
    let task = lp
        .spawn(async move {
            oneloop::sleep(Duration::from_millis(1)).await.unwrap();
            assert!(oneloop::get_running_loop().unwrap().stats().fds >= 1);
            g.detach()
        })
        .unwrap();
    assert!(lp.run_until_complete(task).unwrap().unwrap());
    assert!(!guest.is_attached());
    let stats = lp.stats();
    assert_eq!(
        stats.fds, 0,
        "the ended guest left the context's fds watched: {stats:?}"
    );
    // The context is free: another thread may own it.
    let other = ctx.clone();
    assert!(
        std::thread::spawn(move || other.acquire().is_ok())
            .join()
            .unwrap()
    );
    lp.close().unwrap();
}
