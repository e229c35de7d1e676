//! Timers and the clock on the default loop: TM-01…TM-09, D7, D9.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::Loop;
use util::{Log, Watchdog, run_once, stopper};

#[test]
fn tm01_time_is_monotonic() {
    let lp = Loop::new().unwrap();
    let mut last = lp.time();
    for _ in 0..1000 {
        let now = lp.time();
        assert!(now >= last);
        last = now;
    }
}

#[test]
fn tm02_tm03_d7_call_later_fires_once_never_early_on_either_clock() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    for ms in [1u64, 3, 7, 12, 20] {
        let (l, lp2) = (log.clone(), lp.clone());
        let scheduled_loop = lp.time();
        let scheduled_real = Instant::now();
        let h = lp
            .call_later(Duration::from_millis(ms), move || {
                l.push((
                    ms,
                    lp2.time().duration_since(scheduled_loop),
                    scheduled_real.elapsed(),
                ));
            })
            .unwrap();
        let after = lp.time();
        // call_later(d) is call_at(time() + d), time() read inside the call.
        assert!(h.when() >= scheduled_loop + Duration::from_millis(ms));
        assert!(h.when() <= after + Duration::from_millis(ms));
    }
    lp.call_later(Duration::from_millis(30), stopper(&lp))
        .unwrap();
    lp.run_forever().unwrap();
    let fired = log.get();
    assert_eq!(
        fired.iter().map(|f| f.0).collect::<Vec<_>>(),
        [1, 3, 7, 12, 20]
    );
    for (ms, on_loop, real) in fired {
        assert!(
            on_loop >= Duration::from_millis(ms),
            "{ms} ms timer fired early on the loop clock: {on_loop:?}"
        );
        assert!(
            real >= Duration::from_millis(ms),
            "{ms} ms timer fired early on the real clock: {real:?}"
        );
    }
}

#[test]
fn tm04_an_idle_loop_fires_a_timer_close_to_its_deadline() {
    let lp = Loop::new().unwrap();
    let start = Instant::now();
    let fired = Rc::new(Cell::new(None));
    let f = fired.clone();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_millis(50), move || {
        f.set(Some(start.elapsed()));
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    let took = fired.get().unwrap();
    assert!(took >= Duration::from_millis(50));
    assert!(
        took < Duration::from_millis(50 + 250),
        "generous upper bound: {took:?}"
    );
}

#[test]
fn tm05_d9_deadline_order_then_scheduling_order_past_deadlines_included() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let now = lp.time();
    let at = |d: i64| {
        if d >= 0 {
            now + Duration::from_millis(d as u64)
        } else {
            now - Duration::from_millis((-d) as u64)
        }
    };
    for (name, d) in [
        ("c", 6),
        ("a", 2),
        ("past-1", -1),
        ("b", 4),
        ("past-2", -2),
        ("a2", 2),
    ] {
        let l = log.clone();
        lp.call_at(at(d), move || l.push(name)).unwrap();
    }
    lp.call_at(at(10), stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["past-2", "past-1", "a", "a2", "b", "c"]);
}

#[test]
fn tm06_a_cancelled_timer_never_fires_and_never_keeps_the_loop_waiting() {
    let lp = Loop::new().unwrap();
    let far = lp
        .call_later(Duration::from_secs(1000), || {
            panic!("cancelled timer fired")
        })
        .unwrap();
    let near = lp
        .call_later(Duration::from_millis(1), || panic!("cancelled timer fired"))
        .unwrap();
    far.cancel();
    near.cancel();
    assert!(far.cancelled() && near.cancelled());
    lp.call_later(Duration::from_millis(5), stopper(&lp))
        .unwrap();
    let start = Instant::now();
    let dog = Watchdog::arm(&lp, Duration::from_secs(5));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn tm06_cancelling_many_timers_keeps_memory_bounded() {
    let lp = Loop::new().unwrap();
    for _ in 0..10 {
        let hs: Vec<_> = (0..10_000)
            .map(|i| lp.call_later(Duration::from_secs(100 + i), || ()).unwrap())
            .collect();
        for h in hs {
            h.cancel();
        }
    }
    assert!(
        lp.stats().timers <= 2 * 1024 + 10_000,
        "heap holds {} entries",
        lp.stats().timers
    );
    run_once(&lp);
    assert!(lp.stats().timers <= 2 * 1024 + 10_000);
}

#[test]
fn tm07_timers_years_away_neither_break_nor_spin_the_loop() {
    let lp = Loop::new().unwrap();
    let fifty_days = lp
        .call_later(Duration::from_secs(50 * 86_400), || panic!("fired"))
        .unwrap();
    let ten_years = lp
        .call_later(Duration::from_secs(10 * 365 * 86_400), || panic!("fired"))
        .unwrap();
    let forever = lp.call_later(Duration::MAX, || panic!("fired")).unwrap();
    let hit = Rc::new(Cell::new(false));
    let (h, lp2) = (hit.clone(), lp.clone());
    lp.call_later(Duration::from_millis(10), move || {
        h.set(true);
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(hit.get());
    assert!(!fifty_days.cancelled() && !ten_years.cancelled() && !forever.cancelled());
}

/// The default backend, counting host iterations.
struct Counting(oneloop::native::NativeBackend, Rc<Cell<u32>>);

impl oneloop::backend::Backend for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn arm(&self, next: oneloop::backend::NextDispatch) {
        self.0.arm(next)
    }
    fn remote_waker(&self) -> std::sync::Arc<dyn oneloop::backend::RemoteWake> {
        self.0.remote_waker()
    }
    fn turn(&self) -> std::io::Result<()> {
        self.1.set(self.1.get() + 1);
        self.0.turn()
    }
}

#[test]
fn tm08_tiny_sleeps_do_not_busy_spin() {
    let turns = Rc::new(Cell::new(0));
    let lp = Loop::with_backend(|driver| {
        Ok(Counting(
            oneloop::native::NativeBackend::new(driver)?,
            turns.clone(),
        ))
    })
    .unwrap();
    lp.run_until_complete(async {
        for exp in [2, 4, 6, 8, 10] {
            oneloop::sleep(Duration::from_secs_f64(10f64.powi(-exp)))
                .await
                .unwrap();
        }
    })
    .unwrap();
    // CPython's test_timeout_rounding allows 20 iterations for these five.
    assert!(
        turns.get() <= 20,
        "{} host iterations for five tiny sleeps",
        turns.get()
    );
}

#[test]
fn tm09_now_is_refreshed_after_a_blocking_callback() {
    let lp = Loop::new().unwrap();
    let result = Rc::new(Cell::new(None));
    let (r, lp2) = (result.clone(), lp.clone());
    lp.call_soon(move || {
        std::thread::sleep(Duration::from_millis(10));
        let scheduled = Instant::now();
        let lp3 = lp2.clone();
        lp2.call_later(Duration::from_millis(10), move || {
            r.set(Some(scheduled.elapsed()));
            lp3.stop();
        })
        .unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(result.get().unwrap() >= Duration::from_millis(10));
}

/// A backend on a virtual clock: each turn jumps the clock to the armed
/// deadline and records it, so wake-ups can be counted exactly.
struct VirtualClock {
    driver: oneloop::backend::Driver,
    armed: Cell<oneloop::backend::NextDispatch>,
    now: Cell<Instant>,
    wakes: Rc<std::cell::RefCell<Vec<Instant>>>,
}

impl oneloop::backend::Backend for VirtualClock {
    fn name(&self) -> &str {
        "virtual-clock"
    }
    fn arm(&self, next: oneloop::backend::NextDispatch) {
        self.armed.set(next);
    }
    fn remote_waker(&self) -> std::sync::Arc<dyn oneloop::backend::RemoteWake> {
        struct Nothing;
        impl oneloop::backend::RemoteWake for Nothing {
            fn wake(&self) {}
        }
        std::sync::Arc::new(Nothing)
    }
    fn now(&self) -> Instant {
        self.now.get()
    }
    fn turn(&self) -> std::io::Result<()> {
        use oneloop::backend::NextDispatch;
        match self.armed.get() {
            NextDispatch::Now => {}
            NextDispatch::At(t) => {
                self.wakes.borrow_mut().push(t);
                self.now.set(self.now.get().max(t));
            }
            NextDispatch::OnEvent => return Err(std::io::Error::other("would wait forever")),
        }
        self.driver.dispatch();
        Ok(())
    }
}

/// Timers at these offsets (ms) from the start, scheduled from a callback,
/// with `slack`: the wake-ups the loop asked for, and the lateness of each
/// timer on the loop's clock (never negative: D7).
fn virtual_round(offsets_ms: &[f64], slack: Duration) -> (Vec<Duration>, Vec<Duration>) {
    let start = Instant::now();
    let wakes = Rc::new(std::cell::RefCell::new(Vec::new()));
    let lp = Loop::builder()
        .timer_slack(slack)
        .build_with(|driver| {
            Ok(VirtualClock {
                driver,
                armed: Cell::new(oneloop::backend::NextDispatch::OnEvent),
                now: Cell::new(start),
                wakes: wakes.clone(),
            })
        })
        .unwrap();
    let lateness = Rc::new(std::cell::RefCell::new(Vec::new()));
    let deadlines: Vec<Instant> = offsets_ms
        .iter()
        .map(|ms| start + Duration::from_secs_f64(ms / 1e3))
        .collect();
    let lp2 = lp.clone();
    let late = lateness.clone();
    lp.call_soon(move || {
        for &when in &deadlines {
            let (lp3, late) = (lp2.clone(), late.clone());
            lp2.call_at(when, move || {
                let now = lp3.time();
                assert!(now >= when, "a timer ran early (D7)");
                late.borrow_mut().push(now - when);
            })
            .unwrap();
        }
        let lp3 = lp2.clone();
        let last = *deadlines.iter().max().unwrap();
        lp2.call_at(last, move || lp3.stop()).unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    let wakes = wakes.borrow().iter().map(|w| *w - start).collect();
    let lateness = lateness.borrow().clone();
    (wakes, lateness)
}

#[test]
fn timers_within_the_slack_share_a_wake_up_and_none_runs_early() {
    let ms = |x: f64| Duration::from_secs_f64(x / 1e3);
    let offsets = [10.0, 10.3, 10.9, 12.5, 12.6, 20.0];
    // No slack: one wake-up per distinct deadline.
    let (wakes, late) = virtual_round(&offsets, Duration::ZERO);
    assert_eq!(wakes, offsets.map(ms));
    assert!(late.iter().all(|l| l.is_zero()));
    // 1 ms: 10.0-10.9 share the wake-up at 10.9, 12.5-12.6 at 12.6, and
    // the lone 20 ms timer is not delayed at all.
    let (wakes, late) = virtual_round(&offsets, Duration::from_millis(1));
    assert_eq!(wakes, [10.9, 12.6, 20.0].map(ms));
    assert_eq!(late.len(), offsets.len(), "every timer ran once");
    assert!(late.iter().all(|l| *l <= ms(1.0)), "{late:?}");
    // A slack shorter than the gaps changes nothing.
    let (wakes, _) = virtual_round(&offsets, Duration::from_micros(50));
    assert_eq!(wakes, offsets.map(ms));
}

#[test]
fn timer_slack_is_a_loop_setting_with_a_documented_default() {
    let lp = Loop::new().unwrap();
    assert_eq!(lp.timer_slack(), oneloop::DEFAULT_TIMER_SLACK);
    lp.set_timer_slack(Duration::ZERO);
    assert_eq!(lp.timer_slack(), Duration::ZERO);
    let lp = Loop::builder()
        .timer_slack(Duration::from_micros(250))
        .build()
        .unwrap();
    assert_eq!(lp.timer_slack(), Duration::from_micros(250));
}
