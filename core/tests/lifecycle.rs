//! Loop lifecycle on the default loop, beyond the conformance suite's LC
//! checks: the loop's internal tables, ownership, and `is_stopping`.

mod util;

use oneloop::Loop;
use util::Log;

/// Internal: the fd table (`Loop::stats`) empties on removal and on close,
/// and a refused fd never enters it.
#[test]
fn the_fd_table_empties_on_removal_and_close() {
    let lp = Loop::new().unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    lp.add_reader(&a, || ()).unwrap();
    lp.add_writer(&a, || ()).unwrap();
    assert_eq!(lp.stats().fds, 1, "one entry per fd");
    assert!(lp.remove_reader(&a) && lp.remove_writer(&a));
    assert_eq!(lp.stats().fds, 0, "removed");
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    assert!(lp.add_reader(&file, || ()).is_err());
    assert_eq!(lp.stats().fds, 0, "a refused regular file");
    lp.add_reader(&a, || ()).unwrap();
    lp.close().unwrap();
    assert_eq!(lp.stats().fds, 0, "closed");
}

/// Ownership (docs/architecture.md), not a PEP guarantee: dropping the last
/// handle closes the loop and drops its queue.
#[test]
fn dropping_the_last_handle_closes_the_loop_and_its_queue() {
    let witness = std::rc::Rc::new(());
    let w = witness.clone();
    let lp = Loop::new().unwrap();
    lp.call_soon(move || drop(w)).unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    lp.add_reader(&a, || ()).unwrap();
    drop(lp);
    assert_eq!(
        std::rc::Rc::strong_count(&witness),
        1,
        "queued callbacks were dropped with the loop"
    );
}

/// `is_stopping` is oneloop's own API (no PEP counterpart).
#[test]
fn is_stopping_is_true_from_stop_until_the_batch_ends() {
    let lp = Loop::new().unwrap();
    let seen = Log::new();
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        s.push(lp2.is_stopping());
        lp2.stop();
        s.push(lp2.is_stopping());
    })
    .unwrap();
    lp.run_forever().unwrap();
    seen.push(lp.is_stopping());
    assert_eq!(seen.get(), [false, true, false]);
}
