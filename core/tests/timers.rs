//! Timers on the default loop, beyond the conformance suite's TM checks:
//! D9 (equal deadlines), the timer heap's compaction, host iterations of
//! tiny sleeps, and the timer slack.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::Loop;
use util::{Log, Watchdog, run_once, stopper};

/// D9, oneloop's own decision: equal deadlines fire in scheduling order.
/// The suite may not assert it (GUARANTEES TM-05: the PEP leaves the order
/// undefined), so it is pinned here; TM-05's deadline order is the suite's.
#[test]
fn d9_equal_deadlines_fire_in_scheduling_order() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let now = lp.time();
    let at = |ms: u64| now + Duration::from_millis(ms);
    let past = now - Duration::from_millis(1);
    for (name, when) in [
        ("a", at(2)),
        ("past-1", past),
        ("b", at(2)),
        ("past-2", past),
        ("c", at(2)),
    ] {
        let l = log.clone();
        lp.call_at(when, move || l.push(name)).unwrap();
    }
    lp.call_at(at(5), stopper(&lp)).unwrap();
    let dog = Watchdog::arm(&lp, util::LIMIT);
    lp.run_forever().unwrap();
    dog.assert_not_fired("run_forever");
    assert_eq!(log.get(), ["past-1", "past-2", "a", "b", "c"]);
}

/// Internal: cancelled timers are compacted out of the heap
/// (`Loop::stats().timers`), so cancelling keeps memory bounded.
#[test]
fn cancelled_timers_are_compacted_so_memory_stays_bounded() {
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

/// Internal: counts `Backend::turn` calls, which only a wrapping backend can
/// see: CPython's ≤ 20 iterations for five tiny sleeps. The suite's TM-08
/// measures the CPU the same sleeps burn, on every loop mode.
#[test]
fn tiny_sleeps_take_at_most_20_host_iterations() {
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

/// Internal: the timer slack (oneloop's own setting), on a virtual clock
/// whose wake-ups can be counted exactly.
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

/// oneloop's own setting (no PEP counterpart).
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

/// TM-05 (SHOULD): past deadlines still fire in deadline order, however far
/// in the past (CPython's heap orders them). The queue keeps deadlines as
/// nanoseconds after an epoch; one that clamped everything before the
/// epoch to zero fired two deadlines days back in scheduling order.
#[test]
fn deadlines_days_in_the_past_still_fire_in_deadline_order() {
    let lp = Loop::new().unwrap();
    let log = Log::new();
    let now = lp.time();
    let days = |d: u64| now - Duration::from_secs(86_400 * d);
    for (name, when) in [
        ("-2d", days(2)),
        ("-10d", days(10)),
        ("-1h", now - Duration::from_secs(3600)),
        ("-3d", days(3)),
    ] {
        let l = log.clone();
        lp.call_at(when, move || l.push(name)).unwrap();
    }
    lp.call_soon(stopper(&lp)).unwrap();
    let dog = Watchdog::arm(&lp, util::LIMIT);
    lp.run_forever().unwrap();
    dog.assert_not_fired("run_forever");
    assert_eq!(log.get(), ["-10d", "-3d", "-2d", "-1h"]);
}
