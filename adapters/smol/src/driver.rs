//! The one native driver: a future, run as one task on a `LocalExecutor`,
//! that waits for what the scheduler armed and calls
//! [`Driver::dispatch`](oneloop::backend::Driver::dispatch).
//!
//! # What wakes it
//! - `arm(Now)`: the scheduler has ready callbacks; the backend wakes the
//!   task directly (it is on the loop thread).
//! - one `async_io::Timer`, set to the earliest armed deadline;
//! - the loop's [`Selector`], registered with async-io's reactor as one
//!   `Async`: readable when a watched fd is ready or a
//!   `call_soon_threadsafe` wrote its wake eventfd. async-io registers
//!   oneshot; the selector itself is level-triggered.
//!
//! # Invariants
//! - Reported fds reach the scheduler before the `dispatch` that runs
//!   them. Level-triggered: after an iteration whose select reported fds,
//!   the driver selects again at once; what is still ready is reported for
//!   the next iteration (owed: the task wakes itself), and only a select
//!   that finds nothing leaves the wait to the reactor. A registration
//!   change, or a new owned turn, selects at once too.
//! - The selector's oneshot registration is re-armed after the iteration,
//!   not before: re-armed while the callbacks had not yet read what was
//!   reported, the selector's fd (readable while any watched fd is) would
//!   make the reactor wake the task again for nothing. So one event per
//!   wake-up is one reactor turn and one poll of the task.
//! - Every poll that dispatches returns `Pending` afterwards: more work
//!   re-wakes the task (`arm(Now)`), so the executor's other tasks run
//!   between two oneloop iterations (fair interleaving), and `block_on`
//!   gets to poll the reactor in between.
//! - No `RefCell` borrow is held across `dispatch`: callbacks re-enter the
//!   backend (`arm`, `watch`) freely.
//! - Owned mode: the driver dispatches only while a `turn()` is open. A
//!   turn lasts until the run halts (`stop()`) or a remote wake arrives
//!   (which is how `run_until_complete`'s root future is woken), so a run
//!   stays inside one `async_io::block_on` for as long as it can: this
//!   thread drives the reactor whenever it is idle, and async-io's fallback
//!   thread (which steps in when no `block_on` drives the reactor) mostly
//!   stays out of the way.
//! - Owned mode: the first iteration of every turn selects with a zero
//!   timeout whatever the reactor said, because async-io's fallback thread
//!   may hold the reactor when a run starts: a pre-stopped run still sees
//!   the I/O that is ready (LC-05).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Weak;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use oneloop::backend::{Dispatch, Driver, Interest, NextDispatch, RemoteWake};
use oneloop::native::{Selected, Selector};

/// Whether the driver may dispatch (owned mode gates it to `turn()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Attached: dispatch whenever something is due.
    Open,
    /// Owned, between turns: hold events until the next turn.
    Closed,
    /// Owned, inside a turn.
    Turn,
}

/// The state the backend and its driver task share, on the loop thread.
pub(crate) struct Core {
    /// The loop's side of the plug.
    pub(crate) driver: Driver,
    /// `arm(Now)` is pending.
    now: Cell<bool>,
    /// The deadline `timer` is set to; `None` once it fired or was never set.
    timer_at: Cell<Option<Instant>>,
    timer: RefCell<Timer>,
    /// The watched fds and the wake, registered with the reactor as one fd.
    selector: Async<Selector>,
    pub(crate) waker: Arc<dyn RemoteWake>,
    /// Select in the next poll whatever the reactor says: a registration
    /// changed, a turn opened, or the reactor reported the selector while
    /// the task was re-arming it.
    reselect: Cell<bool>,
    /// An iteration is owed: the select after the last one reported fds
    /// or consumed a wake, already handed to the scheduler.
    owed: Cell<bool>,
    /// The driver task's waker, from its last poll.
    task: RefCell<Option<Waker>>,
    /// The task was woken and has not been polled since.
    scheduled: Cell<bool>,
    pub(crate) gate: Cell<Gate>,
    /// Owned mode: the task saw events while the gate was closed.
    deferred: Cell<bool>,
    /// Owned mode: the waker of the `turn()` waiting for its end.
    turn: RefCell<Option<Waker>>,
    /// Dispatches so far (the owned turn polls the reactor after each).
    pub(crate) dispatches: Cell<u64>,
    /// The backend was closed or dropped: the task ends.
    pub(crate) closed: Cell<bool>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("now", &self.now.get())
            .field("timer_at", &self.timer_at.get())
            .field("fds", &self.selector.get_ref().len())
            .field("gate", &self.gate.get())
            .field("closed", &self.closed.get())
            .finish()
    }
}

impl Core {
    pub(crate) fn new(gate: Gate, driver: Driver) -> io::Result<Core> {
        let selector = Selector::new()?;
        let waker = selector.waker();
        Ok(Core {
            driver,
            now: Cell::new(false),
            timer_at: Cell::new(None),
            timer: RefCell::new(Timer::never()),
            // An epoll fd is non-blocking by nature; nothing to set.
            selector: Async::new_nonblocking(selector)?,
            waker,
            reselect: Cell::new(true),
            owed: Cell::new(false),
            task: RefCell::new(None),
            scheduled: Cell::new(false),
            gate: Cell::new(gate),
            deferred: Cell::new(false),
            turn: RefCell::new(None),
            dispatches: Cell::new(0),
            closed: Cell::new(false),
        })
    }

    /// `Backend::watch`: one `epoll_ctl` on the selector. An fd that is
    /// ready already must be seen in the next iteration, whether or not the
    /// reactor hears of it, so the next poll selects.
    pub(crate) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.selector.get_ref().watch(fd, interest)?;
        if !interest.is_none() && !self.reselect.replace(true) {
            self.wake_task();
        }
        Ok(())
    }

    /// Wake the driver task, once until it runs.
    pub(crate) fn wake_task(&self) {
        if self.scheduled.get() {
            return;
        }
        if let Some(w) = self.task.borrow().as_ref() {
            self.scheduled.set(true);
            w.wake_by_ref();
        }
        // Not polled yet: its first poll looks at everything anyway.
    }

    /// `Backend::arm`.
    pub(crate) fn arm(&self, next: NextDispatch) {
        match next {
            NextDispatch::Now => {
                self.now.set(true);
                self.wake_task();
            }
            NextDispatch::At(t) => {
                self.now.set(false);
                self.set_timer(t);
            }
            NextDispatch::OnEvent => self.now.set(false),
        }
    }

    /// Make the timer fire by `t`. A timer already set earlier is kept: it
    /// fires early, the dispatch finds nothing due and re-arms, which costs
    /// less than re-registering with the reactor on every arm.
    fn set_timer(&self, t: Instant) {
        if self.timer_at.get().is_some_and(|at| at <= t) {
            return;
        }
        self.timer_at.set(Some(t));
        let mut timer = self.timer.borrow_mut();
        timer.set_at(t);
        // Register it with the reactor now, under the task's waker, rather
        // than waking the task only to poll it.
        let task = self.task.borrow();
        if let Some(w) = task.as_ref() {
            let mut cx = Context::from_waker(w);
            if Pin::new(&mut *timer).poll(&mut cx).is_ready() {
                // Already due.
                self.timer_at.set(None);
                drop((timer, task));
                self.now.set(true);
                self.wake_task();
            }
        }
    }

    /// Drop every registration and the timer (backend close or drop).
    pub(crate) fn shut(&self) {
        self.closed.set(true);
        self.selector.get_ref().clear();
        self.timer.borrow_mut().clear();
        self.timer_at.set(None);
        // Let a task spawned on a host end now rather than whenever it is
        // dropped.
        self.scheduled.set(false);
        self.wake_task();
    }

    /// One zero-timeout select, reporting each ready fd to the scheduler.
    fn select_now(&self, lp: Option<&dyn Dispatch>) -> Selected {
        match self
            .selector
            .get_ref()
            .select(Some(Duration::ZERO), |fd, r| {
                if let Some(lp) = lp {
                    lp.fd_ready(fd, r);
                }
            }) {
            Ok(seen) => seen,
            // Not expected of a zero-timeout select on our own epoll fd;
            // try again in the next poll rather than lose an event.
            Err(_) => {
                self.reselect.set(true);
                Selected::default()
            }
        }
    }

    /// Select with a zero timeout if the reactor reported the selector (or
    /// a reselect is due), reporting each ready fd to the scheduler. The
    /// second value says whether the selector's registration is armed
    /// again (the reactor's `Pending`, which registers the waker and
    /// re-arms the oneshot interest); a reported event leaves that to
    /// [`rearm_selector`](Core::rearm_selector), after the iteration, when
    /// the callbacks have drained what they read: re-armed before, the
    /// selector's fd (readable while any watched fd is) would wake the
    /// task again for nothing.
    ///
    /// `busy`: the last dispatch armed `Now` (callbacks are queued). The
    /// task is then woken directly, not by the reactor, which may not poll
    /// for a long time while the loop stays busy; select anyway, so that an
    /// fd that became ready meanwhile is dispatched in the next iteration
    /// (CB-04), as a zero-timeout `epoll_wait` per busy iteration.
    fn poll_selector(
        &self,
        lp: Option<&dyn Dispatch>,
        cx: &mut Context<'_>,
        busy: bool,
    ) -> (Selected, bool) {
        let mut due = self.reselect.replace(false) | busy;
        let armed = match self.selector.poll_readable(cx) {
            Poll::Ready(_) => {
                due = true;
                false
            }
            Poll::Pending => true,
        };
        let seen = if due {
            self.select_now(lp)
        } else {
            Selected::default()
        };
        (seen, armed)
    }

    /// Register the waker and re-arm the selector's oneshot registration;
    /// an event the reactor delivered meanwhile makes the next poll select.
    fn rearm_selector(&self, cx: &mut Context<'_>) {
        // At most two rounds: a newer event, then the poll that re-arms.
        for _ in 0..2 {
            match self.selector.poll_readable(cx) {
                Poll::Ready(_) => self.reselect.set(true),
                Poll::Pending => break,
            }
        }
        if self.reselect.get() {
            self.wake_task();
        }
    }

    fn poll_timer(&self, cx: &mut Context<'_>) -> bool {
        if self.timer_at.get().is_none() {
            return false;
        }
        let mut timer = self.timer.borrow_mut();
        if Pin::new(&mut *timer).poll(cx).is_ready() {
            self.timer_at.set(None);
            true
        } else {
            false
        }
    }

    /// One poll of the driver task; see the module docs.
    fn poll_driver(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.scheduled.set(false);
        if self.closed.get() {
            return Poll::Ready(());
        }
        {
            let mut task = self.task.borrow_mut();
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        match self.gate.get() {
            Gate::Closed => {
                self.deferred.set(true);
                return Poll::Pending;
            }
            Gate::Open | Gate::Turn => {}
        }

        let busy = self.now.replace(false);
        let mut fire = busy | self.owed.replace(false);
        // The loop, upgraded once for this poll's reports and dispatch.
        let target = self.driver.target();
        let lp = target.as_deref();
        let (seen, armed) = self.poll_selector(lp, cx, busy);
        fire |= seen.any();
        fire |= self.poll_timer(cx);
        if !fire {
            if !armed {
                self.rearm_selector(cx);
            }
            return Poll::Pending;
        }

        let driver = &self.driver;
        if let Some(lp) = lp {
            lp.dispatch();
        }
        // A dispatch that halts the run (after `stop()`, or a panic under
        // `PanicPolicy::Propagate`) arms `Now` last, so only then is the
        // loop asked whether it is still live.
        let halted = self.now.get() && !driver.is_live();
        self.dispatches.set(self.dispatches.get() + 1);
        let mut woken = seen.woken;
        if seen.fds > 0 || self.reselect.replace(false) {
            // Level-triggered: what the callbacks left unread is reported
            // again, for the next iteration; look now rather than after
            // another turn of the reactor, which would be one more wake-up
            // of this task per event (the reactor does not ask for it).
            let more = self.select_now(lp);
            woken |= more.woken;
            if more.any() {
                self.owed.set(true);
                self.wake_task();
            }
        }
        if !armed && !self.owed.get() {
            self.rearm_selector(cx);
        }
        if self.gate.get() == Gate::Turn && (woken || halted) {
            // The run halted, or its root future (or a remote caller) may
            // have been woken: hand control back to `run_*`.
            self.gate.set(Gate::Closed);
            if let Some(w) = self.turn.borrow_mut().take() {
                w.wake();
            }
        }
        Poll::Pending
    }

    /// Owned mode: whether the driver task was woken for more work and
    /// has not run since (the turn lets the reactor poll before it runs).
    pub(crate) fn rerun_pending(&self) -> bool {
        self.scheduled.get()
    }

    /// Owned mode: open a turn; wake the task if it held events back.
    pub(crate) fn open_turn(&self) {
        self.gate.set(Gate::Turn);
        self.reselect.set(true);
        if self.deferred.replace(false) {
            self.scheduled.set(false);
            self.wake_task();
        }
    }

    /// Owned mode: the future `turn()` runs the executor until; ready once
    /// the turn ended.
    pub(crate) fn poll_turn(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.get() != Gate::Turn || self.closed.get() {
            return Poll::Ready(());
        }
        let mut turn = self.turn.borrow_mut();
        if !turn.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *turn = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Owned mode: a turn that unwound (a task's panic) closes the gate.
    pub(crate) fn close_turn(&self) {
        if self.gate.get() == Gate::Turn {
            self.gate.set(Gate::Closed);
        }
        self.turn.borrow_mut().take();
    }
}

/// The driver task: the future spawned on the executor.
///
/// It holds the backend's state weakly, so that the state (the selector and
/// its fds) goes with the backend even if this future
/// is never dropped: async-executor drops its tasks when it is dropped, but
/// a wake from another thread (async-io's reactor) racing with that drop
/// queues the task again into the dropped executor, where nothing drops it
/// (about 1 in 500 attached loops whose host went first leaked their wake
/// fds; `tests/host_dropped_first.rs`).
pub(crate) struct DriverTask {
    pub(crate) core: Weak<Core>,
}

impl fmt::Debug for DriverTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverTask").finish_non_exhaustive()
    }
}

impl Future for DriverTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.core.upgrade() {
            Some(core) => core.poll_driver(cx),
            // The backend is gone: nothing left to drive.
            None => Poll::Ready(()),
        }
    }
}
