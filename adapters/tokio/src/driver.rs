//! The one native task that runs oneloop on tokio.
//!
//! # Invariants
//!
//! - Exactly one tokio task (the [`DriverTask`], a `spawn_local` on the
//!   `LocalSet` or `LocalRuntime`) calls [`Driver::dispatch`]. oneloop's ready
//!   queue, timers and fd registry stay in the scheduler: never a tokio task
//!   per callback (PERFORMANCE.md: 18 ns vs 166 ns per callback) and never a
//!   tokio timer per oneloop timer (one `Sleep`, reset to the earliest
//!   deadline).
//! - One poll of the driver is one scheduler iteration at most: settle the
//!   fds reported last time, report the fds tokio woke, dispatch, re-arm.
//!   With more work queued it yields exactly as a tokio task awaiting
//!   `yield_now()` does (its wake is deferred until tokio has run the other
//!   ready tasks and polled its reactor), so tokio tasks on the same
//!   `LocalSet`, and tokio's I/O, get their turn between batches: neither
//!   side starves the other.
//! - The adapter's own bookkeeping (readiness polls, the wake fd, the
//!   `Sleep`) runs outside tokio's cooperative budget, so a batch of oneloop
//!   tasks that spent the budget cannot make the adapter lose an edge.
//!   Callbacks and task steps run under the budget of the driver's poll,
//!   as any tokio task's code does.
//! - `State` holds no `RefCell` borrow while `dispatch` runs user code, so
//!   callbacks may call `watch`/`arm` (they do, through `Loop`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use oneloop::backend::{Driver, NextDispatch};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::fd::{FdWake, FdWatch, Signal, probe_all};
use crate::stats::Counters;
use crate::wake::{WakeFd, WakeReceiver};

/// What the backend and its driver task share, on the loop thread.
pub(crate) struct State {
    /// The loop's side of the plug.
    pub(crate) driver: Driver,
    /// The scheduler's last `arm`.
    pub(crate) armed: Cell<NextDispatch>,
    /// Fd wake-ups and the driver task's waker.
    pub(crate) signal: Arc<Signal>,
    /// Watched fds by the scheduler's fd number.
    pub(crate) fds: RefCell<HashMap<RawFd, FdWatch>>,
    /// Fds reported in the last dispatch, to settle (probe) in the next poll.
    reported: RefCell<Vec<Arc<FdWake>>>,
    /// The cross-thread wake, write end (handed to the scheduler).
    pub(crate) wake: Arc<WakeFd>,
    /// The cross-thread wake, read end.
    wake_rx: WakeReceiver,
    /// The driver task is inside its poll (no need to wake it).
    in_poll: Cell<bool>,
    /// Owned mode: tokio has polled its reactor since this turn began.
    pub(crate) io_fresh: Cell<bool>,
    /// What the driver did (remote wakes end an owned turn).
    pub(crate) counters: Rc<Counters>,
    /// Owned mode: the `block_on` future of the current turn.
    pub(crate) turn_waker: RefCell<Option<Waker>>,
    /// `close()` ran: the driver task ends.
    pub(crate) closed: Cell<bool>,
    /// The runtime the fds are registered with.
    pub(crate) handle: tokio::runtime::Handle,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("armed", &self.armed.get())
            .field("fds", &self.fds.borrow().len())
            .field("closed", &self.closed.get())
            .finish()
    }
}

impl State {
    /// New state for a loop on the runtime of `handle`.
    pub(crate) fn new(
        handle: tokio::runtime::Handle,
        driver: Driver,
        counters: Rc<Counters>,
    ) -> io::Result<State> {
        let (wake, wake_rx) = {
            let _enter = handle.enter();
            crate::wake::pair()?
        };
        Ok(State {
            driver,
            armed: Cell::new(NextDispatch::OnEvent),
            signal: Arc::new(Signal::default()),
            fds: RefCell::new(HashMap::new()),
            reported: RefCell::new(Vec::new()),
            wake,
            wake_rx,
            in_poll: Cell::new(false),
            io_fresh: Cell::new(true),
            counters,
            turn_waker: RefCell::new(None),
            closed: Cell::new(false),
            handle,
        })
    }

    /// Whether a dispatch would run callbacks.
    pub(crate) fn is_live(&self) -> bool {
        self.driver.is_live()
    }

    /// Make the driver task run soon (from outside its poll).
    pub(crate) fn wake_driver(&self) {
        if !self.in_poll.get() {
            self.signal.task.wake();
        }
    }

    fn wake_turn(&self) {
        if let Some(w) = self.turn_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Probe the fds reported last time; clear what is drained, queue again
    /// what is still ready (level-triggered).
    fn settle(&self) {
        let reported = std::mem::take(&mut *self.reported.borrow_mut());
        if reported.is_empty() {
            return;
        }
        let fds = self.fds.borrow();
        let watches: Vec<&FdWatch> = reported
            .iter()
            .filter_map(|w| fds.get(&w.fd).filter(|f| Arc::ptr_eq(&f.wake, w)))
            .collect();
        let revents = probe_all(&watches);
        Counters::bump(&self.counters.probes, 1);
        for (watch, revents) in watches.iter().zip(revents) {
            if watch.settle(revents) {
                watch.wake.schedule();
            }
        }
    }

    /// Report every fd tokio woke (and every fd still ready) to the
    /// scheduler; remember them for the next `settle`.
    fn collect(&self, driver: &Driver) {
        let woken = self.signal.take();
        if woken.is_empty() {
            return;
        }
        let mut ready = Vec::with_capacity(woken.len());
        {
            let fds = self.fds.borrow();
            for w in woken {
                w.taken();
                let Some(watch) = fds.get(&w.fd).filter(|f| Arc::ptr_eq(&f.wake, &w)) else {
                    continue;
                };
                let r = watch.readiness();
                if r.readable || r.writable || r.hangup {
                    ready.push((w, r));
                }
            }
        }
        Counters::bump(&self.counters.fd_reports, ready.len() as u64);
        let mut reported = self.reported.borrow_mut();
        for (w, r) in ready {
            driver.fd_ready(w.fd, r);
            reported.push(w);
        }
    }
}

/// The driver task: one per loop, see the module docs.
pub(crate) struct DriverTask {
    state: Rc<State>,
    /// The single timer.
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to.
    sleep_at: Option<Instant>,
}

impl fmt::Debug for DriverTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverTask")
            .field("sleep_at", &self.sleep_at)
            .finish()
    }
}

impl DriverTask {
    /// A driver for `state`. Must run inside the runtime's context: the
    /// `Sleep` is made here, which fails loudly on a runtime without timers.
    pub(crate) fn new(state: Rc<State>) -> DriverTask {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        DriverTask {
            state,
            sleep: Box::pin(tokio::time::sleep_until(far)),
            sleep_at: None,
        }
    }

    /// Point the `Sleep` at `when` and register for it; true if it is
    /// already due.
    fn arm_sleep(&mut self, when: Instant, cx: &mut Context<'_>) -> bool {
        // tokio's wheel spans ~2 years; a later deadline wakes early, finds
        // nothing due, and re-arms (TM-07).
        let cap = Instant::now() + Duration::from_secs(86_400 * 365);
        let at = tokio::time::Instant::from_std(when.min(cap));
        if self.sleep_at != Some(when) || self.sleep.is_elapsed() {
            self.sleep.as_mut().reset(at);
            self.sleep_at = Some(when);
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }
}

impl Future for DriverTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let st = this.state.clone();
        if st.closed.get() {
            return Poll::Ready(());
        }
        st.signal.task.register(cx.waker());
        let driver = &st.driver;
        if !st.io_fresh.get() {
            // An owned turn just began: let tokio poll its reactor first, so
            // fds already ready are part of this iteration (LC-05). The turn
            // wakes us.
            return Poll::Pending;
        }
        Counters::bump(&st.counters.polls, 1);
        st.in_poll.set(true);
        let remote = unconstrained(cx, |cx| {
            let remote = st.wake_rx.poll_take(cx);
            if st.is_live() {
                st.settle();
                st.collect(driver);
            }
            remote
        });
        if remote {
            Counters::bump(&st.counters.remote_wakes, 1);
        }
        let due = match st.armed.get() {
            NextDispatch::Now => true,
            NextDispatch::At(t) => t <= Instant::now(),
            NextDispatch::OnEvent => false,
        };
        if due || remote || !st.reported.borrow().is_empty() {
            Counters::bump(&st.counters.dispatches, 1);
            driver.dispatch();
        }
        // Re-arm from what the scheduler asked at the end of the dispatch.
        let again = unconstrained(cx, |cx| match st.armed.get() {
            NextDispatch::Now => true,
            NextDispatch::At(t) => this.arm_sleep(t, cx),
            NextDispatch::OnEvent => false,
        }) || !st.reported.borrow().is_empty()
            || st.signal.has_fds();
        st.in_poll.set(false);
        if remote || !st.is_live() {
            st.wake_turn();
        }
        if st.closed.get() {
            return Poll::Ready(());
        }
        if again {
            yield_to_tokio(cx);
        }
        Poll::Pending
    }
}

/// Be polled again after tokio has run its other ready tasks and polled its
/// reactor, exactly as a tokio task awaiting `yield_now()` is: a plain
/// self-wake would put the driver back in the `LocalSet`'s queue and run up
/// to 61 batches per reactor poll.
fn yield_to_tokio(cx: &mut Context<'_>) {
    let mut yielded = std::pin::pin!(tokio::task::yield_now());
    // The first poll defers our waker to tokio and is always pending.
    let _ = yielded.as_mut().poll(cx);
}

/// Run `f` outside tokio's cooperative budget (the adapter's bookkeeping
/// must not be refused by a budget that user code spent).
fn unconstrained<R>(cx: &mut Context<'_>, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
    let mut f = Some(f);
    let mut fut = std::pin::pin!(tokio::task::unconstrained(std::future::poll_fn(
        |cx| match f.take() {
            Some(f) => Poll::Ready(f(cx)),
            None => Poll::Pending,
        }
    )));
    match fut.as_mut().poll(cx) {
        Poll::Ready(r) => r,
        Poll::Pending => unreachable!("a poll_fn that returns Ready on its first poll"),
    }
}

/// The future of one owned-mode turn: runs the `LocalSet` until the loop
/// halts (after `stop()`) or a remote wake arrives (it may be for the root
/// future of `run_until_complete`, which the scheduler polls between turns).
pub(crate) struct Turn<'a> {
    pub(crate) state: &'a State,
    pub(crate) task: &'a RefCell<Option<JoinHandle<()>>>,
    pub(crate) start: u64,
    pub(crate) primed: bool,
}

impl Future for Turn<'_> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let st = self.state;
        if !self.primed {
            // First poll: yield once so tokio polls its reactor before the
            // driver's first dispatch of this turn.
            self.primed = true;
            st.io_fresh.set(false);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if !st.io_fresh.replace(true) {
            st.signal.task.wake();
        }
        let ended = {
            let mut task = self.task.borrow_mut();
            match task.as_mut().map(|h| Pin::new(h).poll(cx)) {
                Some(Poll::Ready(end)) => {
                    *task = None;
                    Some(end)
                }
                _ => None,
            }
        };
        if let Some(end) = ended {
            // The driver never ends while the loop is open: it panicked
            // (a bug in this adapter) or was cancelled.
            let why = match end {
                Err(e) if e.is_panic() => {
                    format!("panicked: {}", panic_message(&*e.into_panic()))
                }
                Err(e) => e.to_string(),
                Ok(()) => "ended".to_owned(),
            };
            return Poll::Ready(Err(io::Error::other(format!(
                "the oneloop driver task {why}"
            ))));
        }
        if st.counters.remote_wakes.get() != self.start || !st.is_live() {
            return Poll::Ready(Ok(()));
        }
        *st.turn_waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}
