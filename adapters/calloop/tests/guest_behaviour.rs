//! The calloop guest: a calloop `EventLoop` run by a loop that is not
//! calloop's own (the default loop here; every mode is a column of the
//! interop matrix), with its sources, its timers and the edges.

mod support;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use calloop::generic::Generic;
use calloop::ping::make_ping;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, Interest, Mode, PostAction};
use oneloop::{ErrorKind, Loop};
use support::{LIMIT, run_within, socket_pair};

#[derive(Default)]
struct State {
    log: Vec<&'static str>,
    ticks: Vec<Instant>,
    read: Vec<u8>,
}

fn new_guest(lp: &Loop) -> oneloop_calloop::CalloopGuest<State> {
    let event_loop: EventLoop<'static, State> = EventLoop::try_new().unwrap();
    oneloop_calloop::guest(lp, event_loop, State::default()).unwrap()
}

/// Run `lp` until the guest's log holds `n` entries; the suite's watchdog
/// fails the test if that takes longer than [`LIMIT`].
fn run_until_logged(lp: &Loop, guest: &oneloop_calloop::CalloopGuest<State>, n: usize) {
    run_within(lp, LIMIT, async {
        while guest.with_data(|s| s.log.len()).unwrap() < n {
            oneloop::sleep(Duration::from_millis(1)).await.unwrap();
        }
    });
}

#[test]
fn generic_fd_ping_and_timer_sources_run_on_a_default_loop() {
    let lp = Loop::new().unwrap();
    let exceptions = support::record_exceptions(&lp);
    let guest = new_guest(&lp);
    let handle = guest.handle().unwrap();
    let loop_thread = std::thread::current().id();

    let (mut ours, theirs) = socket_pair();
    handle
        .insert_source(
            Generic::new(theirs, Interest::READ, Mode::Level),
            move |_, sock, s: &mut State| {
                assert_eq!(std::thread::current().id(), loop_thread);
                let mut buf = [0u8; 64];
                let n = (&**sock).read(&mut buf).unwrap_or(0);
                s.read.extend_from_slice(&buf[..n]);
                s.log.push("fd");
                Ok(PostAction::Continue)
            },
        )
        .unwrap();
    let (ping, ping_source) = make_ping().unwrap();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| s.log.push("ping"))
        .unwrap();
    let start = Instant::now();
    let timer = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_millis(20)));
    handle
        .insert_source(timer, |deadline, _, s: &mut State| {
            s.ticks.push(Instant::now());
            assert!(Instant::now() >= deadline, "calloop fired its timer early");
            s.log.push("timer");
            TimeoutAction::Drop
        })
        .unwrap();

    // The fd from another thread, the ping from a oneloop callback.
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2));
        ours.write_all(b"hello").unwrap();
        ours
    });
    lp.call_soon(move || ping.ping()).unwrap();
    let g = &guest;
    run_until_logged(&lp, g, 3);
    let _ours = writer.join().unwrap();
    guest.with_data(|s| {
        let mut log = s.log.clone();
        log.sort_unstable();
        assert_eq!(log, ["fd", "ping", "timer"]);
        assert_eq!(s.read, b"hello");
        assert!(s.ticks[0] - start >= Duration::from_millis(20));
    });
    exceptions.assert_clean();
    lp.close().unwrap();
}

#[test]
fn a_repeating_timer_is_rearmed_on_the_loop_never_early() {
    let lp = Loop::new().unwrap();
    let guest = new_guest(&lp);
    let handle = guest.handle().unwrap();
    let start = Instant::now();
    let timer = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_millis(5)));
    handle
        .insert_source(timer, |deadline, _, s: &mut State| {
            let now = Instant::now();
            assert!(now >= deadline, "early by {:?}", deadline - now);
            s.ticks.push(now);
            if s.ticks.len() < 5 {
                TimeoutAction::ToDuration(Duration::from_millis(5))
            } else {
                TimeoutAction::Drop
            }
        })
        .unwrap();
    let g = &guest;
    run_within(&lp, LIMIT, async {
        while g.with_data(|s| s.ticks.len()).unwrap() < 5 {
            oneloop::sleep(Duration::from_millis(1)).await.unwrap();
        }
    });
    let ticks = guest.with_data(|s| s.ticks.clone()).unwrap();
    assert!(ticks[4] - start >= Duration::from_millis(25), "{ticks:?}");
    // Dropped: no loop timer is left for it.
    run_within(&lp, LIMIT, oneloop::sleep(Duration::from_millis(1))).unwrap();
    assert_eq!(lp.stats().timers, 0, "{:?}", lp.stats());
    lp.close().unwrap();
}

#[test]
fn an_idle_guest_leaves_the_loop_asleep() {
    // With only the poller fd watched and no timer, the loop has nothing
    // due: it waits on events alone, and its thread burns no CPU.
    let lp = Loop::new().unwrap();
    let guest = new_guest(&lp);
    let handle = guest.handle().unwrap();
    let (ping, ping_source) = make_ping().unwrap();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| s.log.push("ping"))
        .unwrap();
    run_within(&lp, LIMIT, oneloop::sleep(Duration::from_millis(1))).unwrap();
    let stats = lp.stats();
    assert_eq!(
        (stats.ready, stats.timers, stats.fds),
        (0, 0, 1),
        "{stats:?}"
    );
    let cpu0 = oneloop_conformance::thread_cpu_time();
    let remote = lp.remote();
    let pinger = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        ping.ping();
        remote.call_soon_threadsafe(|| ()).unwrap();
    });
    let g = &guest;
    run_within(&lp, LIMIT, async {
        while g.with_data(|s| s.log.len()).unwrap() < 1 {
            oneloop::sleep(Duration::from_millis(50)).await.unwrap();
        }
    });
    pinger.join().unwrap();
    if let (Some(a), Some(b)) = (cpu0, oneloop_conformance::thread_cpu_time()) {
        // 200 ms idle: a pump at 1 kHz would burn tens of ms.
        assert!(
            b - a < Duration::from_millis(20),
            "the idle guest used {:?} of CPU",
            b - a
        );
    }
    lp.close().unwrap();
}

#[test]
fn a_plain_timer_fires_late_at_the_next_dispatch_never_early() {
    // The documented limit: calloop does not publish the deadline of a
    // Timer the guest does not know about, so it fires when something else
    // makes the guest dispatch.
    let lp = Loop::new().unwrap();
    let guest = new_guest(&lp);
    let handle = guest.handle().unwrap();
    let start = Instant::now();
    handle
        .insert_source(
            Timer::from_duration(Duration::from_millis(1)),
            |_, _, s: &mut State| {
                s.ticks.push(Instant::now());
                TimeoutAction::Drop
            },
        )
        .unwrap();
    let (ping, ping_source) = make_ping().unwrap();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| s.log.push("ping"))
        .unwrap();
    lp.call_later(Duration::from_millis(30), move || ping.ping())
        .unwrap();
    let g = &guest;
    run_within(&lp, LIMIT, async {
        while g.with_data(|s| s.ticks.len()).unwrap() < 1 {
            oneloop::sleep(Duration::from_millis(2)).await.unwrap();
        }
    });
    let fired = guest.with_data(|s| s.ticks[0]).unwrap() - start;
    assert!(
        fired >= Duration::from_millis(30),
        "a plain Timer fired at {fired:?}, before anything made the guest dispatch"
    );
    lp.close().unwrap();
}

struct Noisy(&'static str, Rc<RefCell<Vec<&'static str>>>);

impl Drop for Noisy {
    fn drop(&mut self) {
        self.1.borrow_mut().push(self.0);
    }
}

#[test]
fn closing_the_loop_drops_the_event_loop_its_sources_in_order_then_the_data() {
    let dropped = Rc::new(RefCell::new(Vec::new()));
    let lp = Loop::new().unwrap();
    let event_loop: EventLoop<'static, Noisy> = EventLoop::try_new().unwrap();
    let handle = event_loop.handle();
    let guest = oneloop_calloop::guest(&lp, event_loop, Noisy("data", dropped.clone())).unwrap();
    let (_ours, theirs) = socket_pair();
    let first = Noisy("first source", dropped.clone());
    handle
        .insert_source(
            Generic::new(theirs, Interest::READ, Mode::Level),
            move |_, _, _| {
                let _ = &first;
                Ok(PostAction::Continue)
            },
        )
        .unwrap();
    let second = Noisy("second source", dropped.clone());
    let timer = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_secs(3600)));
    handle
        .insert_source(timer, move |_, _, _| {
            let _ = &second;
            TimeoutAction::Drop
        })
        .unwrap();
    drop(handle);
    run_within(&lp, LIMIT, oneloop::sleep(Duration::from_millis(1))).unwrap();
    let stats = lp.stats();
    assert_eq!((stats.fds, stats.timers), (1, 1), "{stats:?}");
    lp.close().unwrap();
    assert!(!guest.is_attached());
    assert!(guest.handle().is_none());
    assert_eq!(
        *dropped.borrow(),
        ["first source", "second source", "data"],
        "the guest's sources and data were not dropped, in order, at close"
    );
}

#[test]
fn a_panic_in_a_calloop_callback_is_reported_and_the_guest_goes_on() {
    let lp = Loop::new().unwrap();
    let exceptions = support::record_exceptions(&lp);
    let guest = new_guest(&lp);
    let handle = guest.handle().unwrap();
    let (ping, ping_source) = make_ping().unwrap();
    let ping2 = ping.clone();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| {
            s.log.push("ping");
            if s.log.len() == 1 {
                panic!("a calloop callback panicked");
            }
        })
        .unwrap();
    ping.ping();
    let g = &guest;
    run_until_logged(&lp, g, 1);
    let reports = exceptions.take();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].contains("a calloop callback panicked"),
        "{reports:?}"
    );
    // The guest is alive: the next ping is dispatched.
    ping2.ping();
    run_until_logged(&lp, g, 2);
    exceptions.assert_clean();
    lp.close().unwrap();
}

/// The loop sleeps while idle: fewer than 20 batches in 50 ms.
fn assert_sleeps_while_idle(lp: &Loop) {
    let batches = Rc::new(Batches(std::cell::Cell::new(0)));
    lp.add_run_context(batches.clone()).unwrap();
    run_within(lp, LIMIT, oneloop::sleep(Duration::from_millis(50))).unwrap();
    assert!(
        batches.0.get() < 20,
        "the loop spun while idle: {} batches in 50 ms",
        batches.0.get()
    );
}

/// Counts the batches a loop runs.
struct Batches(std::cell::Cell<u32>);

impl oneloop::RunContext for Batches {
    fn enter(&self, run: &mut dyn FnMut()) {
        self.0.set(self.0.get() + 1);
        run();
    }
}

#[test]
fn a_panic_in_a_guest_timer_callback_loses_no_other_timer_and_leaves_the_loop_idle() {
    // The panic unwinds out of the dispatch the loop timer ran: the other
    // timers must still be armed, and the timer that panicked (which
    // calloop took off its wheel and will not fire again) must not leave
    // a stale, past deadline that the guest re-arms at once, forever.
    let lp = Loop::new().unwrap();
    let exceptions = support::record_exceptions(&lp);
    let guest = new_guest(&lp);
    let handle = guest.handle().unwrap();
    let panicking = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_millis(2)));
    handle
        .insert_source(panicking, |_, _, _: &mut State| -> TimeoutAction {
            panic!("a guest timer panicked")
        })
        .unwrap();
    // Far enough behind the first that a stalled test machine does not
    // make both due in one dispatch (the panic would then lose it too).
    let later = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_millis(300)));
    handle
        .insert_source(later, |_, _, s: &mut State| {
            s.log.push("later");
            TimeoutAction::Drop
        })
        .unwrap();
    let g = &guest;
    run_until_logged(&lp, g, 1);
    let reports = exceptions.take();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("a guest timer panicked"), "{reports:?}");

    // Idle now: a ping makes the guest dispatch and re-arm; then the loop
    // must sleep, not re-run a timer for the dead deadline.
    let (ping, ping_source) = make_ping().unwrap();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| s.log.push("ping"))
        .unwrap();
    ping.ping();
    run_within(&lp, LIMIT, oneloop::sleep(Duration::from_millis(5))).unwrap();
    assert_eq!(
        guest.with_data(|s| s.log.clone()).unwrap(),
        ["later", "ping"]
    );
    assert_sleeps_while_idle(&lp);
    exceptions.assert_clean();
    lp.close().unwrap();
}

#[test]
fn a_panic_in_a_source_callback_that_drops_a_due_timer_leaves_the_loop_idle() {
    // calloop takes every due timer off its wheel before it calls back
    // the ready sources, then the timers: a panic in a source's callback
    // loses the timers of that dispatch (they never fire, as on calloop's
    // own loop). The guest must not keep re-arming at their past deadline.
    let lp = Loop::new().unwrap();
    let exceptions = support::record_exceptions(&lp);
    let guest = new_guest(&lp);
    let handle = guest.handle().unwrap();
    let (ping, ping_source) = make_ping().unwrap();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| {
            s.log.push("ping");
            if s.log.len() == 1 {
                panic!("a calloop source panicked");
            }
        })
        .unwrap();
    let due = guest.timers().timer(Timer::immediate());
    handle
        .insert_source(due, |_, _, s: &mut State| {
            s.log.push("due");
            TimeoutAction::Drop
        })
        .unwrap();
    ping.ping();
    let g = &guest;
    run_until_logged(&lp, g, 1);
    let reports = exceptions.take();
    assert_eq!(reports.len(), 1, "{reports:?}");
    // The guest goes on: a later timer and a ping still run...
    let later = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_millis(5)));
    handle
        .insert_source(later, |_, _, s: &mut State| {
            s.log.push("later");
            TimeoutAction::Drop
        })
        .unwrap();
    ping.ping();
    run_until_logged(&lp, g, 3);
    let log = guest.with_data(|s| s.log.clone()).unwrap();
    assert!(
        log.contains(&"later") && log.iter().filter(|e| **e == "ping").count() == 2,
        "{log:?}"
    );
    // ...and the loop sleeps while idle.
    assert_sleeps_while_idle(&lp);
    exceptions.assert_clean();
    lp.close().unwrap();
}

#[test]
fn a_panic_escaping_a_batch_leaves_the_guests_timers_armed() {
    // A panic that unwinds out of a batch (a panic payload whose drop
    // panics, a panicking tracing subscriber) comes out of the run; the
    // loop is fit for use again (ER-04), and so must the guest be: a
    // batch flag left raised would keep it from ever re-arming its timers.
    let lp = Loop::new().unwrap();
    let guest = new_guest(&lp);
    lp.set_exception_handler(Some(|_: &Loop, _: &oneloop::ExceptionContext| {}));
    lp.call_soon(|| std::panic::panic_any(oneloop_conformance::support::PanicOnDrop))
        .unwrap();
    let escaped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))
    }));
    assert!(escaped.is_err(), "the panic did not come out of the run");

    let timer = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_millis(2)));
    guest
        .handle()
        .unwrap()
        .insert_source(timer, |_, _, s: &mut State| {
            s.log.push("timer");
            TimeoutAction::Drop
        })
        .unwrap();
    let g = &guest;
    run_until_logged(&lp, g, 1);
    lp.close().unwrap();
}

#[test]
fn detach_hands_the_event_loop_back_and_unwatches_it() {
    let lp = Loop::new().unwrap();
    let guest = new_guest(&lp);
    let handle = guest.handle().unwrap();
    let (ping, ping_source) = make_ping().unwrap();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| s.log.push("ping"))
        .unwrap();
    let timer = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_secs(3600)));
    handle
        .insert_source(timer, |_, _, _: &mut State| TimeoutAction::Drop)
        .unwrap();
    run_within(&lp, LIMIT, oneloop::sleep(Duration::from_millis(1))).unwrap();
    assert_eq!((lp.stats().fds, lp.stats().timers), (1, 1));
    let (mut event_loop, mut state) = guest.detach().expect("attached");
    assert!(guest.detach().is_none());
    assert!(!guest.is_attached());
    assert!(guest.with_data(|_| ()).is_none());
    run_within(&lp, LIMIT, oneloop::sleep(Duration::from_millis(1))).unwrap();
    assert_eq!(
        (lp.stats().fds, lp.stats().timers),
        (0, 0),
        "{:?}",
        lp.stats()
    );
    // The event loop is whole: its sources run under its own dispatch.
    ping.ping();
    event_loop
        .dispatch(Some(Duration::from_secs(1)), &mut state)
        .unwrap();
    assert_eq!(state.log, ["ping"]);
    lp.close().unwrap();
}

#[test]
fn a_guest_detached_inside_a_batch_leaves_no_loop_timer_armed() {
    // Detaching from a task (where user code of an owned loop runs), in a
    // batch that changed a timer, must not let that batch's end arm a loop
    // timer for the ended guest at the deadline of a timer it handed back.
    let lp = Loop::new().unwrap();
    let guest = Rc::new(new_guest(&lp));
    let handle = guest.handle().unwrap();
    let timer = guest
        .timers()
        .timer(Timer::from_duration(Duration::from_secs(3600)));
    handle
        .insert_source(timer, |_, _, _: &mut State| TimeoutAction::Drop)
        .unwrap();
    drop(handle);
    run_within(&lp, LIMIT, oneloop::sleep(Duration::from_millis(1))).unwrap();
    assert_eq!((lp.stats().fds, lp.stats().timers), (1, 1));
    let g = guest.clone();
    let (_event_loop, _state) = run_within(&lp, LIMIT, async move {
        let timer = g
            .timers()
            .timer(Timer::from_duration(Duration::from_secs(7200)));
        g.handle()
            .unwrap()
            .insert_source(timer, |_, _, _: &mut State| TimeoutAction::Drop)
            .unwrap();
        g.detach()
    })
    .expect("attached");
    assert!(!guest.is_attached());
    run_within(&lp, LIMIT, oneloop::sleep(Duration::from_millis(1))).unwrap();
    assert_eq!(
        (lp.stats().fds, lp.stats().timers),
        (0, 0),
        "the ended guest left something on the loop: {:?}",
        lp.stats()
    );
    lp.close().unwrap();
}

#[test]
fn misuse_is_an_error() {
    // A closed loop.
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    let event_loop: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let err = oneloop_calloop::guest(&lp, event_loop, ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);

    // A loop attached to that very event loop: its poller cannot watch
    // itself (and the guest would dispatch the loop from inside itself).
    let event_loop: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let lp = oneloop_calloop::attach(event_loop.handle()).unwrap();
    let err = oneloop_calloop::guest(&lp, event_loop, ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    lp.close().unwrap();

    // with_data from inside the guest's own callback: the data is the
    // callback's `&mut D` then.
    let lp = Loop::new().unwrap();
    let guest = Rc::new(new_guest(&lp));
    let handle = guest.handle().unwrap();
    let (ping, ping_source) = make_ping().unwrap();
    let inner = Rc::downgrade(&guest);
    handle
        .insert_source(ping_source, move |_, _, s: &mut State| {
            let g = inner.upgrade().unwrap();
            assert!(g.with_data(|_| ()).is_none());
            assert!(
                g.detach().is_none(),
                "detached from inside its own dispatch"
            );
            s.log.push("ping");
        })
        .unwrap();
    ping.ping();
    run_until_logged(&lp, &guest, 1);
    lp.close().unwrap();
}

#[test]
fn a_busy_event_loop_shares_the_loop_within_its_budget() {
    // A ping that re-pings itself from its callback keeps the event loop's
    // fd readable: at one wake-up the guest dispatches it again without
    // going back to the loop (that is its throughput), but at most its
    // budget of times, so the loop's other work (here a chain of
    // call_soon) still runs between.
    const PINGS: u32 = 2_000;
    let lp = Loop::new().unwrap();
    let event_loop: EventLoop<'static, u32> = EventLoop::try_new().unwrap();
    let handle = event_loop.handle();
    let guest = Rc::new(oneloop_calloop::guest(&lp, event_loop, 0).unwrap());
    let (ping, source) = make_ping().unwrap();
    let p = ping.clone();
    handle
        .insert_source(source, move |_, _, n: &mut u32| {
            *n += 1;
            if *n < PINGS {
                p.ping();
            }
        })
        .unwrap();
    let seen = Rc::new(RefCell::new(vec![0]));
    fn link(lp: Loop, guest: Rc<oneloop_calloop::CalloopGuest<u32>>, seen: Rc<RefCell<Vec<u32>>>) {
        let n = guest.with_data(|n| *n).unwrap();
        seen.borrow_mut().push(n);
        if n >= PINGS {
            lp.stop();
            return;
        }
        let next = lp.clone();
        lp.call_soon(move || link(next, guest, seen)).unwrap();
    }
    let (l, g, s) = (lp.clone(), guest.clone(), seen.clone());
    lp.call_soon(move || link(l, g, s)).unwrap();
    ping.ping();
    let watchdog = support::Watchdog::stop_loop(&lp, LIMIT);
    lp.run_forever().unwrap();
    watchdog.assert_not_fired("a ping chain beside a call_soon chain");
    assert_eq!(guest.with_data(|n| *n), Some(PINGS));
    let seen = seen.borrow();
    let most = seen.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let budget = oneloop_calloop::CalloopGuest::<u32>::DISPATCH_BUDGET;
    assert!(
        most <= budget,
        "{most} calloop dispatches ran between two loop iterations (budget {budget})"
    );
    assert!(
        most > 1,
        "one dispatch per loop iteration: the guest does not dispatch again while its fd is readable"
    );
    drop(handle);
    lp.close().unwrap();
}
