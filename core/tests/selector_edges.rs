//! The default loop's selector at its edges: more ready fds than one wait
//! takes, a wake among them, and every kind of timeout (the epoll path, and
//! the `polling` path under `--cfg oneloop_polling`).

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use oneloop::backend::Interest;
use oneloop::native::Selector;

/// Level-triggered and fair: with far more ready fds than one wait returns
/// (256 on epoll), every fd is reported within a few zero-timeout selects,
/// and a pending wake is seen too, none of it lost to the full buffer.
#[test]
fn more_ready_fds_than_one_wait_takes_are_all_reported() {
    let selector = Selector::new().unwrap();
    let pairs: Vec<_> = (0..700).map(|_| UnixStream::pair().unwrap()).collect();
    for (a, b) in &pairs {
        selector.watch(a.as_raw_fd(), Interest::READABLE).unwrap();
        (&*b).write_all(b"x").unwrap();
    }
    selector.waker().wake();
    let want: HashSet<_> = pairs.iter().map(|(a, _)| a.as_raw_fd()).collect();
    let mut seen = HashSet::new();
    let mut woken = false;
    for _ in 0..8 {
        let what = selector
            .select(Some(Duration::ZERO), |fd, r| {
                assert!(r.readable);
                seen.insert(fd);
            })
            .unwrap();
        woken |= what.woken;
    }
    assert_eq!(seen, want, "every ready fd is reported");
    assert!(woken, "the wake is reported");
}

/// Timeouts from zero to `Duration::MAX`: none panics or fails, none returns
/// before its time unless woken, and a huge one still wakes on a wake.
#[test]
fn any_timeout_is_accepted_and_none_ends_early() {
    let selector = Selector::new().unwrap();
    for t in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_micros(999),
        Duration::from_millis(2),
        Duration::from_nanos(2_000_001),
    ] {
        let start = Instant::now();
        selector.select(Some(t), |_, _| unreachable!()).unwrap();
        assert!(start.elapsed() >= t, "{t:?} ended early");
    }
    for t in [
        Duration::from_secs(86_400 * 365 * 100),
        Duration::from_secs(u64::MAX / 2),
        Duration::from_secs(i64::MAX as u64) + Duration::from_nanos(1),
        Duration::MAX,
    ] {
        let waker = selector.waker();
        let wake = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            waker.wake();
        });
        let what = selector.select(Some(t), |_, _| unreachable!()).unwrap();
        wake.join().unwrap();
        // A wait may end with nothing seen (a signal); then the wake is
        // still pending for the next one.
        let what = if what.woken {
            what
        } else {
            selector.select(Some(Duration::ZERO), |_, _| ()).unwrap()
        };
        assert!(what.woken, "{t:?}");
    }
}

/// `watch` takes any `RawFd` from safe code: a negative number is an error
/// (`EBADF`, what the OS answers for a closed fd), never a panic, and
/// stopping to watch it is the no-op it is for any fd not watched. -1 used
/// to panic inside `BorrowedFd::borrow_raw`, which rejects it.
#[test]
fn a_negative_fd_is_an_error_not_a_panic() {
    let selector = Selector::new().unwrap();
    for fd in [-1, -2, i32::MIN] {
        for interest in [Interest::READABLE, Interest::WRITABLE] {
            let watch = std::panic::AssertUnwindSafe(|| selector.watch(fd, interest));
            let got = std::panic::catch_unwind(watch);
            let err = got.expect("no panic").expect_err("no watch");
            assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{fd}: {err}");
        }
        assert!(selector.watch(fd, Interest::NONE).is_ok(), "{fd}");
    }
    assert!(selector.is_empty());
    // Still a working selector.
    selector.waker().wake();
    assert!(selector.select(None, |_, _| ()).unwrap().woken);
}

/// `select`'s callback is user code and may reach the selector again: a
/// nested `select` is refused with an error (the outer one is still
/// handing out its events), not a `RefCell` panic; `watch` works there.
#[test]
fn a_select_from_inside_select_is_an_error_not_a_panic() {
    let selector = Selector::new().unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    selector.watch(a.as_raw_fd(), Interest::READABLE).unwrap();
    (&b).write_all(b"x").unwrap();
    let mut inner = None;
    let outer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        selector.select(Some(Duration::ZERO), |fd, _| {
            inner = Some(selector.select(Some(Duration::ZERO), |_, _| ()));
            selector.watch(fd, Interest::NONE).unwrap();
        })
    }))
    .expect("no panic");
    assert_eq!(outer.unwrap().fds, 1);
    let err = inner.expect("the callback ran").expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy, "{err}");
    assert!(selector.is_empty());
    // The selector still works after it.
    selector.waker().wake();
    assert!(selector.select(None, |_, _| ()).unwrap().woken);
}
