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
//! - Every watched fd, and the wake of other threads, is in the loop's
//!   [`Selector`], a private level-triggered epoll set that tokio's reactor
//!   watches as **one** `AsyncFd` (one fd of the loop's own, however many
//!   it watches; none of the user's). tokio's reactor is edge-triggered:
//!   its readiness flag only says "select now". A select that reports fds is
//!   followed by another at the next poll (what the callbacks left unread is
//!   reported again), and only a select that finds nothing clears tokio's
//!   flag, so the next edge wakes the driver.
//! - One poll of the driver is one scheduler iteration at most: select,
//!   dispatch, re-arm.
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
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use oneloop::backend::{Driver, Interest, NextDispatch, RemoteWake};
use oneloop::native::{Selected, Selector};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::stats::Counters;

/// What the backend and its driver task share, on the loop thread.
pub(crate) struct State {
    /// The loop's side of the plug.
    pub(crate) driver: Driver,
    /// The scheduler's last `arm`.
    pub(crate) armed: Cell<NextDispatch>,
    /// The watched fds and the wake, registered with tokio as one fd.
    selector: AsyncFd<Selector>,
    /// The selector's wake (handed to the scheduler).
    pub(crate) wake: Arc<dyn RemoteWake>,
    /// Select at the next poll whatever tokio says: the last select
    /// reported fds (level), or a registration was added.
    reselect: Cell<bool>,
    /// The driver task's waker, from its last poll.
    task: RefCell<Option<Waker>>,
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
            .field("fds", &self.selector.get_ref().len())
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
        let selector = Selector::new()?;
        let wake = selector.waker();
        let selector = {
            let _enter = handle.enter();
            crate::fd::register(selector)?
        };
        Ok(State {
            driver,
            armed: Cell::new(NextDispatch::OnEvent),
            selector,
            wake,
            reselect: Cell::new(true),
            task: RefCell::new(None),
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
            self.wake_task();
        }
    }

    /// Wake the driver task.
    pub(crate) fn wake_task(&self) {
        if let Some(w) = self.task.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    fn register_task(&self, waker: &Waker) {
        let mut task = self.task.borrow_mut();
        if !task.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }

    fn wake_turn(&self) {
        if let Some(w) = self.turn_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// `Backend::watch`: one `epoll_ctl` on the selector. An fd that is
    /// ready already sends tokio no edge, so the next poll selects.
    pub(crate) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        if !interest.is_none() && self.closed.get() {
            return Err(io::Error::other("the tokio backend is closed"));
        }
        self.selector.get_ref().watch(fd, interest)?;
        if !interest.is_none() && !self.reselect.replace(true) {
            self.wake_driver();
        }
        Ok(())
    }

    /// Stop watching every fd (close).
    pub(crate) fn clear(&self) {
        self.selector.get_ref().clear();
    }

    /// Select if tokio flagged the selector or a reselect is due, reporting
    /// each ready fd to the scheduler (see the module docs).
    ///
    /// tokio's flag is cleared only after a select made under its guard
    /// reported no fd (a wake it consumed counts as drained): every event
    /// after that select carries a newer reactor tick, which
    /// `clear_ready` leaves alone, so no edge is lost even if the reactor
    /// ran on another thread. Otherwise the flag stays and the next poll
    /// selects again. Either way the waker is registered or a reselect is
    /// due when this returns.
    fn poll_selector(&self, cx: &mut Context<'_>) -> Selected {
        let driver = &self.driver;
        let select = || {
            let seen = self
                .selector
                .get_ref()
                .select(Some(Duration::ZERO), |fd, r| driver.fd_ready(fd, r));
            Counters::bump(&self.counters.selects, 1);
            // Not expected of a zero-timeout select on our own epoll fd;
            // try again at the next poll rather than lose an event.
            seen.unwrap_or_else(|_| {
                self.reselect.set(true);
                Selected::default()
            })
        };
        let due = self.reselect.replace(false);
        let mut seen = Selected::default();
        let mut selected = false;
        // Bounded: tokio's flag comes back after a clear only with a new
        // reactor event.
        for _ in 0..3 {
            match self.selector.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    let now = select();
                    selected = true;
                    seen.fds += now.fds;
                    seen.woken |= now.woken;
                    if now.fds > 0 {
                        guard.retain_ready();
                        break;
                    }
                    guard.clear_ready();
                }
                // The reactor is shutting down: the runtime ends this task.
                Poll::Ready(Err(_)) => break,
                // The waker is registered for the next edge.
                Poll::Pending => {
                    if due && !selected {
                        seen = select();
                    }
                    break;
                }
            }
        }
        if seen.fds > 0 {
            // Level-triggered: what the callbacks leave unread is reported
            // by the next select.
            self.reselect.set(true);
        }
        Counters::bump(&self.counters.fd_reports, seen.fds as u64);
        seen
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
        st.register_task(cx.waker());
        let driver = &st.driver;
        if !st.io_fresh.get() {
            // An owned turn just began: let tokio poll its reactor first, so
            // fds already ready are part of this iteration (LC-05). The turn
            // wakes us.
            return Poll::Pending;
        }
        Counters::bump(&st.counters.polls, 1);
        st.in_poll.set(true);
        let seen = unconstrained(cx, |cx| st.poll_selector(cx));
        let remote = seen.woken;
        if remote {
            Counters::bump(&st.counters.remote_wakes, 1);
        }
        let due = match st.armed.get() {
            NextDispatch::Now => true,
            NextDispatch::At(t) => t <= Instant::now(),
            NextDispatch::OnEvent => false,
        };
        if due || seen.any() {
            Counters::bump(&st.counters.dispatches, 1);
            driver.dispatch();
        }
        // Re-arm from what the scheduler asked at the end of the dispatch.
        let again = unconstrained(cx, |cx| match st.armed.get() {
            NextDispatch::Now => true,
            // Already due: tokio's wheel would round it up to its next
            // 1 ms tick.
            NextDispatch::At(t) if t <= Instant::now() => true,
            NextDispatch::At(t) => this.arm_sleep(t, cx),
            NextDispatch::OnEvent => false,
        }) || st.reselect.get();
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
            st.wake_task();
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
