//! The glib guest watches anew an fd number the context reuses for a new
//! file. Alone in its test binary: it relies on the kernel handing out the
//! lowest free fd number, which a test running beside it could take.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use glib::thread_guard::ThreadGuard;
use glib::{ControlFlow, IOCondition, MainContext, Priority};
use oneloop::Loop;
use oneloop_conformance::support::{LIMIT, Watchdog};

/// Attach an fd source for `fd` to `ctx`, calling `f` when it is readable.
fn readable_on(ctx: &MainContext, fd: i32, f: impl FnMut() + 'static) -> glib::Source {
    let mut f = ThreadGuard::new(f);
    let source =
        glib_unix::fd_source_new(fd, IOCondition::IN, None, Priority::DEFAULT, move |_, _| {
            (f.get_mut())();
            ControlFlow::Continue
        });
    source.attach(Some(ctx));
    source
}

#[test]
fn an_fd_number_closed_and_reused_within_one_batch_is_watched_anew() {
    // A reconnect: a callback drops a connection's source and socket and
    // opens a new one, which gets the same (lowest free) fd number. The
    // context's poll set then reads the same as before, but the loop's
    // registration went away with the old file (epoll forgets a closed
    // file): the guest must watch the new file, or its events are lost.
    let lp = Loop::new().unwrap();
    let ctx = MainContext::new();
    let _guest = oneloop_glib::guest(&lp, &ctx).unwrap();
    let watchdog = Watchdog::stop_loop(&lp, LIMIT);

    let (a1, b1) = UnixStream::pair().unwrap();
    let number = a1.as_raw_fd();
    let old = readable_on(&ctx, number, || {});
    // A batch: the guest watches the old file.
    lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))
        .unwrap()
        .unwrap();

    let reads = Rc::new(Cell::new(0));
    let (r, c) = (reads.clone(), ctx.clone());
    let task = lp
        .spawn(async move {
            // One batch: the old source and file go, the new ones come.
            old.destroy();
            drop(a1);
            let (a2, b2) = UnixStream::pair().unwrap();
            assert_eq!(a2.as_raw_fd(), number, "the fd number was not reused");
            a2.set_nonblocking(true).unwrap();
            let rx = a2.try_clone().unwrap();
            let r2 = r.clone();
            let new = readable_on(&c, a2.as_raw_fd(), move || {
                let mut buf = [0; 8];
                if let Ok(n) = (&rx).read(&mut buf) {
                    r2.set(r2.get() + n);
                }
            });
            // Later batches: each byte must reach the new source.
            for i in 1..=3 {
                oneloop::sleep(Duration::from_millis(2)).await.unwrap();
                (&b2).write_all(b"x").unwrap();
                // Until the watchdog stops the loop, if the byte is lost.
                while r.get() < i {
                    oneloop::sleep(Duration::from_millis(1)).await.unwrap();
                }
            }
            new.destroy();
            drop((a2, b2));
        })
        .unwrap();
    let out = lp.run_until_complete(task);
    watchdog.assert_not_fired("the reused fd number");
    out.unwrap().unwrap();
    assert_eq!(reads.get(), 3);
    drop(b1);
    lp.close().unwrap();
}
