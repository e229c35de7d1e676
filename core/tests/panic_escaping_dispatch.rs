//! A panic that unwinds out of a dispatch itself, not out of a callback
//! (the batch loop catches those) but out of reporting one: a panicking
//! `tracing` subscriber under the default exception handler, a panic
//! payload whose drop panics. The loop must come out of it usable: not
//! left "dispatching" (which refused every later dispatch and `close()`),
//! the rest of the batch kept for the next run (ER-04).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::rc::Rc;

/// A panic payload whose drop panics: the loop drops the payload of a
/// reported panic itself (`ExceptionHandler::callback_panicked`), outside
/// every guard, so this second panic unwinds out of `Scheduler::run_once`.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the payload's drop panicked");
        }
    }
}

/// ER-04 / LC-03 / LC-09: a panic that unwinds out of a run leaves the loop
/// usable, and the rest of the batch queued. Here it comes from the drop of
/// a reported panic's payload. Before `Scheduler::run_once` guarded against
/// it, such a panic left the loop "dispatching" for good: `close()` failed
/// with "from inside its callback", every later run spun without running
/// anything, even stopped, and the rest of the batch was dropped unrun.
#[test]
fn a_panic_escaping_the_dispatch_leaves_the_loop_usable() {
    let lp = oneloop::Loop::new().unwrap();
    let after = Rc::new(Cell::new(false));
    let dropped_unrun = Rc::new(Cell::new(false));
    lp.call_soon(|| panic_any(PanicsOnDrop)).unwrap();
    {
        struct Guard(Rc<Cell<bool>>, Rc<Cell<bool>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if !self.0.get() {
                    self.1.set(true);
                }
            }
        }
        let g = Guard(after.clone(), dropped_unrun.clone());
        lp.call_soon(move || g.0.set(true)).unwrap();
    }
    lp.stop();
    let escaped = catch_unwind(AssertUnwindSafe(|| lp.run_forever()));
    assert!(
        escaped.is_err(),
        "the payload's drop panic unwinds out of the run"
    );
    assert!(!lp.is_running());
    let mut wrong = Vec::new();
    if dropped_unrun.get() {
        wrong.push("the rest of the batch was dropped unrun".to_owned());
    }
    // Not running and not dispatching: the loop must close.
    if let Err(e) = lp.close() {
        wrong.push(format!("close() failed: {e}"));
    }
    assert!(wrong.is_empty(), "after a panic escaped the run: {wrong:?}");
}

/// And the rest of the batch runs in the next run, before what is queued
/// after the panic.
#[test]
fn the_rest_of_the_batch_runs_in_the_next_run() {
    let lp = oneloop::Loop::new().unwrap();
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    lp.call_soon(|| panic_any(PanicsOnDrop)).unwrap();
    for i in 0..3 {
        let order = order.clone();
        lp.call_soon(move || order.borrow_mut().push(i)).unwrap();
    }
    lp.stop();
    assert!(catch_unwind(AssertUnwindSafe(|| lp.run_forever())).is_err());
    assert!(order.borrow().is_empty(), "nothing ran after the panic");
    {
        let order = order.clone();
        lp.call_soon(move || order.borrow_mut().push(3)).unwrap();
    }
    lp.stop();
    // A loop left dispatching spins in this run and never returns, even
    // stopped: end the test process with a message instead of hanging.
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            wait.recv_timeout(std::time::Duration::from_secs(30))
        {
            eprintln!("the second run did not return in 30 s: the loop was left dispatching");
            std::process::abort();
        }
    });
    lp.run_forever().expect("the loop runs again");
    drop(done);
    dog.join().unwrap();
    assert_eq!(*order.borrow(), [0, 1, 2, 3]);
    lp.close().unwrap();
}
