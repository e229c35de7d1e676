//! The driver that runs oneloop on tokio: a future that selects, dispatches
//! and re-arms, polled as **one** native task (attached) or as the future
//! each owned turn blocks on (owned).
//!
//! # Invariants
//!
//! - Exactly one future (a [`DriverTask`] spawned on the host's `LocalSet`
//!   or `LocalRuntime` when attached, the owned [`Turn`](crate::turn::Turn) of the current
//!   `run_*` when owned) calls [`Driver::dispatch`]. oneloop's ready queue,
//!   timers and fd registry stay in the scheduler: never a tokio task per
//!   callback (PERFORMANCE.md: 18 ns vs 166 ns per callback) and never a
//!   tokio timer per oneloop timer (one `Sleep`, reset to the earliest
//!   deadline).
//! - Owned, the driver is polled by the root future of the turn's
//!   `block_on` ([`Turn`](crate::turn::Turn)), not a task on the
//!   `LocalSet`: tokio polls it when its waker is woken, which spares every
//!   iteration the `LocalSet`'s scheduling of a task (its queue, the task's
//!   state transitions, its join handle).
//! - Every watched fd, and the wake of other threads, is in the loop's
//!   [`Selector`], a private level-triggered epoll set that tokio's reactor
//!   watches as **one** `AsyncFd` (one fd of the loop's own, however many
//!   it watches; none of the user's). tokio's reactor is edge-triggered:
//!   its readiness flag only says "select now", and only a select that
//!   finds nothing clears it, so the next edge wakes the driver.
//! - Level triggering: after an iteration whose select reported fds, the
//!   driver selects again **at once** (what the callbacks left unread is
//!   reported again, for the next iteration), rather than after another
//!   turn of tokio's reactor: with one event per wake-up (a request, a
//!   reply) that second look finds nothing, clears tokio's flag, and the
//!   driver sleeps after one tokio turn instead of two.
//! - One poll of the driver is one scheduler iteration at most: select,
//!   dispatch, re-arm. With more work queued (or owed: the second look
//!   reported fds) it yields exactly as a tokio task awaiting
//!   `yield_now()` does (its wake is deferred until tokio has run the other
//!   ready tasks and polled its reactor), so tokio tasks on the same
//!   `LocalSet`, and tokio's I/O, get their turn between batches: neither
//!   side starves the other.
//! - The adapter's own bookkeeping (readiness polls, the wake fd, the
//!   `Sleep`) is never refused by tokio's cooperative budget, so a batch of
//!   oneloop tasks that spent the budget cannot make the adapter lose an
//!   edge: what follows the dispatch runs outside the budget
//!   (`unconstrained`), and the readiness poll before it needs not, since
//!   tokio gives every task poll, and every poll of a `block_on`'s future,
//!   a fresh budget. Callbacks and task steps run under the budget of the
//!   driver's poll, as any tokio task's code does.
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

use oneloop::backend::{Dispatch, Driver, Interest, NextDispatch, RemoteWake};
use oneloop::native::{Selected, Selector};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
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
    pub(crate) reselect: Cell<bool>,
    /// An iteration is owed: the select after the last one reported fds
    /// or consumed a wake, already handed to the scheduler.
    owed: Cell<bool>,
    /// The driver's waker, from its last poll.
    task: RefCell<Option<Waker>>,
    /// The driver is inside its poll (no need to wake it).
    in_poll: Cell<bool>,
    /// What the driver did (remote wakes end an owned turn).
    pub(crate) counters: Rc<Counters>,
    /// `close()` ran: the driver ends.
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
            owed: Cell::new(false),
            task: RefCell::new(None),
            in_poll: Cell::new(false),
            counters,
            closed: Cell::new(false),
            handle,
        })
    }

    /// Whether the run halted (after `stop()`, or a panic under
    /// `PanicPolicy::Propagate`). The dispatch that halts it arms `Now`
    /// last, so only then is the loop asked.
    pub(crate) fn halted(&self) -> bool {
        self.armed.get() == NextDispatch::Now && !self.driver.is_live()
    }

    /// Make the driver run soon (from outside its poll).
    pub(crate) fn wake_driver(&self) {
        if !self.in_poll.get() {
            self.wake_task();
        }
    }

    /// Wake the driver.
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

    /// One zero-timeout select, reporting each ready fd to the scheduler.
    // This, `poll_selector` and `select_again` are always inlined: on the
    // per-event path their calls (the registers each saves and restores)
    // cost about as much as their own work (−70 instructions per echo
    // request, `bench_icount`).
    #[inline(always)]
    fn select_now(&self, lp: Option<&dyn Dispatch>) -> Selected {
        let seen = self
            .selector
            .get_ref()
            .select(Some(Duration::ZERO), |fd, r| {
                if let Some(lp) = lp {
                    lp.fd_ready(fd, r);
                }
            });
        Counters::bump(&self.counters.selects, 1);
        // Not expected of a zero-timeout select on our own epoll fd; try
        // again at the next poll rather than lose an event.
        let seen = seen.unwrap_or_else(|_| {
            self.reselect.set(true);
            Selected::default()
        });
        if seen.fds > 0 {
            // Level-triggered: what the callbacks leave unread is reported
            // by the next select.
            self.reselect.set(true);
        }
        Counters::bump(&self.counters.fd_reports, seen.fds as u64);
        seen
    }

    /// Select if tokio flagged the selector or a reselect is due (see the
    /// module docs).
    ///
    /// tokio's flag is cleared only after a select made under its guard
    /// reported no fd (a wake it consumed counts as drained): every event
    /// after that select carries a newer reactor tick, which
    /// `clear_ready` leaves alone, so no edge is lost even if the reactor
    /// ran on another thread. When the select reported fds, the flag stays
    /// set and its guard is handed back, for [`select_again`] to clear
    /// without asking tokio again. Either way the waker is registered or a
    /// reselect is due when this returns.
    ///
    /// [`select_again`]: State::select_again
    #[inline(always)]
    fn poll_selector(
        &self,
        lp: Option<&dyn Dispatch>,
        cx: &mut Context<'_>,
    ) -> (Selected, Option<Flag<'_>>) {
        let due = self.reselect.replace(false);
        let mut seen = Selected::default();
        let mut selected = false;
        // Bounded: tokio's flag comes back after a clear only with a new
        // reactor event.
        for _ in 0..3 {
            match self.selector.poll_read_ready(cx) {
                Poll::Ready(Ok(mut flag)) => {
                    let now = self.select_now(lp);
                    selected = true;
                    seen.fds += now.fds;
                    seen.woken |= now.woken;
                    if now.fds > 0 {
                        return (seen, Some(flag));
                    }
                    flag.clear_ready();
                }
                // The reactor is shutting down: the runtime ends the driver.
                Poll::Ready(Err(_)) => break,
                // The waker is registered for the next edge.
                Poll::Pending => {
                    if due && !selected {
                        seen = self.select_now(lp);
                    }
                    break;
                }
            }
        }
        (seen, None)
    }

    /// The select right after an iteration whose select reported fds (or
    /// added one): reports what is still ready, for the next iteration, or
    /// clears tokio's flag (under `flag`, the guard of the select before
    /// the iteration, if it had one) and registers the waker.
    #[inline(always)]
    fn select_again(
        &self,
        lp: Option<&dyn Dispatch>,
        flag: Option<Flag<'_>>,
        cx: &mut Context<'_>,
    ) -> Selected {
        let Some(mut flag) = flag else {
            // Dropping a guard leaves tokio's flag set.
            return self.poll_selector(lp, cx).0;
        };
        self.reselect.set(false);
        let now = self.select_now(lp);
        if now.fds > 0 {
            return now;
        }
        flag.clear_ready();
        drop(flag);
        // Register the waker for the next edge (or select one that came
        // meanwhile).
        let (mut more, _kept) = self.poll_selector(lp, cx);
        more.woken |= now.woken;
        more
    }
}

/// tokio's readiness flag on the selector, held between a select that
/// reported fds and the one after the iteration.
type Flag<'a> = AsyncFdReadyGuard<'a, Selector>;

/// The driver's one timer: a `Sleep` reset to the earliest armed deadline.
pub(crate) struct DriverTimer {
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to.
    sleep_at: Option<Instant>,
}

impl fmt::Debug for DriverTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverTimer")
            .field("sleep_at", &self.sleep_at)
            .finish()
    }
}

impl DriverTimer {
    /// A timer far away. Must run inside the runtime's context: the
    /// `Sleep` is made here, which fails loudly on a runtime without timers.
    pub(crate) fn new() -> DriverTimer {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        DriverTimer {
            sleep: Box::pin(tokio::time::sleep_until(far)),
            sleep_at: None,
        }
    }

    /// Point the `Sleep` at `when` and register for it; true if it is
    /// already due.
    fn arm(&mut self, when: Instant, cx: &mut Context<'_>) -> bool {
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

impl State {
    /// One poll of the driver (see the module docs): select, dispatch if
    /// anything is due, look again if the select reported fds, re-arm.
    pub(crate) fn drive(&self, timer: &mut DriverTimer, cx: &mut Context<'_>) -> Driven {
        if self.closed.get() {
            return Driven {
                closed: true,
                remote: false,
            };
        }
        self.register_task(cx.waker());
        Counters::bump(&self.counters.polls, 1);
        self.in_poll.set(true);
        // The loop, upgraded once for this poll's reports and dispatch.
        let target = self.driver.target();
        let lp = target.as_deref();
        // No budget of tokio's to step outside of yet: tokio gives every
        // task poll, and every poll of a `block_on`'s future, a fresh one.
        let (seen, flag) = self.poll_selector(lp, cx);
        let mut remote = seen.woken;
        let owed = self.owed.replace(false);
        let due = match self.armed.get() {
            NextDispatch::Now => true,
            NextDispatch::At(t) => t <= Instant::now(),
            NextDispatch::OnEvent => false,
        };
        if due || seen.any() || owed {
            Counters::bump(&self.counters.dispatches, 1);
            if let Some(lp) = lp {
                lp.dispatch();
            }
            if self.reselect.get() {
                // The select reported fds (or one was added): look again
                // now, so that the flag of tokio's edge-triggered reactor
                // is cleared (or the fds still ready reported, for the next
                // iteration) without another turn of tokio.
                let more = unconstrained(cx, |cx| self.select_again(lp, flag, cx));
                remote |= more.woken;
                self.owed.set(more.any());
            }
        }
        if remote {
            Counters::bump(&self.counters.remote_wakes, 1);
        }
        // Re-arm from what the scheduler asked at the end of the dispatch.
        let again = match self.armed.get() {
            NextDispatch::Now => true,
            // Already due: tokio's wheel would round it up to its next
            // 1 ms tick.
            NextDispatch::At(t) if t <= Instant::now() => true,
            NextDispatch::At(t) => unconstrained(cx, |cx| timer.arm(t, cx)),
            NextDispatch::OnEvent => false,
        } || self.owed.get();
        self.in_poll.set(false);
        let closed = self.closed.get();
        if again && !closed {
            yield_to_tokio(cx);
        }
        Driven { closed, remote }
    }
}

/// What one poll of the driver saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Driven {
    /// The loop was closed: the driver ends.
    pub(crate) closed: bool,
    /// It consumed a remote wake.
    pub(crate) remote: bool,
}

/// The attached driver: the one task a loop spawns on its host's
/// `LocalSet`/`LocalRuntime`, polled by tokio like any local task.
pub(crate) struct DriverTask {
    state: Rc<State>,
    timer: DriverTimer,
}

impl fmt::Debug for DriverTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverTask")
            .field("timer", &self.timer)
            .finish()
    }
}

impl DriverTask {
    /// A driver for `state`. Must run inside the runtime's context (see
    /// [`DriverTimer::new`]).
    pub(crate) fn new(state: Rc<State>) -> DriverTask {
        DriverTask {
            state,
            timer: DriverTimer::new(),
        }
    }
}

impl Future for DriverTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.state.drive(&mut this.timer, cx).closed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Be polled again after tokio has run its other ready tasks and polled its
/// reactor, exactly as a tokio task awaiting `yield_now()` is: a plain
/// self-wake would put the driver back in the `LocalSet`'s queue and run up
/// to 61 batches per reactor poll.
pub(crate) fn yield_to_tokio(cx: &mut Context<'_>) {
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
