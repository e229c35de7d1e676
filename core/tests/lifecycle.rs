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

/// A host that only dispatches when told to, attached: the test holds its
/// `Driver`, which holds the loop only weakly.
struct HostDriven;

impl oneloop::backend::Backend for HostDriven {
    fn name(&self) -> &str {
        "host-driven"
    }
    fn arm(&self, _next: oneloop::backend::NextDispatch) {}
    fn remote_waker(&self) -> std::sync::Arc<dyn oneloop::backend::RemoteWake> {
        struct Nothing;
        impl oneloop::backend::RemoteWake for Nothing {
            fn wake(&self) {}
        }
        std::sync::Arc::new(Nothing)
    }
    fn turn(&self) -> std::io::Result<()> {
        Err(std::io::Error::other("attached: the host turns"))
    }
    fn is_attached(&self) -> bool {
        true
    }
}

/// Ownership: a callback of an attached loop that drops the last handle
/// does not pull the loop out from under its own dispatch (the host's
/// `Driver` holds it for the call): the rest of the batch runs, then the
/// loop closes and what it queued for later goes with it.
#[test]
fn a_callback_that_drops_the_last_handle_of_an_attached_loop_ends_it_after_the_dispatch() {
    let slot = std::rc::Rc::new(std::cell::RefCell::new(None));
    let s = slot.clone();
    let lp = Loop::builder()
        .build_with(move |driver: oneloop::backend::Driver| {
            *s.borrow_mut() = Some(driver);
            Ok(HostDriven)
        })
        .unwrap();
    let driver = slot.borrow_mut().take().unwrap();
    assert!(driver.is_live(), "attached: live from creation");
    let witness = std::rc::Rc::new(());
    let ran = Log::new();
    let (r, w, last) = (ran.clone(), witness.clone(), lp.clone());
    lp.call_soon(move || {
        // For the next iteration, which never comes.
        last.call_soon(move || drop(w)).unwrap();
        drop(last);
        r.push("dropped the last handle");
    })
    .unwrap();
    let r = ran.clone();
    lp.call_soon(move || r.push("the batch went on")).unwrap();
    drop(lp);
    assert!(driver.is_live(), "a queued callback holds the loop");
    driver.dispatch();
    assert_eq!(ran.get(), ["dropped the last handle", "the batch went on"]);
    assert!(!driver.is_live(), "the loop ended with the dispatch");
    assert_eq!(
        std::rc::Rc::strong_count(&witness),
        1,
        "what it queued for the next iteration was dropped with it"
    );
    // A host dispatching a loop that is gone does nothing.
    driver.dispatch();
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
