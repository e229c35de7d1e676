//! The embedding (`EM`) checks and the attached-mode driver of the suite,
//! exercised on a small host loop written here: a single-threaded
//! "toolkit" main loop with its own idle queue and timeouts, which runs
//! oneloop as one of its sources, attached (the host runs it) or owned
//! (`run_*` iterates the host).

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use oneloop::backend::{Backend, Driver, NextDispatch, RemoteWake};
use oneloop::{Loop, LoopBuilder};
use oneloop_conformance::{
    AdapterSpec, Caps, Divergence, HostDriver, Outcome, Setup, checks, run_check,
};

type Native = Box<dyn FnOnce()>;

/// The host: idle callbacks, timeouts, a wake flag, and oneloop's source.
#[derive(Default)]
struct Host {
    idle: RefCell<VecDeque<Native>>,
    timeouts: RefCell<Vec<(Instant, Native)>>,
    wake: Arc<(Mutex<bool>, Condvar)>,
    driver: OnceCell<Driver>,
    armed: Cell<Option<NextDispatch>>,
    quit: Cell<bool>,
}

impl Host {
    /// One iteration: wait (if allowed) for the earliest event, run the
    /// idle callbacks queued before it, the due timeouts, then oneloop.
    fn iterate(&self, may_block: bool) -> bool {
        let now = Instant::now();
        let mut timeout = self
            .armed
            .get()
            .and_then(|n| n.timeout(now, Duration::from_nanos(1)));
        if !self.idle.borrow().is_empty() {
            timeout = Some(Duration::ZERO);
        }
        if let Some(t) = self.timeouts.borrow().iter().map(|(at, _)| *at).min() {
            let d = t.saturating_duration_since(now);
            timeout = Some(timeout.map_or(d, |x| x.min(d)));
        }
        if !may_block {
            timeout = Some(Duration::ZERO);
        }
        let (lock, cv) = &*self.wake;
        let mut woken = lock.lock().unwrap();
        woken = match timeout {
            None => cv.wait_while(woken, |w| !*w).unwrap(),
            Some(d) => cv.wait_timeout_while(woken, d, |w| !*w).unwrap().0,
        };
        let was_woken = std::mem::replace(&mut *woken, false);
        drop(woken);
        let mut did = was_woken;
        let n = self.idle.borrow().len();
        for _ in 0..n {
            let f = self.idle.borrow_mut().pop_front();
            if let Some(f) = f {
                f();
                did = true;
            }
        }
        let now = Instant::now();
        let due: Vec<Native> = {
            let mut t = self.timeouts.borrow_mut();
            let (due, rest): (Vec<_>, Vec<_>) = t.drain(..).partition(|(at, _)| *at <= now);
            *t = rest;
            due.into_iter().map(|(_, f)| f).collect()
        };
        for f in due {
            f();
            did = true;
        }
        let oneloop_due = match self.armed.get() {
            Some(NextDispatch::Now) => true,
            Some(NextDispatch::At(t)) => t <= Instant::now(),
            _ => false,
        };
        if (oneloop_due || was_woken)
            && let Some(d) = self.driver.get()
        {
            d.dispatch();
            did = true;
        }
        did
    }
}

/// oneloop's source in the host.
struct HostBackend {
    host: Rc<Host>,
    attached: bool,
}

impl HostBackend {
    /// The backend's constructor: the host (which exists before the loop)
    /// learns the loop's driver here.
    fn build(host: Rc<Host>, attached: bool) -> impl FnOnce(Driver) -> io::Result<HostBackend> {
        move |driver| {
            host.driver
                .set(driver)
                .map_err(|_| io::Error::other("the host already has a loop"))?;
            Ok(HostBackend { host, attached })
        }
    }
}

impl Backend for HostBackend {
    fn name(&self) -> &str {
        "test-host"
    }
    fn arm(&self, next: NextDispatch) {
        self.host.armed.set(Some(next));
    }
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        let wake = self.host.wake.clone();
        Arc::new(move || {
            *wake.0.lock().unwrap() = true;
            wake.1.notify_one();
        })
    }
    fn turn(&self) -> io::Result<()> {
        self.host.iterate(true);
        Ok(())
    }
    fn is_attached(&self) -> bool {
        self.attached
    }
    fn clock_resolution(&self) -> Duration {
        Duration::from_micros(1)
    }
}

/// The suite's hooks into the host, and the loop (a modal helper that knows
/// oneloop unwinds when the loop is stopped from inside it, EM-04).
struct TestHostDriver(Rc<Host>, Loop);

impl HostDriver for TestHostDriver {
    fn iterate(&self, may_block: bool) -> bool {
        self.0.iterate(may_block)
    }
    fn post(&self, f: Box<dyn FnOnce()>) {
        self.0.idle.borrow_mut().push_back(f);
    }
    fn add_timeout(&self, after: Duration, f: Box<dyn FnOnce()>) {
        self.0
            .timeouts
            .borrow_mut()
            .push((Instant::now() + after, f));
    }
    fn iterate_nested(&self, until: &dyn Fn() -> bool, limit: Duration) {
        let start = Instant::now();
        while !until() && !self.0.quit.get() && !self.1.is_stopping() && start.elapsed() < limit {
            self.0.iterate(false);
            std::thread::yield_now();
        }
    }
    fn quit(&self) {
        self.0.quit.set(true);
        // The host's quit ends oneloop's run too: its defined outcome (EM-05).
        if let Ok(lp) = oneloop::get_running_loop() {
            lp.stop();
        }
    }
}

fn setup(attached: bool) -> oneloop::Result<Setup> {
    let host = Rc::new(Host::default());
    let lp: Loop = LoopBuilder::new().build_with(HostBackend::build(host.clone(), attached))?;
    Ok(Setup::with_host(lp.clone(), TestHostDriver(host, lp)))
}

fn spec(name: &'static str, attached: bool) -> AdapterSpec {
    AdapterSpec {
        name,
        setup: if attached {
            || setup(true)
        } else {
            || setup(false)
        },
        caps: Caps::THREADS | Caps::EXECUTOR | Caps::HOST,
        clock_resolution: Duration::from_millis(1),
        divergences: &[],
        main_thread: false,
    }
}

/// Every check on `spec`: no failure; returns the IDs by outcome tag.
fn run_all(spec: &AdapterSpec) -> Vec<(String, Outcome)> {
    let outcomes: Vec<(String, Outcome)> = checks()
        .iter()
        .map(|c| (c.id.to_string(), run_check(spec, c.id)))
        .collect();
    let failures: Vec<&(String, Outcome)> =
        outcomes.iter().filter(|(_, o)| o.is_failure()).collect();
    assert!(failures.is_empty(), "{}: {failures:#?}", spec.name);
    outcomes
}

fn outcome<'a>(all: &'a [(String, Outcome)], id: &str) -> &'a Outcome {
    &all.iter().find(|(i, _)| i == id).unwrap().1
}

#[test]
fn attached_host_passes_the_suite() {
    let all = run_all(&spec("test-host (attached)", true));
    for id in [
        "EM-01", "EM-02", "EM-03", "EM-07", "EM-08", "EM-10", "CB-03", "TH-01", "TK-04",
    ] {
        assert_eq!(outcome(&all, id), &Outcome::Pass, "{id}");
    }
    for id in ["LC-01", "LC-08", "ER-04", "EM-04", "EM-05", "EM-06"] {
        assert!(
            matches!(outcome(&all, id), Outcome::Ignored(_)),
            "{id} on an attached loop"
        );
    }
}

#[test]
fn owned_host_passes_the_suite() {
    let all = run_all(&spec("test-host (owned)", false));
    for id in [
        "EM-02", "EM-03", "EM-04", "EM-05", "EM-06", "EM-07", "LC-01", "LC-05",
    ] {
        assert_eq!(outcome(&all, id), &Outcome::Pass, "{id}");
    }
    assert!(matches!(outcome(&all, "EM-01"), Outcome::Ignored(_)));
}

/// A modal helper that ignores oneloop's stop cannot unwind: EM-04 catches
/// it, and a reviewed divergence turns that into an expected failure.
#[test]
fn a_nested_loop_deaf_to_stop_fails_em_04() {
    fn deaf() -> oneloop::Result<Setup> {
        let host = Rc::new(Host::default());
        let lp: Loop = LoopBuilder::new().build_with(HostBackend::build(host.clone(), false))?;
        // The helper watches a loop that is never stopped.
        Ok(Setup::with_host(lp, TestHostDriver(host, Loop::new()?)))
    }
    let mut s = spec("deaf-to-stop", false);
    s.setup = deaf;
    assert!(matches!(run_check(&s, "EM-04"), Outcome::Fail(_)));
    s.divergences = &[Divergence {
        id: "EM-04",
        reason: "the modal helper does not know about oneloop",
    }];
    assert!(matches!(
        run_check(&s, "EM-04"),
        Outcome::ExpectedFailure(_)
    ));
}
