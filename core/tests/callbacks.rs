//! Callbacks on the default loop: CB-01…CB-06.

mod util;

use std::time::Duration;

use oneloop::Loop;
use util::{Log, run_once};

#[test]
fn cb01_call_soon_is_fifo_and_runs_each_once() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    for i in 0..100 {
        let l = log.clone();
        lp.call_soon(move || l.push(i)).unwrap();
    }
    run_once(&lp);
    run_once(&lp);
    assert_eq!(log.get(), (0..100).collect::<Vec<_>>());
}

#[test]
fn cb02_call_soon_never_runs_inside_the_call() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let l = log.clone();
    lp.call_soon(move || l.push("callback")).unwrap();
    log.push("after call_soon");
    run_once(&lp);
    assert_eq!(log.get(), ["after call_soon", "callback"]);
}

#[test]
fn cb03_callbacks_never_overlap_even_when_a_callback_iterates_the_loop() {
    let lp = Loop::new().unwrap();
    let depth = std::rc::Rc::new(std::cell::Cell::new(0));
    let max = std::rc::Rc::new(std::cell::Cell::new(0));
    for _ in 0..10 {
        let (d, m, lp2) = (depth.clone(), max.clone(), lp.clone());
        lp.call_soon(move || {
            d.set(d.get() + 1);
            m.set(m.get().max(d.get()));
            // Trying to run the loop from inside a callback must not run
            // other callbacks here.
            assert!(lp2.run_until_complete(async {}).is_err());
            d.set(d.get() - 1);
        })
        .unwrap();
    }
    run_once(&lp);
    assert_eq!(max.get(), 1);
}

#[test]
fn cb04_a_self_requeueing_callback_cannot_starve_timers() {
    let lp = Loop::new().unwrap();
    fn spin(lp: &Loop, n: std::rc::Rc<std::cell::Cell<u64>>) {
        let lp2 = lp.clone();
        lp.call_soon(move || {
            n.set(n.get() + 1);
            spin(&lp2, n);
        })
        .unwrap();
    }
    let n = std::rc::Rc::new(std::cell::Cell::new(0));
    spin(&lp, n.clone());
    lp.call_later(Duration::from_millis(10), util::stopper(&lp))
        .unwrap();
    let dog = util::Watchdog::arm(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired(), "the timer was starved");
    assert!(n.get() > 0);
}

#[test]
fn cb04_work_queued_during_a_batch_runs_after_the_next_poll() {
    let lp = Loop::new().unwrap();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &a, b"x").unwrap();
    let log = Log::new();
    let l = log.clone();
    let lp2 = lp.clone();
    lp.call_soon(move || {
        let (l2, lp3) = (l.clone(), lp2.clone());
        lp2.call_soon(move || {
            l2.push("queued by a callback");
            lp3.stop();
        })
        .unwrap();
    })
    .unwrap();
    let l = log.clone();
    let b = std::rc::Rc::new(b);
    let (lp3, b2) = (lp.clone(), b.clone());
    lp.add_reader(&*b, move || {
        l.push("fd ready");
        lp3.remove_reader(&*b2);
    })
    .unwrap();
    lp.run_forever().unwrap();
    // The fd was ready at the first poll, so its reader joined the first
    // batch; the work that batch queued ran only on the next iteration.
    assert_eq!(log.get(), ["fd ready", "queued by a callback"]);
}

#[test]
fn cb05_cancel_prevents_the_call_even_from_an_earlier_callback_of_the_same_batch() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let l = log.clone();
    let second = std::rc::Rc::new(std::cell::RefCell::new(None::<oneloop::Handle>));
    let s = second.clone();
    lp.call_soon(move || s.borrow().as_ref().unwrap().cancel())
        .unwrap();
    let h = lp.call_soon(move || l.push("cancelled one ran")).unwrap();
    *second.borrow_mut() = Some(h.clone());
    run_once(&lp);
    assert!(log.get().is_empty());
    assert!(h.cancelled());
    h.cancel(); // twice: nothing
    let l = log.clone();
    let ran = lp.call_soon(move || l.push("ran")).unwrap();
    run_once(&lp);
    ran.cancel(); // after the run: nothing
    assert!(!ran.cancelled());
    assert_eq!(log.get(), ["ran"]);
}

#[test]
fn cb06_loop_handles_are_not_send_and_the_remote_is() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<oneloop::RemoteLoop>();
    // `Loop`, `Handle`, `Task`, `Future` are !Send: enforced statically
    // (this would not compile): assert_send_sync::<oneloop::Loop>();
    static_assertions_not_send();
}

/// A compile-time proof that `Loop` is `!Send`: the auto-trait probe picks
/// the inherent constant only for types that are not `Send`.
fn static_assertions_not_send() {
    struct Probe<T>(std::marker::PhantomData<T>);
    trait NotSend {
        const SEND: bool = false;
    }
    impl<T> NotSend for Probe<T> {}
    impl<T: Send> Probe<T> {
        #[allow(dead_code)]
        const SEND: bool = true;
    }
    const { assert!(!Probe::<oneloop::Loop>::SEND) };
    const { assert!(!Probe::<oneloop::Handle>::SEND) };
    const { assert!(!Probe::<oneloop::Task<()>>::SEND) };
    const { assert!(!Probe::<oneloop::LoopFuture<()>>::SEND) };
    const { assert!(Probe::<oneloop::RemoteLoop>::SEND) };
}
