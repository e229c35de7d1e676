//! The one native driver: a future, run as one task on a `LocalExecutor`,
//! that waits for what the scheduler armed and calls
//! [`Driver::dispatch`](oneloop::backend::Driver::dispatch).
//!
//! # What wakes it
//! - `arm(Now)`: the scheduler has ready callbacks; the backend wakes the
//!   task directly (it is on the loop thread).
//! - one `async_io::Timer`, set to the earliest armed deadline;
//! - the [`RemoteWaker`] socket, readable after a `call_soon_threadsafe`;
//! - the waker of a watched fd's side, when the reactor reports it
//!   ([`FdTable`]).
//!
//! # Invariants
//! - Reported fds reach the scheduler before the `dispatch` of the same
//!   poll, and are re-armed after it (level-triggered, see [`FdTable`]).
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
//! - Owned mode: the first iteration of every turn also polls the watched
//!   fds with a zero timeout (`poll(2)`, O(watched fds) per turn, and turns
//!   are rare), because async-io's fallback thread may hold the reactor
//!   when a run starts: a pre-stopped run still sees the I/O that is ready
//!   (LC-05).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Weak;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_io::{Async, Timer};
use oneloop::backend::{Driver, NextDispatch, Readiness};

use crate::fd::LentFd;
use crate::fds::FdTable;
use crate::wake::{RemoteWaker, Wakeups};

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
///
/// Field order matters: `wake_io` is dropped before `remote`, which owns the
/// socket it watches (the invariant of [`LentFd`]).
pub(crate) struct Core {
    /// The loop's side of the plug.
    pub(crate) driver: Driver,
    /// `arm(Now)` is pending.
    now: Cell<bool>,
    /// The deadline `timer` is set to; `None` once it fired or was never set.
    timer_at: Cell<Option<Instant>>,
    timer: RefCell<Timer>,
    pub(crate) fds: FdTable,
    /// The registration of the remote wake socket.
    wake_io: Async<LentFd>,
    pub(crate) remote: Arc<RemoteWaker>,
    pub(crate) wakeups: Arc<Wakeups>,
    /// The driver task's waker, from its last poll.
    task: RefCell<Option<Waker>>,
    /// The task was woken and has not been polled since.
    scheduled: Cell<bool>,
    pub(crate) gate: Cell<Gate>,
    /// Owned mode: the task saw events while the gate was closed.
    deferred: Cell<bool>,
    /// Owned mode: the waker of the `turn()` waiting for its end.
    turn: RefCell<Option<Waker>>,
    /// Owned mode: the turn has not looked at the fds yet (probe them).
    fresh: Cell<bool>,
    /// `RemoteWaker::wakes` when the driver last looked.
    wakes_seen: Cell<u64>,
    /// Dispatches so far (the owned turn polls the reactor after each).
    pub(crate) dispatches: Cell<u64>,
    /// The backend was closed or dropped: the task ends.
    pub(crate) closed: Cell<bool>,
    /// Scratch list of the readiness gathered in one poll.
    ready: RefCell<Vec<(RawFd, Readiness)>>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("now", &self.now.get())
            .field("timer_at", &self.timer_at.get())
            .field("fds", &self.fds.len())
            .field("gate", &self.gate.get())
            .field("closed", &self.closed.get())
            .finish()
    }
}

impl Core {
    pub(crate) fn new(gate: Gate, driver: Driver) -> io::Result<Core> {
        let remote = Arc::new(RemoteWaker::new()?);
        let wakeups = Arc::new(Wakeups::default());
        let wake_io = Async::new_nonblocking(LentFd::new(remote.rx.as_raw_fd())?)?;
        Ok(Core {
            driver,
            now: Cell::new(false),
            timer_at: Cell::new(None),
            timer: RefCell::new(Timer::never()),
            fds: FdTable::new(wakeups.clone()),
            wake_io,
            remote,
            wakeups,
            task: RefCell::new(None),
            scheduled: Cell::new(false),
            gate: Cell::new(gate),
            deferred: Cell::new(false),
            turn: RefCell::new(None),
            fresh: Cell::new(false),
            wakes_seen: Cell::new(0),
            dispatches: Cell::new(0),
            closed: Cell::new(false),
            ready: RefCell::new(Vec::new()),
        })
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
        self.fds.clear();
        self.timer.borrow_mut().clear();
        self.timer_at.set(None);
        // Let a task spawned on a host end now rather than whenever it is
        // dropped.
        self.scheduled.set(false);
        self.wake_task();
    }

    /// Whether the remote wake socket is readable (and consume it).
    fn poll_remote(&self, cx: &mut Context<'_>) -> bool {
        let mut fired = false;
        // At most two rounds: a Ready, then the poll that re-arms.
        for _ in 0..2 {
            match self.wake_io.poll_readable(cx) {
                Poll::Ready(_) => {
                    self.remote.consume();
                    fired = true;
                }
                Poll::Pending => break,
            }
        }
        fired
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
        self.wakeups.driver.register(cx.waker());
        match self.gate.get() {
            Gate::Closed => {
                self.deferred.set(true);
                return Poll::Pending;
            }
            Gate::Open | Gate::Turn => {}
        }

        let mut fire = self.now.replace(false);
        fire |= self.poll_remote(cx);
        fire |= self.poll_timer(cx);
        let mut ready = std::mem::take(&mut *self.ready.borrow_mut());
        self.fds.reported(&mut ready);
        self.fds.confirm(&mut ready);
        if self.gate.get() == Gate::Turn && self.fresh.replace(false) {
            self.fds.probe(&mut ready);
        }
        fire |= !ready.is_empty();
        if !fire {
            self.put_back(ready);
            return Poll::Pending;
        }

        let driver = &self.driver;
        for &(fd, r) in &ready {
            driver.fd_ready(fd, r);
        }
        driver.dispatch();
        let live = driver.is_live();
        self.dispatches.set(self.dispatches.get() + 1);
        self.fds.rearm(&ready);
        self.put_back(ready);
        let wakes = self.remote.wakes();
        let woken = wakes != self.wakes_seen.replace(wakes);
        if self.gate.get() == Gate::Turn && (woken || !live) {
            // The run halted, or its root future (or a remote caller) may
            // have been woken: hand control back to `run_*`.
            self.gate.set(Gate::Closed);
            if let Some(w) = self.turn.borrow_mut().take() {
                w.wake();
            }
        }
        Poll::Pending
    }

    fn put_back(&self, mut ready: Vec<(RawFd, Readiness)>) {
        ready.clear();
        *self.ready.borrow_mut() = ready;
    }

    /// Owned mode: open a turn; wake the task if it held events back.
    pub(crate) fn open_turn(&self) {
        self.gate.set(Gate::Turn);
        self.fresh.set(true);
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
/// It holds the backend's state weakly, so that the state (the wake socket
/// pair, every fd registration) goes with the backend even if this future
/// is never dropped: async-executor drops its tasks when it is dropped, but
/// a wake from another thread (async-io's reactor) racing with that drop
/// queues the task again into the dropped executor, where nothing drops it
/// (about 1 in 500 attached loops whose host went first leaked their wake
/// socket pair; `tests/host_dropped_first.rs`).
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
