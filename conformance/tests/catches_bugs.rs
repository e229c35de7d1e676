//! The suite has teeth: deliberately broken loops fail exactly the checks
//! they break, and the healthy default loop passes those same checks.
//!
//! Scheduler faults come from `oneloop`'s `fault-injection` feature; the
//! host faults are small backends written here: a clock that runs ahead
//! while dispatching (timers fire 1 ms early in real time), a wake handle
//! that does not wake, a dispatch on another thread than the loop's, fd
//! readiness reported only on edges, and writers never told of an error
//! that comes without a hang-up.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oneloop::backend::{Backend, Driver, Interest, NextDispatch, Readiness, RemoteWake};
use oneloop::native::NativeBackend;
use oneloop::{Fault, Loop, LoopBuilder};
use oneloop_conformance::{
    AdapterSpec, Caps, Options, Outcome, Setup, check, native_spec, run_check_with,
};

/// Short limits: a broken wake-up should fail in about a second, not five.
const OPTIONS: Options = Options {
    deadline: Duration::from_secs(1),
    hang_timeout: Duration::from_secs(20),
};

fn spec(name: &'static str, setup: fn() -> oneloop::Result<Setup>) -> AdapterSpec {
    AdapterSpec {
        name,
        setup,
        caps: Caps::FD | Caps::THREADS | Caps::EXECUTOR,
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    }
}

fn run(spec: &AdapterSpec, id: &str) -> Outcome {
    run_check_with(spec, check(id).expect("a check with this ID"), OPTIONS)
}

/// `id` fails on `broken` and passes on the default loop.
///
/// A timing fault (a timer 1 ms early) can hide behind a late wake-up on a
/// loaded machine, so a broken loop gets three runs to be caught; the
/// healthy loop must pass its one run.
fn catches(broken: AdapterSpec, id: &str) {
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        match run(&broken, id) {
            Outcome::Fail(msg) => {
                eprintln!("{id} caught {}: {msg}", broken.name);
                outcomes.clear();
                break;
            }
            other => outcomes.push(other),
        }
    }
    assert!(
        outcomes.is_empty(),
        "{id} did not catch {}: {outcomes:?}",
        broken.name
    );
    assert_eq!(
        run(&native_spec(), id),
        Outcome::Pass,
        "{id} on the healthy default loop"
    );
}

fn faulty(fault: Fault) -> oneloop::Result<Setup> {
    Ok(Setup::new(LoopBuilder::new().inject_fault(fault).build()?))
}

#[test]
fn lifo_ready_queue_fails_cb_01() {
    catches(spec("lifo", || faulty(Fault::LifoReadyQueue)), "CB-01");
}

#[test]
fn eager_done_callbacks_fail_fu_04() {
    catches(
        spec("eager-done", || faulty(Fault::EagerDoneCallbacks)),
        "FU-04",
    );
}

#[test]
fn allowed_nested_run_fails_lc_02() {
    catches(
        spec("nested-run", || faulty(Fault::AllowNestedRun)),
        "LC-02",
    );
}

#[test]
fn stop_dropping_queued_callbacks_fails_lc_03() {
    catches(
        spec("stop-drops", || faulty(Fault::StopDropsQueued)),
        "LC-03",
    );
}

/// The default backend, with a clock 1 ms ahead while it dispatches and its
/// timer armed 1 ms early: timers fire 1 ms early in real time, although
/// `time()` inside the callback looks right.
struct EarlyClock {
    inner: NativeBackend,
    dispatching: Cell<bool>,
}

const AHEAD: Duration = Duration::from_millis(1);

impl Backend for EarlyClock {
    fn name(&self) -> &str {
        "early-clock"
    }
    fn arm(&self, next: NextDispatch) {
        self.inner.arm(match next {
            NextDispatch::At(t) => NextDispatch::At(t.checked_sub(AHEAD).unwrap_or(t)),
            other => other,
        })
    }
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.inner.remote_waker()
    }
    fn turn(&self) -> io::Result<()> {
        self.dispatching.set(true);
        let r = self.inner.turn();
        self.dispatching.set(false);
        r
    }
    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.inner.watch(fd, interest)
    }
    fn now(&self) -> Instant {
        if self.dispatching.get() {
            Instant::now() + AHEAD
        } else {
            Instant::now()
        }
    }
    fn close(&self) {
        self.inner.close()
    }
}

#[test]
fn timer_firing_1ms_early_fails_tm_03() {
    catches(
        spec("early-clock", || {
            Ok(Setup::new(Loop::with_backend(|driver| {
                Ok(EarlyClock {
                    inner: NativeBackend::new(driver)?,
                    dispatching: Cell::new(false),
                })
            })?))
        }),
        "TM-03",
    );
}

/// The default backend with a wake handle that does nothing.
struct DeafWaker(NativeBackend);

impl Backend for DeafWaker {
    fn name(&self) -> &str {
        "deaf-waker"
    }
    fn arm(&self, next: NextDispatch) {
        self.0.arm(next)
    }
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        Arc::new(|| {})
    }
    fn turn(&self) -> io::Result<()> {
        self.0.turn()
    }
    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.0.watch(fd, interest)
    }
    fn close(&self) {
        self.0.close()
    }
}

#[test]
fn threadsafe_call_that_does_not_wake_fails_th_01() {
    catches(
        spec("deaf-waker", || {
            Ok(Setup::new(Loop::with_backend(|driver| {
                Ok(DeafWaker(NativeBackend::new(driver)?))
            })?))
        }),
        "TH-01",
    );
}

/// The default backend, turned on a helper thread: each turn (the poll and
/// the dispatch inside it) runs on a scoped thread while the loop's thread
/// waits for it. Callbacks, and the `!Send` handles they hold, end up on
/// another thread: the loop breaks its side of CB-06.
struct OffThreadDispatch(NativeBackend);

/// Lets the backend cross to the helper thread (the deliberate bug).
struct AssertSend<T>(T);

// SAFETY: a deliberately broken loop, but no data race: the loop's thread
// is blocked in `join` for as long as the helper thread uses the backend
// (and, through it, the loop's `Rc`s and `RefCell`s), and spawning and
// joining order every access on one thread before those on the other.
unsafe impl<T> Send for AssertSend<T> {}

impl Backend for OffThreadDispatch {
    fn name(&self) -> &str {
        "off-thread-dispatch"
    }
    fn arm(&self, next: NextDispatch) {
        self.0.arm(next)
    }
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        self.0.remote_waker()
    }
    fn turn(&self) -> io::Result<()> {
        let inner = AssertSend(&self.0);
        std::thread::scope(|s| {
            s.spawn(move || {
                // The whole wrapper moves, not just its (non-Send) field.
                let inner = inner;
                inner.0.turn()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.0.watch(fd, interest)
    }
    fn close(&self) {
        self.0.close()
    }
}

#[test]
fn dispatching_on_another_thread_fails_cb_06() {
    catches(
        spec("off-thread-dispatch", || {
            Ok(Setup::new(Loop::with_backend(|driver| {
                Ok(OffThreadDispatch(NativeBackend::new(driver)?))
            })?))
        }),
        "CB-06",
    );
}

/// A backend on `polling` with one of two faults: edge-triggered mode (an
/// fd is reported once when it becomes ready, not on every iteration while
/// it stays ready), or writers blind to errors (a writer is told of
/// "writable" and of a hang-up, never of an error alone: a GLib source that
/// maps `G_IO_HUP` but forgets `G_IO_ERR`, which leaves the writer of a pipe
/// whose reader went away waiting forever).
struct Polled {
    poller: Arc<polling::Poller>,
    driver: Driver,
    mode: polling::PollMode,
    writers_see_errors: bool,
    armed: Cell<NextDispatch>,
    watched: RefCell<HashMap<RawFd, Interest>>,
    events: RefCell<polling::Events>,
}

/// An edge-triggered `Polled`.
fn edge_triggered(driver: Driver) -> io::Result<Polled> {
    Polled::new(driver, polling::PollMode::Edge, true)
}

impl Polled {
    fn new(
        driver: Driver,
        mode: polling::PollMode,
        writers_see_errors: bool,
    ) -> io::Result<Polled> {
        Ok(Polled {
            poller: Arc::new(polling::Poller::new()?),
            driver,
            mode,
            writers_see_errors,
            armed: Cell::new(NextDispatch::OnEvent),
            watched: RefCell::new(HashMap::new()),
            events: RefCell::new(polling::Events::new()),
        })
    }
}

impl Backend for Polled {
    fn name(&self) -> &str {
        match (self.mode, self.writers_see_errors) {
            (polling::PollMode::Edge, _) => "edge-triggered",
            _ => "writers-blind-to-errors",
        }
    }
    fn arm(&self, next: NextDispatch) {
        self.armed.set(next);
    }
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        let poller = self.poller.clone();
        Arc::new(move || {
            let _ = poller.notify();
        })
    }
    fn turn(&self) -> io::Result<()> {
        let driver = &self.driver;
        let timeout = self
            .armed
            .get()
            .timeout(Instant::now(), Duration::from_nanos(1));
        let mut events = self.events.borrow_mut();
        events.clear();
        match self.poller.wait(&mut events, timeout) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        for ev in events.iter() {
            // `polling` reports an error condition as readable and
            // writable; the blind variant drops an error that comes
            // without a hang-up on the writer's side.
            let error_only = ev.is_err() == Some(true) && !ev.is_interrupt();
            driver.fd_ready(
                ev.key as RawFd,
                Readiness {
                    readable: ev.readable,
                    writable: ev.writable && (self.writers_see_errors || !error_only),
                    hangup: false,
                },
            );
        }
        drop(events);
        driver.dispatch();
        Ok(())
    }
    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        let ev = polling::Event::new(fd as usize, interest.readable, interest.writable);
        let mut watched = self.watched.borrow_mut();
        // SAFETY: the loop lends only fds that its user keeps open while they
        // are registered (the `add_reader` contract), and this one is
        // registered (or being registered) now.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match (watched.contains_key(&fd), interest.is_none()) {
            (false, true) => Ok(()),
            (false, false) => {
                // SAFETY: as above; `watched` records the fd, so it is deleted
                // before the loop lets go of it (removal or close).
                unsafe { self.poller.add_with_mode(fd, ev, self.mode)? };
                watched.insert(fd, interest);
                Ok(())
            }
            (true, true) => {
                watched.remove(&fd);
                self.poller.delete(borrowed)
            }
            (true, false) => {
                watched.insert(fd, interest);
                self.poller.modify_with_mode(borrowed, ev, self.mode)
            }
        }
    }
    fn close(&self) {
        for (fd, _) in self.watched.borrow_mut().drain() {
            // SAFETY: registered, hence open by the same contract.
            let _ = self.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
        }
    }
}

/// FD-07's writer of a full pipe whose reader closed: the kernel reports
/// an error condition only, no "writable". (The assertion came from
/// `core/tests/fds.rs` into the suite, so every loop mode runs it.)
#[test]
fn writers_blind_to_errors_fail_fd_07() {
    catches(
        spec("writers-blind-to-errors", || {
            Ok(Setup::new(Loop::with_backend(|driver| {
                Polled::new(driver, polling::PollMode::Level, false)
            })?))
        }),
        "FD-07",
    );
}

#[test]
fn edge_triggered_readiness_fails_fd_01() {
    catches(
        spec("edge-triggered", || {
            Ok(Setup::new(Loop::with_backend(edge_triggered)?))
        }),
        "FD-01",
    );
}

/// How many bytes loopback TCP takes from a writer whose reader does not
/// read, before the writer would block: what FC-04's peer gets in.
fn loopback_capacity() -> usize {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut w = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (_silent, _) = l.accept().expect("accept");
    w.set_nonblocking(true).expect("nonblocking");
    let chunk = [0u8; 64 * 1024];
    let mut held = 0;
    while held < 64 << 20 {
        match w.write(&chunk) {
            Ok(n) => held += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    held
}

/// A transport on edge-triggered readiness: resuming reads with megabytes
/// waiting in the kernel and the peer silent gets no new edge, so the rest
/// never arrives.
///
/// That needs more waiting than one read takes (the default loop's
/// transports read 256 KiB at a time); where loopback buffers are tuned
/// smaller, one read drains them, FC-04 cannot tell, and this test says so
/// and skips (FD-01 catches the same backend everywhere).
#[test]
fn edge_triggered_readiness_fails_fc_04() {
    let held = loopback_capacity();
    if held < 512 * 1024 {
        eprintln!(
            "skipped: loopback TCP holds only {held} bytes for a reader that does not \
             read; FC-04 sees edge-triggered readiness only when more than one \
             256 KiB read is waiting"
        );
        return;
    }
    let mut s = spec("edge-triggered", || {
        Ok(Setup::new(Loop::with_backend(edge_triggered)?))
    });
    s.caps |= Caps::TCP;
    catches(s, "FC-04");
}

#[test]
fn a_must_divergence_is_never_waived() {
    let mut s = native_spec();
    s.divergences = &[oneloop_conformance::Divergence {
        id: "CB-01",
        reason: "trying to waive a MUST",
    }];
    assert!(matches!(run(&s, "CB-01"), Outcome::Fail(m) if m.contains("never be waived")));
}

#[test]
fn a_should_divergence_is_an_expected_failure_until_it_passes() {
    // TM-03 on the early clock: listed, so an expected failure.
    let mut early = spec("early-clock", || {
        Ok(Setup::new(Loop::with_backend(|driver| {
            Ok(EarlyClock {
                inner: NativeBackend::new(driver)?,
                dispatching: Cell::new(false),
            })
        })?))
    });
    early.divergences = &[oneloop_conformance::Divergence {
        id: "TM-03",
        reason: "timers fire early",
    }];
    let xfail = (0..3).any(|_| matches!(run(&early, "TM-03"), Outcome::ExpectedFailure(_)));
    assert!(
        xfail,
        "a listed divergence that fails is an expected failure"
    );
    // The same divergence on a loop that passes: no longer needed.
    let mut healthy = native_spec();
    healthy.divergences = early.divergences;
    assert!(matches!(run(&healthy, "TM-03"), Outcome::UnexpectedPass(_)));
}

#[test]
fn missing_capabilities_are_ignored_with_a_reason_and_must_answer_unsupported() {
    let mut s = native_spec();
    s.caps = Caps::THREADS;
    match run(&s, "FD-01") {
        Outcome::Ignored(reason) => assert!(reason.contains("fd"), "{reason}"),
        other => panic!("FD-01 without fd: {other:?}"),
    }
    // The default loop does watch fds, so UNSUP-FD (add_reader must answer
    // Unsupported) fails on it when it pretends not to: the check has teeth.
    assert!(matches!(run(&s, "UNSUP-FD"), Outcome::Fail(_)));
}
