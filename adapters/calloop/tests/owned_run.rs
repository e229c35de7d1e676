//! Owned mode: the loop owns an `EventLoop<'static, ()>`, `run_*` dispatch
//! it and `stop` (also from another thread) ends them; native calloop
//! sources inserted through the backend's handle run beside oneloop work.

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use calloop::channel::{Event, channel};
use calloop::timer::{TimeoutAction, Timer};
use oneloop::{ErrorKind, Loop};
use oneloop_calloop::CalloopBackend;
use support::Watchdog;

#[test]
fn run_stop_and_run_again_loses_nothing() {
    let lp = oneloop_calloop::new_loop().unwrap();
    assert!(!lp.is_attached());
    assert!(!lp.is_running());
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        lp.call_soon(move || log.borrow_mut().push(i)).unwrap();
    }
    let (lp2, l2) = (lp.clone(), log.clone());
    lp.call_soon(move || {
        assert!(lp2.is_running());
        lp2.stop();
        // Queued by the batch that stops: runs on the next run (LC-03, LC-04).
        let l3 = l2.clone();
        lp2.call_soon(move || l3.borrow_mut().push(9)).unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*log.borrow(), [0, 1, 2]);
    assert!(!lp.is_running());
    lp.stop();
    lp.run_forever().unwrap(); // pre-stopped: one iteration (LC-05)
    assert_eq!(*log.borrow(), [0, 1, 2, 9]);
    lp.close().unwrap();
}

#[test]
fn timers_fire_in_order_and_never_early() {
    let lp = oneloop_calloop::new_loop().unwrap();
    let fired = Rc::new(RefCell::new(Vec::new()));
    let start = lp.time();
    // Scheduled out of order, so the one calloop timer is re-armed earlier.
    for ms in [30u64, 10, 20, 5] {
        let (f, lp2) = (fired.clone(), lp.clone());
        let when = start + Duration::from_millis(ms);
        lp.call_at(when, move || {
            assert!(lp2.time() >= when, "timer {ms} ms fired early");
            f.borrow_mut().push(ms);
        })
        .unwrap();
    }
    let exceptions = support::record_exceptions(&lp);
    lp.run_until_complete(oneloop::sleep(Duration::from_millis(35)))
        .unwrap()
        .unwrap();
    assert_eq!(*fired.borrow(), [5, 10, 20, 30]);
    exceptions.assert_clean();
    lp.close().unwrap();
}

#[test]
fn stop_from_another_thread_wakes_the_poll() {
    let lp = oneloop_calloop::new_loop().unwrap();
    let remote = lp.remote();
    let dog_remote = lp.remote();
    let dog = Watchdog::with_action(support::LIMIT, move || {
        let _ = dog_remote.stop();
    });
    let tid = support::current_tid();
    let t = std::thread::spawn(move || {
        // Once the loop is idle in its poll: the post has to wake it.
        support::wait_until_asleep(tid, std::time::Instant::now() + support::LIMIT);
        remote.call_soon_threadsafe(|| ()).unwrap();
        remote.stop().unwrap();
    });
    lp.run_forever().unwrap();
    assert!(!dog.fired(), "the remote stop did not wake the loop");
    t.join().unwrap();
    lp.close().unwrap();
    assert_eq!(
        lp.remote().call_soon_threadsafe(|| ()).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

/// Native calloop sources on the owned loop run during `run_*`, beside
/// oneloop work, and can hand results to it.
#[test]
fn native_sources_on_the_owned_loop() {
    let backend = CalloopBackend::new().unwrap();
    let handle = backend.handle().unwrap();
    let lp = Loop::with_backend(backend).unwrap();
    let native_timer = Rc::new(Cell::new(false));
    let t = native_timer.clone();
    handle
        .insert_source(
            Timer::from_duration(Duration::from_millis(2)),
            move |_, _, _| {
                t.set(true);
                TimeoutAction::Drop
            },
        )
        .unwrap();
    let (tx, rx) = channel::<&'static str>();
    let fut = lp.create_future::<&'static str>();
    let f2 = fut.clone();
    handle
        .insert_source(rx, move |ev, _, _| {
            if let Event::Msg(m) = ev {
                let _ = f2.set_result(m);
            }
        })
        .unwrap();
    std::thread::spawn(move || tx.send("from a calloop channel").unwrap());
    let start = Instant::now();
    let got = lp.run_until_complete(fut).unwrap().unwrap();
    assert_eq!(got, "from a calloop channel");
    lp.run_until_complete(oneloop::sleep(Duration::from_millis(3)))
        .unwrap()
        .unwrap();
    assert!(native_timer.get());
    assert!(start.elapsed() < Duration::from_secs(5));
    lp.close().unwrap();
}

#[test]
fn attached_loops_refuse_to_run_and_close_from_outside() {
    let event_loop: calloop::EventLoop<'static, ()> = calloop::EventLoop::try_new().unwrap();
    let lp = oneloop_calloop::attach(event_loop.handle()).unwrap();
    assert!(lp.is_running() && lp.is_attached());
    assert_eq!(
        lp.run_until_complete(async {}).unwrap_err().kind(),
        ErrorKind::AlreadyRunning
    );
    lp.close().unwrap();
    assert!(lp.is_closed() && !lp.is_running());
    // A new loop can attach to the same host afterwards.
    let again = oneloop_calloop::attach(event_loop.handle()).unwrap();
    again.close().unwrap();
}

/// The owned turn runs the oneloop iteration itself after the host's
/// dispatch, and polls with the armed timeout instead of host sources: a
/// oneloop callback storm (armed `Now` on every turn) must still leave the
/// host's timer, its idles and a ping storm their turn, and the host's
/// storm must leave oneloop's timer its turn (EM-07 on an owned loop).
#[test]
fn owned_turns_starve_neither_side() {
    let backend = CalloopBackend::new().unwrap();
    let handle = backend.handle().unwrap();
    let lp = Loop::with_backend(backend).unwrap();
    let dog = Watchdog::stop_loop(&lp, support::LIMIT);

    let spins = Rc::new(Cell::new(0u64));
    let idles = Rc::new(Cell::new(0u64));
    fn spin(
        lp: Loop,
        h: calloop::LoopHandle<'static, ()>,
        spins: Rc<Cell<u64>>,
        idles: Rc<Cell<u64>>,
    ) {
        spins.set(spins.get() + 1);
        // A native idle queued from oneloop code runs in the same turn.
        let i = idles.clone();
        h.insert_idle(move |_| i.set(i.get() + 1));
        let lp2 = lp.clone();
        let _ = lp.call_soon(move || spin(lp2, h, spins, idles));
    }
    let (lp2, h2, s2, i2) = (lp.clone(), handle.clone(), spins.clone(), idles.clone());
    lp.call_soon(move || spin(lp2, h2, s2, i2)).unwrap();

    let (ping, ping_source) = calloop::ping::make_ping().unwrap();
    let pings = Rc::new(Cell::new(0u64));
    let (p2, n2) = (ping.clone(), pings.clone());
    handle
        .insert_source(ping_source, move |_, _, _| {
            n2.set(n2.get() + 1);
            p2.ping();
        })
        .unwrap();
    ping.ping();

    let host_timer = Rc::new(Cell::new(false));
    let t = host_timer.clone();
    handle
        .insert_source(
            Timer::from_duration(Duration::from_millis(10)),
            move |_, _, _| {
                t.set(true);
                TimeoutAction::Drop
            },
        )
        .unwrap();
    let oneloop_timer = Rc::new(Cell::new(false));
    let (t, lp2, ht) = (oneloop_timer.clone(), lp.clone(), host_timer.clone());
    lp.call_later(Duration::from_millis(10), move || {
        t.set(true);
        if ht.get() {
            lp2.stop();
        }
    })
    .unwrap();
    let (lp2, ht, ot) = (lp.clone(), host_timer.clone(), oneloop_timer.clone());
    // Whichever timer fires second stops the run.
    handle
        .insert_source(
            Timer::from_duration(Duration::from_millis(12)),
            move |_, _, _| {
                if ht.get() && ot.get() {
                    lp2.stop();
                }
                TimeoutAction::ToDuration(Duration::from_millis(2))
            },
        )
        .unwrap();
    lp.run_forever().unwrap();
    assert!(!dog.fired(), "a timer starved");
    assert!(oneloop_timer.get() && host_timer.get());
    assert!(spins.get() > 1 && pings.get() > 1);
    // Every idle but the last spin's ran (that one waits for the next turn).
    assert!(
        idles.get() + 1 >= spins.get(),
        "{} idles for {} spins",
        idles.get(),
        spins.get()
    );
    lp.close().unwrap();
}
