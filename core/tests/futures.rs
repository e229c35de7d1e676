//! The PEP future on the default loop: FU-01…FU-07.

mod util;

use std::cell::Cell;
use std::rc::Rc;

use oneloop::{Error, ErrorKind, Loop};
use util::{Log, record_exceptions, run_once};

#[test]
fn fu01_a_new_future_is_pending_and_result_does_not_block() {
    let lp = Loop::new().unwrap();
    let f = lp.create_future::<u8>();
    assert!(!f.done() && !f.cancelled());
    assert_eq!(f.result().unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(f.exception().unwrap_err().kind(), ErrorKind::InvalidState);
}

#[test]
fn fu02_setting_a_done_future_fails_and_cancel_returns_false() {
    let lp = Loop::new().unwrap();
    let f = lp.create_future::<u8>();
    f.set_result(1).unwrap();
    assert_eq!(f.set_result(2).unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(
        f.set_exception(Error::from_kind(ErrorKind::Io))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidState
    );
    assert!(!f.cancel());
    assert_eq!(f.result().unwrap(), 1);
    let c = lp.create_future::<u8>();
    assert!(c.cancel());
    assert_eq!(c.set_result(1).unwrap_err().kind(), ErrorKind::InvalidState);
}

#[test]
fn fu03_cancel_leaves_the_future_done_and_cancelled() {
    let lp = Loop::new().unwrap();
    let f = lp.create_future::<u8>();
    assert!(f.cancel());
    assert!(f.done() && f.cancelled());
    assert_eq!(f.result().unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(f.exception().unwrap_err().kind(), ErrorKind::Cancelled);
}

#[test]
fn fu04_done_callbacks_are_scheduled_in_order_never_run_inside_set_result() {
    let lp = Loop::new().unwrap();
    let f = lp.create_future::<u8>();
    let log = Log::new();
    for i in 0..3 {
        let l = log.clone();
        f.add_done_callback(move |fut| l.push((i, fut.result().unwrap())));
    }
    f.set_result(7).unwrap();
    assert!(
        log.get().is_empty(),
        "a done-callback ran inside set_result"
    );
    run_once(&lp);
    assert_eq!(log.get(), [(0, 7), (1, 7), (2, 7)]);
    let l = log.clone();
    f.add_done_callback(move |_| l.push((9, 9)));
    assert_eq!(
        log.len(),
        3,
        "a callback added to a done future is queued, not called"
    );
    run_once(&lp);
    assert_eq!(log.len(), 4);
}

#[test]
fn fu05_remove_done_callback_counts_and_mutation_during_scheduling_is_safe() {
    let lp = Loop::new().unwrap();
    let f = lp.create_future::<u8>();
    let log = Log::new();
    let l = log.clone();
    let id = f.add_done_callback(move |_| l.push("removed"));
    assert_eq!(f.remove_done_callback(id), 1);
    assert_eq!(f.remove_done_callback(id), 0);
    let (l, f2) = (log.clone(), f.clone());
    let later = Rc::new(Cell::new(None));
    let later2 = later.clone();
    f.add_done_callback(move |_| {
        l.push("first");
        if let Some(id) = later2.get() {
            f2.remove_done_callback(id);
        }
    });
    let l = log.clone();
    later.set(Some(f.add_done_callback(move |_| l.push("second"))));
    f.set_result(1).unwrap();
    run_once(&lp);
    // Callbacks were already scheduled when the first one tried to remove
    // the second: nothing crashes, and the second still runs once.
    assert_eq!(log.get(), ["first", "second"]);
}

#[test]
fn fu06_an_unretrieved_error_is_reported_when_the_future_is_dropped() {
    let lp = Loop::new().unwrap();
    let reports = record_exceptions(&lp);
    let f = lp.create_future::<u8>();
    f.set_exception(Error::new(ErrorKind::Io, "never looked at"))
        .unwrap();
    drop(f);
    assert_eq!(reports.len(), 1);
    assert!(reports.get()[0].message().contains("never retrieved"));
    let seen = lp.create_future::<u8>();
    seen.set_exception(Error::from_kind(ErrorKind::Io)).unwrap();
    let _ = seen.exception();
    drop(seen);
    let ok = lp.create_future::<u8>();
    ok.set_result(1).unwrap();
    drop(ok);
    drop(lp.create_future::<u8>());
    assert_eq!(
        reports.len(),
        1,
        "retrieved, successful and pending futures are not reported"
    );
}

#[test]
fn fu07_executor_results_arrive_on_the_loop_thread_and_cancel_skips_unstarted_work() {
    let lp = Loop::new().unwrap();
    let thread = std::thread::current().id();
    let f = lp
        .run_in_executor(move || std::thread::current().id() != thread)
        .unwrap();
    assert!(
        lp.run_until_complete(f).unwrap().unwrap(),
        "the work ran off the loop thread"
    );
    // A single-thread executor kept busy, so the second job cannot have
    // started when it is cancelled.
    struct OneThread(std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>);
    impl oneloop::Executor for OneThread {
        fn execute(&self, job: Box<dyn FnOnce() + Send>) {
            self.0.send(job).unwrap();
        }
    }
    let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
    let worker = std::thread::spawn(move || {
        for job in rx {
            job();
        }
    });
    lp.set_default_executor(OneThread(tx));
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let blocker = lp.run_in_executor(move || gate_rx.recv().unwrap()).unwrap();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    let second = lp
        .run_in_executor(move || r.store(true, std::sync::atomic::Ordering::SeqCst))
        .unwrap();
    assert!(second.cancel());
    gate_tx.send(()).unwrap();
    lp.run_until_complete(blocker).unwrap().unwrap();
    lp.close().unwrap();
    worker.join().unwrap();
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "a cancelled job that had not started ran"
    );
}
