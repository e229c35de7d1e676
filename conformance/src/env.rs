//! [`Env`]: what a check runs with — the fresh loop, its host, the spec, the
//! exception-handler tripwire — and the helpers that drive a loop under a
//! watchdog, owned or attached alike.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use oneloop::{Loop, RemoteLoop};

use crate::spec::{AdapterSpec, Caps, HostDriver, Setup};
use crate::support::Watchdog;

/// The exception-handler reports a loop made, as text.
pub(crate) type Reports = Rc<RefCell<Vec<String>>>;

/// What a check runs with: a fresh loop from the adapter's factory, its host
/// hooks, the spec, and a tripwire on the exception handler.
///
/// Every report that reaches the exception handler is recorded; a check that
/// expects reports takes them with [`take_reports`](Env::take_reports), and any
/// report left at the end fails the check. Every `run_*` helper runs under a
/// deadline: a missed wake-up fails the check with its ID instead of hanging.
pub struct Env {
    id: &'static str,
    spec: AdapterSpec,
    lp: Loop,
    host: Option<Rc<dyn HostDriver>>,
    reports: Reports,
    deadline: Duration,
    /// What [`skip_part`](Env::skip_part) recorded.
    skipped_parts: RefCell<Vec<String>>,
}

/// The unwind payload of [`Env::skip`]: the runner turns it into
/// [`Outcome::Skipped`](crate::Outcome::Skipped).
pub(crate) struct Skip(pub(crate) String);

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("id", &self.id)
            .field("spec", &self.spec.name)
            .field("lp", &self.lp)
            .field("host", &self.host.is_some())
            .finish()
    }
}

impl Env {
    /// An environment for check `id` around a fresh `setup` of `spec`; every
    /// `run_*` helper fails after `deadline`.
    pub fn new(id: &'static str, spec: &AdapterSpec, setup: Setup, deadline: Duration) -> Env {
        let reports: Reports = Rc::default();
        install_tripwire(&setup.lp, &reports);
        Env {
            id,
            spec: spec.clone(),
            lp: setup.lp,
            host: setup.host.map(Rc::from),
            reports,
            deadline,
            skipped_parts: RefCell::new(Vec::new()),
        }
    }

    /// The ID of the check being run.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// The loop under test.
    pub fn lp(&self) -> &Loop {
        &self.lp
    }

    /// The host hooks, if the adapter gave any.
    pub fn host(&self) -> Option<&dyn HostDriver> {
        self.host.as_deref()
    }

    /// The host hooks, shared, for callbacks that iterate or poke the host.
    pub fn shared_host(&self) -> Option<Rc<dyn HostDriver>> {
        self.host.clone()
    }

    /// The host hooks of a check that requires [`Caps::HOST`].
    ///
    /// # Panics
    /// If the adapter declares `host` but its setup gave no [`HostDriver`].
    pub fn host_driver(&self) -> &dyn HostDriver {
        match self.host.as_deref() {
            Some(h) => h,
            None => panic!(
                "{} declares the host capability but its setup gave no HostDriver",
                self.spec.name
            ),
        }
    }

    /// The adapter's declaration.
    pub fn spec(&self) -> &AdapterSpec {
        &self.spec
    }

    /// Whether the adapter declares all of `caps`.
    pub fn has(&self, caps: Caps) -> bool {
        self.spec.caps.contains(caps)
    }

    /// Whether the loop is attached to a host that runs it.
    pub fn is_attached(&self) -> bool {
        self.lp.is_attached()
    }

    /// How long one `run_*` helper may take before the check fails.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Another fresh setup from the adapter's factory, with the tripwire
    /// installed on its loop too.
    ///
    /// # Errors
    /// Whatever the adapter's setup fails with.
    pub fn new_setup(&self) -> oneloop::Result<Setup> {
        let setup = (self.spec.setup)()?;
        install_tripwire(&setup.lp, &self.reports);
        Ok(setup)
    }

    /// Put the tripwire back on the loop under test (after a check replaced
    /// the exception handler).
    pub fn reinstall_tripwire(&self) {
        install_tripwire(&self.lp, &self.reports);
    }

    /// End the check here: it cannot run on this system, for `reason` (no
    /// pseudo-terminal, no `/proc`, a kernel that took another path). The
    /// check is reported [skipped](crate::Outcome::Skipped) with the reason,
    /// never as a pass: the Harness shows it as ignored, the `suite!` test
    /// prints `skipped: <reason>`, and the report counts it as skipped.
    ///
    /// Call it from the check's own body, not from inside a loop callback or
    /// task (the loop catches unwinding callbacks and reports them to the
    /// exception handler, which fails the check).
    pub fn skip(&self, reason: impl Into<String>) -> ! {
        // `resume_unwind` does not run the panic hook: nothing is printed
        // or captured as a failure; the runner recognises the payload.
        std::panic::resume_unwind(Box::new(Skip(format!("{}: {}", self.id, reason.into()))))
    }

    /// Record that one part of the guarantee cannot be checked on this
    /// system, for `reason`, and go on with the rest. If the rest passes,
    /// the check is reported [skipped](crate::Outcome::Skipped) ("only
    /// partly checked"), with every recorded reason, not as a pass; if the
    /// rest fails, it fails.
    pub fn skip_part(&self, reason: impl Into<String>) {
        self.skipped_parts.borrow_mut().push(reason.into());
    }

    /// The reasons [`skip_part`](Env::skip_part) recorded, taken.
    pub(crate) fn take_skipped_parts(&self) -> Vec<String> {
        std::mem::take(&mut *self.skipped_parts.borrow_mut())
    }

    /// Take the reports the exception handler received so far: a check that
    /// expects reports takes them, so that they do not trip the check.
    pub fn take_reports(&self) -> Vec<String> {
        std::mem::take(&mut *self.reports.borrow_mut())
    }

    /// Run the loop until `future` completes and return its output, on an
    /// owned loop with `run_until_complete`, on an attached one by iterating
    /// the host.
    ///
    /// # Panics
    /// If the future does not complete within the deadline (a missed
    /// wake-up), or the run fails.
    pub fn run_until<F: StdFuture>(&self, future: F) -> F::Output {
        let timed_out = Rc::new(Cell::new(false));
        let deadline_timer = self
            .lp
            .call_later(self.deadline, {
                let lp = self.lp.clone();
                let timed_out = timed_out.clone();
                move || {
                    timed_out.set(true);
                    if !lp.is_attached() {
                        lp.stop();
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot arm the deadline timer: {e}"));
        let watchdog =
            Watchdog::stop_remote(self.lp.remote(), self.deadline + Duration::from_secs(1));
        let out = if self.lp.is_attached() {
            self.drive_attached(future, &timed_out)
        } else {
            match self.lp.run_until_complete(future) {
                Ok(out) => Some(out),
                Err(e) if timed_out.get() || watchdog.fired() => {
                    let _ = e;
                    None
                }
                Err(e) => panic!("run_until_complete failed: {e}"),
            }
        };
        deadline_timer.cancel();
        let fired = watchdog.fired();
        drop(watchdog);
        // A result that only came with the deadline's own wake-up is late.
        match out.filter(|_| !timed_out.get() && !fired) {
            Some(out) => out,
            None => panic!(
                "timed out after {:?}{}: the loop missed a wake-up or the awaited event never came",
                self.deadline,
                if fired {
                    " (the in-loop deadline timer did not even fire: the watchdog thread stopped the loop)"
                } else {
                    ""
                }
            ),
        }
    }

    fn drive_attached<F: StdFuture>(&self, future: F, timed_out: &Cell<bool>) -> Option<F::Output> {
        let host = self.host_driver();
        let flag = Arc::new(RootWake {
            woken: AtomicBool::new(true),
            remote: self.lp.remote(),
        });
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        let start = Instant::now();
        loop {
            if flag.woken.swap(false, Ordering::AcqRel)
                && let Poll::Ready(out) = future.as_mut().poll(&mut cx)
            {
                return Some(out);
            }
            if timed_out.get() || start.elapsed() > self.deadline + Duration::from_secs(1) {
                return None;
            }
            host.iterate(true);
        }
    }

    /// Run until every callback queued so far has run (one sentinel
    /// `call_soon` behind them).
    pub fn run_briefly(&self) {
        let fut = self.lp.create_future::<()>();
        let done = fut.clone();
        self.lp
            .call_soon(move || {
                let _ = done.set_result(());
            })
            .unwrap_or_else(|e| panic!("call_soon failed: {e}"));
        let _ = self.run_until(fut);
    }

    /// Run the loop for `d` (until a `d` sleep completes).
    pub fn run_for(&self, d: Duration) {
        self.run_until(oneloop::sleep(d))
            .unwrap_or_else(|e| panic!("sleep failed: {e}"));
    }

    /// Run the loop until `pred` holds, checking it every millisecond (on
    /// the loop's own timers, so an idle loop stays idle in between).
    ///
    /// # Panics
    /// If `pred` does not hold within the deadline.
    pub fn run_until_true(&self, pred: impl Fn() -> bool) {
        self.run_until(async {
            while !pred() {
                oneloop::sleep(Duration::from_millis(1))
                    .await
                    .unwrap_or_else(|e| panic!("sleep failed: {e}"));
            }
        });
    }

    /// `run_forever` on an owned loop, under the deadline.
    ///
    /// # Panics
    /// If the loop is attached, or `stop()` does not end the run within the
    /// deadline.
    pub fn run_forever(&self) -> oneloop::Result<()> {
        assert!(!self.lp.is_attached(), "run_forever on an attached loop");
        let timed_out = Rc::new(Cell::new(false));
        let deadline_timer = self
            .lp
            .call_later(self.deadline, {
                let lp = self.lp.clone();
                let timed_out = timed_out.clone();
                move || {
                    timed_out.set(true);
                    lp.stop();
                }
            })
            .unwrap_or_else(|e| panic!("cannot arm the deadline timer: {e}"));
        let watchdog =
            Watchdog::stop_remote(self.lp.remote(), self.deadline + Duration::from_secs(1));
        let r = self.lp.run_forever();
        deadline_timer.cancel();
        assert!(
            !timed_out.get() && !watchdog.fired(),
            "run_forever did not return within {:?} (stop() lost or the loop missed a wake-up)",
            self.deadline
        );
        r
    }

    /// Close the loop if it is open (teardown).
    pub(crate) fn teardown(&self) -> oneloop::Result<()> {
        if self.lp.is_closed() {
            Ok(())
        } else {
            self.lp.close()
        }
    }
}

fn install_tripwire(lp: &Loop, reports: &Reports) {
    let reports = reports.clone();
    lp.set_exception_handler(Some(move |_: &Loop, ctx: &oneloop::ExceptionContext| {
        reports.borrow_mut().push(ctx.to_string());
    }));
}

/// The waker of a future the suite polls itself on an attached loop.
struct RootWake {
    woken: AtomicBool,
    remote: RemoteLoop,
}

impl Wake for RootWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.remote.wake();
        }
    }
}

/// A shared, thread-safe log of events, for checks that record an order.
#[derive(Debug, Clone, Default)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Log<T> {
    /// An empty log.
    pub fn new() -> Log<T> {
        Log(Arc::new(Mutex::new(Vec::new())))
    }

    /// Append `v`.
    pub fn push(&self, v: T) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }

    /// A copy of the entries so far.
    pub fn get(&self) -> Vec<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// CPU time this thread has used, where the OS tells (Linux
/// `/proc/thread-self/schedstat`, nanoseconds); `None` elsewhere.
///
/// The spin checks (TM-07, TM-08, FD-05) compare it with wall time: a loop
/// that busy-polls burns CPU for the whole wait, an idle one almost none.
pub fn thread_cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The CPU time this thread used during `f`, and the wall time; `None` for
/// the CPU time where the OS does not tell, after recording with
/// [`Env::skip_part`] that the no-spin half of the check is not checked.
pub(crate) fn cpu_and_wall(env: &Env, f: impl FnOnce()) -> (Option<Duration>, Duration) {
    let cpu0 = thread_cpu_time();
    let wall = Instant::now();
    f();
    let wall = wall.elapsed();
    let cpu = cpu0
        .zip(thread_cpu_time())
        .map(|(a, b)| b.saturating_sub(a));
    if cpu.is_none() {
        env.skip_part(
            "no per-thread CPU time on this platform (/proc/thread-self/schedstat): \
             the no-spin half is not checked",
        );
    }
    (cpu, wall)
}
