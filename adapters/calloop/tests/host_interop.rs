//! A compositor-style host `EventLoop<State>` with its own timer, channel and
//! ping sources, running oneloop callbacks, fd readers and tasks beside them;
//! closing (or dropping) the oneloop loop removes every source it inserted
//! and leaves the host running.

mod support;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use calloop::channel::{Event, channel};
use calloop::generic::Generic;
use calloop::ping::make_ping;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, Interest, Mode, PostAction};
use oneloop::ErrorKind;
use support::{Watchdog, socket_pair};

/// The compositor's data, which oneloop callbacks never see.
#[derive(Default)]
struct State {
    log: Vec<String>,
    host_timer_fired: u32,
    host_pings: u32,
}

#[test]
fn host_sources_and_oneloop_work_share_one_loop() {
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().unwrap();
    let handle = event_loop.handle();
    let lp = oneloop_calloop::attach(handle.clone()).unwrap();
    let exceptions = support::record_exceptions(&lp);
    assert!(lp.is_running());
    assert!(lp.is_attached());
    assert_eq!(
        lp.run_forever().unwrap_err().kind(),
        ErrorKind::AlreadyRunning
    );

    // Shared with oneloop through an Rc, as the crate docs advise.
    let seen = Rc::new(RefCell::new(Vec::<String>::new()));

    // Host: a timer and a channel fed from another thread.
    handle
        .insert_source(
            Timer::from_duration(Duration::from_millis(5)),
            |_, _, s: &mut State| {
                s.host_timer_fired += 1;
                s.log.push("host timer".into());
                TimeoutAction::Drop
            },
        )
        .unwrap();
    let (tx, rx) = channel::<u32>();
    let lp_from_host = lp.clone();
    let seen_host = seen.clone();
    handle
        .insert_source(rx, move |ev, _, s: &mut State| {
            if let Event::Msg(n) = ev {
                s.log.push(format!("host msg {n}"));
                // Work created from a host callback runs without any other event (EM-02).
                let seen = seen_host.clone();
                lp_from_host
                    .call_soon(move || seen.borrow_mut().push(format!("soon from host {n}")))
                    .unwrap();
            }
        })
        .unwrap();
    let sender = std::thread::spawn(move || {
        for n in 0..3 {
            tx.send(n).unwrap();
        }
    });

    // oneloop: a callback, a timer, an fd reader and a task.
    let s1 = seen.clone();
    lp.call_soon(move || s1.borrow_mut().push("soon".into()))
        .unwrap();
    let s2 = seen.clone();
    lp.call_later(Duration::from_millis(3), move || {
        s2.borrow_mut().push("later".into())
    })
    .unwrap();
    let (mut peer, sock) = socket_pair();
    let sock = Rc::new(sock);
    peer.write_all(b"ping").unwrap();
    let s3 = seen.clone();
    let lp3 = lp.clone();
    let sock2 = sock.clone();
    lp.add_reader(&*sock, move || {
        let mut buf = [0u8; 16];
        let n = (&*sock2).read(&mut buf).unwrap();
        s3.borrow_mut()
            .push(format!("read {}", String::from_utf8_lossy(&buf[..n])));
        assert!(lp3.remove_reader(&*sock2));
    })
    .unwrap();
    let signal = event_loop.get_signal();
    let s4 = seen.clone();
    let task = lp
        .spawn(async move {
            oneloop::sleep(Duration::from_millis(20)).await?;
            s4.borrow_mut().push("task".into());
            signal.stop();
            Ok::<_, oneloop::Error>(7)
        })
        .unwrap();

    let signal = event_loop.get_signal();
    let dog = Watchdog::with_action(support::LIMIT, move || {
        signal.stop();
        signal.wakeup();
    });
    let mut state = State::default();
    event_loop.run(None, &mut state, |_| {}).unwrap();
    sender.join().unwrap();
    // Messages sent before the stop may still be queued: one more round.
    event_loop
        .dispatch(Duration::from_millis(10), &mut state)
        .unwrap();
    assert!(!dog.fired(), "the host loop never stopped");

    assert_eq!(task.result().unwrap().unwrap(), 7);
    assert_eq!(state.host_timer_fired, 1);
    let seen = seen.borrow();
    assert_eq!(seen[0], "soon");
    let pos = |s: &str| {
        seen.iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s:?} missing from {seen:?}"))
    };
    assert!(pos("later") < pos("task"));
    pos("read ping");
    for n in 0..3 {
        pos(&format!("soon from host {n}"));
        assert!(state.log.contains(&format!("host msg {n}")));
    }
    exceptions.assert_clean();
    lp.close().unwrap();
}

/// Close removes the ping, the timer and every fd source, and leaves the
/// host running its own sources.
#[test]
fn close_removes_every_source_and_the_host_lives_on() {
    check_detach(|lp| lp.close().unwrap());
}

/// Dropping the last handle of an attached loop without `close()` removes
/// its sources as well.
#[test]
fn drop_without_close_removes_every_source() {
    check_detach(drop);
}

fn check_detach(detach: impl FnOnce(oneloop::Loop)) {
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().unwrap();
    let handle = event_loop.handle();
    let lp = oneloop_calloop::attach(handle.clone()).unwrap();
    let ran = Rc::new(Cell::new(0));

    // Leave every kind of source armed: the ping (queued work), the timer,
    // and a level-triggered reader on a socket that stays readable.
    // (The timer first: once work is queued, the timer is armed only at the
    // end of the next dispatch.)
    let r = ran.clone();
    lp.call_later(Duration::from_millis(20), move || r.set(r.get() + 1))
        .unwrap();
    let r = ran.clone();
    lp.call_soon(move || r.set(r.get() + 1)).unwrap();
    let (mut peer, sock) = socket_pair();
    let sock = Rc::new(sock);
    peer.write_all(b"x").unwrap();
    let r = ran.clone();
    lp.add_reader(&*sock, move || r.set(r.get() + 1)).unwrap();
    let remote = lp.remote();

    detach(lp);

    // Nothing of oneloop is left to end a poll: the ping was pending, the
    // timer due and the fd readable, so if any source were still there the dispatch would
    // return early. One-sided: never shorter than the timeout.
    // A remote wake after the detach (refused with `Closed` after close;
    // after a drop it may still ping the eventfd nobody watches any more).
    let _ = remote.call_soon_threadsafe(|| ());
    let start = Instant::now();
    event_loop
        .dispatch(Duration::from_millis(50), &mut State::default())
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "a oneloop source woke the host after close"
    );
    assert_eq!(ran.get(), 0, "queued oneloop work ran after close");

    // The fd is free for the host: calloop refuses a second registration
    // of an fd number (EEXIST), so this proves oneloop's `Generic` is gone.
    let host_reads = Rc::new(Cell::new(0));
    let hr = host_reads.clone();
    let fd_token = handle
        .insert_source(
            Generic::new(sock.clone(), Interest::READ, Mode::Level),
            move |_, _, _: &mut State| {
                hr.set(hr.get() + 1);
                Ok(PostAction::Continue)
            },
        )
        .expect("the fd is still registered by oneloop");
    event_loop
        .dispatch(Duration::ZERO, &mut State::default())
        .unwrap();
    assert_eq!(host_reads.get(), 1);
    handle.remove(fd_token);

    // The host keeps running its own sources.
    let mut state = State::default();
    let (ping, ping_source) = make_ping().unwrap();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| s.host_pings += 1)
        .unwrap();
    ping.ping();
    event_loop
        .dispatch(Duration::from_millis(500), &mut state)
        .unwrap();
    assert_eq!(state.host_pings, 1);
    drop(peer);
}

/// A oneloop callback that re-queues itself forever does not starve the
/// host's timer, and a host source that re-triggers itself forever does not
/// starve oneloop's timer (EM-07).
#[test]
fn neither_side_starves_the_other() {
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().unwrap();
    let handle = event_loop.handle();
    let lp = oneloop_calloop::attach(handle.clone()).unwrap();

    // oneloop: a callback storm.
    let spins = Rc::new(Cell::new(0u64));
    fn spin(lp: oneloop::Loop, spins: Rc<Cell<u64>>) {
        spins.set(spins.get() + 1);
        let lp2 = lp.clone();
        let _ = lp.call_soon(move || spin(lp2, spins));
    }
    let (lp2, s2) = (lp.clone(), spins.clone());
    lp.call_soon(move || spin(lp2, s2)).unwrap();

    // Host: a ping storm (each ping re-pings).
    let (ping, ping_source) = make_ping().unwrap();
    let p2 = ping.clone();
    handle
        .insert_source(ping_source, move |_, _, s: &mut State| {
            s.host_pings += 1;
            p2.ping();
        })
        .unwrap();
    ping.ping();

    // Both sides' timers must still fire.
    let oneloop_timer = Rc::new(Cell::new(false));
    let t = oneloop_timer.clone();
    lp.call_later(Duration::from_millis(10), move || t.set(true))
        .unwrap();
    handle
        .insert_source(
            Timer::from_duration(Duration::from_millis(10)),
            |_, _, s: &mut State| {
                s.host_timer_fired += 1;
                TimeoutAction::Drop
            },
        )
        .unwrap();

    let mut state = State::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(oneloop_timer.get() && state.host_timer_fired == 1) {
        assert!(Instant::now() < deadline, "a timer starved");
        event_loop.dispatch(None, &mut state).unwrap();
    }
    assert!(spins.get() > 1 && state.host_pings > 1);
    lp.close().unwrap();
}

/// A framework may be started from inside a host callback (a compositor
/// reacting to a client): attaching then works, and the new loop's work
/// runs on the following iterations.
#[test]
fn attach_from_inside_a_host_callback() {
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().unwrap();
    let handle = event_loop.handle();
    let slot: Rc<RefCell<Option<oneloop::Loop>>> = Rc::default();
    let (h2, s2) = (handle.clone(), slot.clone());
    handle.insert_idle(move |s: &mut State| {
        let lp = oneloop_calloop::attach(h2).unwrap();
        let lp2 = lp.clone();
        lp.spawn(async move {
            oneloop::sleep(Duration::from_millis(1)).await?;
            let _ = lp2.call_soon(|| ());
            Ok::<_, oneloop::Error>(())
        })
        .unwrap();
        s.log.push("attached".into());
        *s2.borrow_mut() = Some(lp);
    });
    let mut state = State::default();
    event_loop.dispatch(Duration::ZERO, &mut state).unwrap();
    assert_eq!(state.log, ["attached"]);
    let lp = slot.borrow_mut().take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while lp.stats().tasks > 0 {
        assert!(Instant::now() < deadline, "the task never finished");
        event_loop
            .dispatch(Duration::from_millis(50), &mut state)
            .unwrap();
    }
    lp.close().unwrap();
}

/// The host's event loop may go away first (a compositor shutting down):
/// the oneloop loop then refuses new fds with an error, never panics, and
/// closes cleanly.
#[test]
fn host_dropped_before_the_loop() {
    let event_loop: EventLoop<'static, State> = EventLoop::try_new().unwrap();
    let lp = oneloop_calloop::attach(event_loop.handle()).unwrap();
    lp.call_later(Duration::from_secs(1), || ()).unwrap();
    drop(event_loop);
    lp.call_soon(|| ()).unwrap();
    lp.call_later(Duration::from_millis(1), || ()).unwrap();
    let (_peer, sock) = socket_pair();
    let err = lp.add_reader(&sock, || ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    lp.close().unwrap();
}

/// The iteration runs inside the selector source's own callback when the
/// selector reports an fd: a oneloop callback there that lets go of the
/// last handle of the loop (which then closes, removing that very source
/// from inside its callback) must leave calloop consistent: no panic, the
/// reader never runs again, and the host goes on with its own sources.
#[test]
fn last_handle_dropped_inside_a_selector_driven_iteration() {
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().unwrap();
    let handle = event_loop.handle();
    let lp = oneloop_calloop::attach(handle.clone()).unwrap();
    let (mut peer, sock) = socket_pair();
    let sock = Rc::new(sock);
    let slot = Rc::new(RefCell::new(Some(lp.clone())));
    let calls = Rc::new(Cell::new(0u32));
    {
        let (slot, calls) = (slot.clone(), calls.clone());
        // Never reads: the fd stays readable, so a reader still in the
        // selector would run again at the next dispatch.
        lp.add_reader(&*sock, move || {
            calls.set(calls.get() + 1);
            drop(slot.borrow_mut().take());
        })
        .unwrap();
    }
    drop(lp);
    peer.write_all(b"x").unwrap();
    let mut state = State::default();
    let deadline = Instant::now() + Duration::from_secs(5);
    while calls.get() == 0 {
        assert!(Instant::now() < deadline, "the reader never ran");
        event_loop
            .dispatch(Duration::from_millis(50), &mut state)
            .unwrap();
    }
    for _ in 0..3 {
        event_loop.dispatch(Duration::ZERO, &mut state).unwrap();
    }
    assert_eq!(calls.get(), 1, "a closed loop's reader ran again");
    // The host goes on, with a source of its own on that fd too.
    let (ping, ping_source) = make_ping().unwrap();
    handle
        .insert_source(ping_source, |_, _, s: &mut State| s.host_pings += 1)
        .unwrap();
    handle
        .insert_source(
            Generic::new(sock.clone(), Interest::READ, Mode::Level),
            |_, _, s: &mut State| {
                s.log.push("host read".into());
                Ok(PostAction::Remove)
            },
        )
        .expect("the host registers the fd");
    ping.ping();
    event_loop
        .dispatch(Duration::from_millis(500), &mut state)
        .unwrap();
    assert_eq!(state.host_pings, 1);
    assert_eq!(state.log, ["host read"]);
}
