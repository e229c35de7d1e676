//! The scheduler: the ready queue, the timer queue, the fd table and the
//! inbox, and the one iteration every backend drives.
//!
//! [`Scheduler`] is the engine below [`Loop`](crate::Loop). It depends only
//! on the plug ([`backend`](crate::backend)), the error type and its own
//! parts; it knows nothing of loops, tasks, futures or exception handlers.
//! What it cannot decide alone (what to do with a panic) it hands back to
//! its caller, the loop.
//!
//! # One iteration ([`Scheduler::run_once`], asyncio's `_run_once`)
//!
//! 1. The callbacks of fds the backend reported ready are already queued:
//!    [`Driver::fd_ready`](crate::backend::Driver::fd_ready) appends them as
//!    the backend reports them, before it calls `dispatch`.
//! 2. Move the timers due at `now` to the ready queue, in deadline order
//!    (equal deadlines in scheduling order, D9). `now` is read afresh, so a
//!    timer never runs before its deadline as seen by `Loop::time()` in the
//!    callback (D7), whatever the host's rounding.
//! 3. Drain the cross-thread inbox into the ready queue (one FIFO, D8).
//! 4. Run exactly the callbacks that were queued when this step began, one
//!    at a time. Work they queue waits for the next iteration, after another
//!    poll (CB-04), so a callback that re-queues itself cannot starve I/O.
//! 5. Arm the backend: now (the queue is not empty), at the next deadline,
//!    or on events only. If `stop()` was called, halt instead: the run
//!    returns and queued work waits for the next run (LC-03, LC-04).
//!
//! # One cell, never borrowed across foreign code
//!
//! All mutable state is one [`Core`] in one `RefCell`, reached only through
//! [`Scheduler::with`]. The closures given to `with` touch the core and
//! nothing else: they never run a callback, never drop user data, never call
//! the backend. So user code (a callback, a `Drop`, the exception handler)
//! and backend code can call every scheduler method from anywhere without a
//! borrow panic, including cancelling a later item of the running batch
//! (CB-05).
//!
//! `run_once` never nests (CB-03, TK-04, D4): a host loop iterated from
//! inside a callback (a modal dialog) finds `dispatching` set and returns;
//! the deferred work runs, in order, once the outer callback returns. A panic
//! is caught around the batch and handed to the caller (D3); it never
//! unwinds through the host.

pub(crate) mod callback;
pub(crate) mod fds;
pub(crate) mod inbox;
mod prefetch;
mod ready;
pub(crate) mod timers;

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::vec::Drain;

use crate::backend::{Backend, Interest, NextDispatch, Readiness, RemoteWake};
use crate::error::{Error, Result};
use crate::fault::{Fault, Faults};
use callback::Callback;
use fds::{FdCallback, FdRegistry};
use inbox::{Remote, Shared};
pub(crate) use ready::{Failed, Ready, TaskMeta};
use timers::TimerQueue;

/// How far ahead of the running item the batch loop prefetches: far enough
/// that a cache miss (~100 ns) is over before the item runs. 2, 4, 8 and 16
/// measured the same within noise on 1e6 timers; 16 is what the recorded
/// benchmarks ran with.
const PREFETCH_AHEAD: usize = 16;

/// A batch with no timer in it and at most this many items runs without
/// the look-ahead prefetch: its callbacks were allocated since the last
/// iteration, a few dozen bytes each, and are still in the cache, where a
/// prefetch is only cost (≈ 12 instructions an item, an eighth of a
/// `call_soon`'s own). Timers are what is cold (a million of them was 659
/// ns a timer without the prefetch, 341 with it), and so is a batch too
/// big for the cache.
const HOT_BATCH: usize = 4096;

impl From<Remote> for Ready {
    fn from(r: Remote) -> Ready {
        match r {
            Remote::Call(f, location) => Ready::Boxed(f, location),
            Remote::Task(r) => Ready::Task(r),
        }
    }
}

/// Where a loop is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Owned mode, not running.
    Idle,
    /// Owned mode, inside `run_forever`/`run_until_complete`.
    Running,
    /// Attached to a host that runs it: counts as running (EM-01).
    Attached,
    /// Closed for good.
    Closed,
}

/// The scheduler's mutable state, all of it.
///
/// # Invariants
/// - `dispatching` is true exactly while [`Scheduler::run_once`] runs.
/// - `armed` is what the backend was last told; outside a dispatch the
///   scheduler only re-arms when the new wake-up is earlier.
/// - `halted` is only set in `Running`: the batch after `stop()` finished
///   and the run must return; no dispatch runs callbacks until the run ends.
pub(crate) struct Core {
    /// Callbacks ready to run, FIFO (CB-01). A `Vec`, not a `VecDeque`:
    /// items are only appended, and the batch takes the whole queue out, so
    /// no index ever wraps around (that arithmetic was a tenth of a
    /// `call_soon`).
    ready: Vec<Ready>,
    /// An empty buffer swapped with `ready` at each iteration's snapshot,
    /// so taking the batch out allocates nothing.
    /// `None` while a batch holds it (the empty `None` costs nothing to
    /// drop, an empty queue does).
    spare: Option<Vec<Ready>>,
    /// Pending timers.
    timers: TimerQueue,
    /// Watched fds.
    fds: FdRegistry,
    /// See [`RunState`].
    state: RunState,
    /// `stop()` was called: halt after the current batch.
    stopping: bool,
    /// The batch after `stop()` finished: the run returns, no more dispatch.
    halted: bool,
    /// A dispatch is on the stack.
    dispatching: bool,
    /// The last wake-up given to the backend.
    armed: NextDispatch,
    /// How late a wake-up for timers may come to serve later timers too.
    timer_slack: Duration,
    /// Debug mode: warn about callbacks slower than this.
    slow_callback: Option<Duration>,
}

impl Core {
    fn is_live(&self) -> bool {
        matches!(self.state, RunState::Running | RunState::Attached) && !self.halted
    }

    /// Whether `next` is earlier than what the backend was told, and so
    /// must be armed now (EM-02: work created from a host callback must
    /// wake the host). Inside a dispatch the end of the iteration arms anyway.
    fn take_if_earlier(&mut self, next: NextDispatch) -> bool {
        if self.dispatching || self.state == RunState::Closed {
            return false;
        }
        let earlier = match (next, self.armed) {
            (_, NextDispatch::Now) => false,
            (NextDispatch::Now, _) => true,
            (NextDispatch::At(t), NextDispatch::At(armed)) => t < armed,
            (NextDispatch::At(_), NextDispatch::OnEvent) => true,
            (NextDispatch::OnEvent, _) => false,
        };
        if earlier {
            self.armed = next;
        }
        earlier
    }

    /// When the next dispatch is needed, from the queues. `now` is read
    /// only if a timer is pending (see [`Scheduler::now_if_timers`]).
    ///
    /// A deadline already reached is `Now`, not `At` a past instant: a host
    /// whose timers tick (tokio's wheel, 1 ms) would otherwise wait for its
    /// next tick to run a timer that is due.
    fn compute_next(&mut self, now: Option<Instant>) -> NextDispatch {
        if self.stopping || !self.ready.is_empty() {
            return NextDispatch::Now;
        }
        let Some(now) = now else {
            return NextDispatch::OnEvent;
        };
        match self.timers.next_wake(now, self.timer_slack) {
            Some(t) if t <= now => NextDispatch::Now,
            Some(t) => NextDispatch::At(t),
            None => NextDispatch::OnEvent,
        }
    }
}

/// What [`Scheduler::close`] took out of the queues, for the caller to drop
/// outside any borrow (dropping a closure runs user code).
pub(crate) struct Leftovers {
    pub(crate) ready: Vec<Ready>,
    pub(crate) timers: Vec<Rc<dyn Callback>>,
    pub(crate) fds: FdRegistry,
    pub(crate) inbox: VecDeque<Remote>,
    /// The backend and its wake, released.
    pub(crate) host: ReleasedHost,
}

/// What a closed loop lets go of its host: dropped by the loop, last.
pub(crate) struct ReleasedHost {
    _backend: Option<Box<dyn Backend>>,
    _waker: Option<Arc<dyn RemoteWake>>,
}

/// What stands in for a closed loop's backend: it remembers what a closed
/// loop is still asked (its name, its mode, the clock) and holds nothing.
struct Released {
    name: String,
    attached: bool,
    clock_resolution: Duration,
}

impl Backend for Released {
    fn name(&self) -> &str {
        &self.name
    }
    fn arm(&self, _next: NextDispatch) {}
    fn remote_waker(&self) -> Arc<dyn RemoteWake> {
        Arc::new(|| {})
    }
    fn is_attached(&self) -> bool {
        self.attached
    }
    fn clock_resolution(&self) -> Duration {
        self.clock_resolution
    }
}

/// Counters for `Loop::stats`.
pub(crate) struct Counts {
    pub(crate) ready: usize,
    pub(crate) timers: usize,
    pub(crate) fds: usize,
}

/// The engine of one loop: see the module docs.
pub(crate) struct Scheduler {
    /// The host. Replaced by a [`Released`] stub at close, so that a closed
    /// loop still referenced holds none of its host's resources (its
    /// poller, its wake fd, a runtime). Borrowed shared for every call
    /// (a turn included, during which callbacks borrow it again), mutably
    /// only by `close`, which never runs inside a turn or a dispatch.
    backend: std::cell::RefCell<Box<dyn Backend>>,
    /// The backend's name, kept for reports after it is released.
    name: String,
    /// What other threads may touch: the inbox and the wake.
    shared: Arc<Shared>,
    /// Everything mutable.
    core: std::cell::RefCell<Core>,
    /// Deliberate faults (feature `fault-injection`), for the suite's own tests.
    faults: Faults,
}

/// A scheduler's settings at creation.
pub(crate) struct Settings {
    pub(crate) attached: bool,
    pub(crate) timer_slack: Duration,
    pub(crate) slow_callback: Option<Duration>,
    pub(crate) faults: Faults,
}

impl Scheduler {
    pub(crate) fn new(backend: Box<dyn Backend>, shared: Arc<Shared>, s: Settings) -> Scheduler {
        let now = backend.now();
        Scheduler {
            name: backend.name().to_owned(),
            backend: std::cell::RefCell::new(backend),
            shared,
            core: std::cell::RefCell::new(Core {
                ready: Vec::new(),
                spare: Some(Vec::new()),
                timers: TimerQueue::new(now),
                fds: FdRegistry::default(),
                state: if s.attached {
                    RunState::Attached
                } else {
                    RunState::Idle
                },
                stopping: false,
                halted: false,
                dispatching: false,
                armed: NextDispatch::OnEvent,
                timer_slack: s.timer_slack,
                slow_callback: s.slow_callback,
            }),
            faults: s.faults,
        }
    }

    /// The one way into the core. `f` must not run foreign code (see the
    /// module docs); a nested `with` would be a bug in this crate.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut self.core.borrow_mut())
    }

    pub(crate) fn backend(&self) -> std::cell::Ref<'_, Box<dyn Backend>> {
        self.backend.borrow()
    }

    /// The backend's name (also after close).
    pub(crate) fn backend_name(&self) -> &str {
        &self.name
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn has_fault(&self, fault: Fault) -> bool {
        self.faults.has(fault)
    }

    pub(crate) fn state(&self) -> RunState {
        self.with(|c| c.state)
    }

    #[inline]
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.state() == RunState::Closed {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// Whether a dispatch would run callbacks now.
    pub(crate) fn is_live(&self) -> bool {
        self.with(|c| c.is_live())
    }

    pub(crate) fn is_dispatching(&self) -> bool {
        self.with(|c| c.dispatching)
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.with(|c| c.stopping)
    }

    pub(crate) fn is_halted(&self) -> bool {
        self.with(|c| c.halted)
    }

    pub(crate) fn timer_slack(&self) -> Duration {
        self.with(|c| c.timer_slack)
    }

    pub(crate) fn set_timer_slack(&self, slack: Duration) {
        self.with(|c| c.timer_slack = slack);
    }

    pub(crate) fn slow_callback(&self) -> Option<Duration> {
        self.with(|c| c.slow_callback)
    }

    pub(crate) fn set_slow_callback(&self, d: Option<Duration>) {
        self.with(|c| c.slow_callback = d);
    }

    pub(crate) fn counts(&self) -> Counts {
        self.with(|c| Counts {
            ready: c.ready.len(),
            timers: c.timers.len(),
            fds: c.fds.len(),
        })
    }

    /// Tell the backend about `next` if it is earlier than what it has.
    fn arm_if_earlier(&self, next: NextDispatch) {
        if self.with(|c| c.take_if_earlier(next)) {
            self.backend().arm(next);
        }
    }

    /// Append the item `make` builds to the ready queue and make sure the
    /// backend will dispatch, in one borrow. On a closed loop:
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed), and `make` is
    /// dropped unused, outside the borrow (it may own user data, whose
    /// `Drop` may call back into the loop).
    ///
    /// The item is built straight into the queue's free slot. Why not
    /// `push(make())`: `push` may grow the buffer first, so the
    /// item is built on the stack with 8-byte stores, then copied with
    /// 16-byte loads that the CPU cannot forward from those stores. That
    /// stall was a third of `call_soon`'s cost. `extend` with a `TrustedLen`
    /// iterator reserves first and builds the item in place.
    #[inline]
    pub(crate) fn try_push_ready_with<M: FnOnce() -> Ready>(&self, make: M) -> Result<()> {
        let arm = self.with(|c| {
            if c.state == RunState::Closed {
                return Err(make);
            }
            c.ready.extend(std::iter::once_with(make));
            Ok(c.ready.len() == 1 && c.take_if_earlier(NextDispatch::Now))
        });
        match arm {
            Err(make) => {
                drop(make);
                Err(Error::closed())
            }
            Ok(arm) => {
                if arm {
                    self.backend().arm(NextDispatch::Now);
                }
                Ok(())
            }
        }
    }

    /// Add a timer and make sure the backend will dispatch by its deadline,
    /// or within the timer slack after it. On a closed loop the callback is
    /// handed back, to be dropped outside the borrow.
    pub(crate) fn push_timer(
        &self,
        when: Instant,
        cb: Rc<dyn Callback>,
    ) -> Result<(), Rc<dyn Callback>> {
        let arm = self.with(|c| {
            if c.state == RunState::Closed {
                return Err(cb);
            }
            c.timers.push(when, cb);
            if let NextDispatch::At(armed) = c.armed
                && when <= armed
                && when
                    .checked_add(c.timer_slack)
                    .is_none_or(|late| late >= armed)
            {
                // The wake-up already armed serves this timer too.
                return Ok(false);
            }
            Ok(c.take_if_earlier(NextDispatch::At(when)))
        })?;
        if arm {
            self.backend().arm(NextDispatch::At(when));
        }
        Ok(())
    }

    pub(crate) fn timer_cancelled(&self) {
        self.with(|c| c.timers.note_cancelled());
    }

    /// `stop()`: halt after the current batch (LC-04); before a run, make
    /// that run one non-blocking iteration (LC-05).
    pub(crate) fn request_stop(&self) {
        if self.state() == RunState::Closed {
            return;
        }
        self.with(|c| c.stopping = true);
        self.backend().stop_requested();
        self.arm_if_earlier(NextDispatch::Now);
    }

    /// The host's clock, read only when a timer is pending: a loop doing
    /// I/O with no timer reads no clock in its iteration.
    fn now_if_timers(&self) -> Option<Instant> {
        let timers = self.with(|c| c.timers.len() > 0);
        timers.then(|| self.backend().now())
    }

    /// A run begins: arm for the work queued before it, or a `stop()` made
    /// before it (LC-05), without waiting.
    pub(crate) fn begin_run(&self) {
        let now = self.now_if_timers();
        let next = self.with(|c| {
            c.state = RunState::Running;
            c.halted = false;
            let next = c.compute_next(now);
            c.armed = next;
            next
        });
        self.backend().arm(next);
    }

    /// A run ended, even by unwinding: no stale stop request survives it (LC-09).
    pub(crate) fn end_run(&self) {
        self.with(|c| {
            if c.state == RunState::Running {
                c.state = RunState::Idle;
            }
            c.stopping = false;
            c.halted = false;
        });
    }

    /// When the next dispatch is needed, for hosts that ask.
    pub(crate) fn next_dispatch(&self) -> NextDispatch {
        let now = self.now_if_timers();
        self.with(|c| {
            if c.is_live() {
                c.compute_next(now)
            } else {
                NextDispatch::OnEvent
            }
        })
    }

    /// Step 1: queue the reader and/or writer of a ready fd. A reader with
    /// a task parked on it ([`FdCallback::park`]) is not queued: the task
    /// is woken instead, joins this batch, and learns of the report from
    /// [`FdCallback::woke_parked`] (the callback's only job would have been
    /// to tell it). The wake is the poll's own doing, not a callback's, so
    /// CB-04 holds: nothing a callback of the batch queues runs before the
    /// next poll.
    pub(crate) fn fd_ready(&self, fd: RawFd, r: Readiness) {
        let parked = self.with(|c| {
            if !c.is_live() {
                return None;
            }
            let e = c.fds.get(fd)?;
            let mut parked = None;
            // Level-triggered: an fd reported again before its callback ran
            // is queued once (`queued`).
            if (r.readable || r.hangup)
                && let Some(cb) = &e.reader
            {
                parked = cb.take_reported();
                if parked.is_none() && !cb.queued.replace(true) {
                    c.ready.push(Ready::Fd(cb.clone()));
                }
            }
            if (r.writable || r.hangup)
                && let Some(cb) = &e.writer
                && !cb.queued.replace(true)
            {
                c.ready.push(Ready::Fd(cb.clone()));
            }
            if parked.is_some() {
                // The backend dispatches next (`Driver::fd_ready`): the
                // task the wake queues must not arm another wake-up, which
                // on a host like GLib would cost a whole extra iteration.
                c.armed = NextDispatch::Now;
            }
            parked
        });
        // Outside the borrow: the wake schedules the task, through here.
        if let Some(w) = parked {
            w.wake();
        }
    }

    /// Register `cb` as `fd`'s reader (`readable`) or writer, telling the
    /// backend when the merged interest changes. On a backend error the
    /// table is rolled back so that it matches what the backend watches.
    pub(crate) fn watch_fd(&self, fd: RawFd, readable: bool, cb: Rc<FdCallback>) -> io::Result<()> {
        let (old, before, after) = self.with(|c| {
            let before = c.fds.interest(fd);
            let old = c.fds.set(fd, readable, Some(cb));
            (old, before, c.fds.interest(fd))
        });
        if let Some(old) = &old {
            old.active.set(false);
        }
        if before != after
            && let Err(e) = self.backend().watch(fd, after)
        {
            let new = self.with(|c| c.fds.set(fd, readable, None));
            drop((new, old));
            return Err(e);
        }
        drop(old);
        Ok(())
    }

    /// Remove `fd`'s reader (`readable`) or writer; whether there was one.
    pub(crate) fn unwatch_fd(&self, fd: RawFd, readable: bool) -> bool {
        let taken = self.with(|c| {
            if c.state == RunState::Closed || !c.fds.contains(fd) {
                return None;
            }
            let old = c.fds.set(fd, readable, None);
            old.map(|old| (old, c.fds.interest(fd)))
        });
        let Some((old, after)) = taken else {
            return false;
        };
        old.active.set(false);
        // The fd may already be closed by its owner; the registration is gone
        // from our side either way.
        let _ = self.backend().watch(fd, after);
        drop(old);
        true
    }

    /// Step 4's snapshot: take the whole ready queue out (the queue keeps a
    /// spare buffer, so no allocation churns); what callbacks queue
    /// meanwhile lands in the emptied queue, for the next iteration.
    fn take_batch(c: &mut Core) -> Vec<Ready> {
        let spare = c.spare.take().unwrap_or_default();
        std::mem::replace(&mut c.ready, spare)
    }

    /// Give the batch buffer back, empty, as the spare; `left` (what a
    /// stopping panic left of the batch) goes back to the front of the
    /// queue, in order, before what the batch queued.
    fn return_batch(c: &mut Core, batch: Vec<Ready>, left: Option<Vec<Ready>>) {
        debug_assert!(batch.is_empty());
        if let Some(left) = left {
            c.ready.splice(0..0, left);
        }
        c.spare = Some(batch);
    }

    /// Run the batch up to its end or its first panic, the fast way: one
    /// unwind guard for the whole run rather than one per callback (it is
    /// set up again after a panic, for the rest), and, for a `COLD` batch
    /// (see [`HOT_BATCH`]), the memory of the item [`PREFETCH_AHEAD`] places
    /// on prefetched while one runs.
    fn run_batch<const COLD: bool>(batch: &mut Drain<'_, Ready>) -> Result<(), Failed> {
        let mut running = ("callback", Location::caller());
        catch_unwind(AssertUnwindSafe(|| {
            while let Some(item) = batch.next() {
                if COLD && let Some(ahead) = batch.as_slice().get(PREFETCH_AHEAD) {
                    ahead.prefetch();
                }
                running = (item.describe(), item.location());
                item.run_unguarded();
            }
        }))
        .map_err(|payload| Failed {
            what: running.0,
            location: running.1,
            payload,
        })
    }

    /// [`run_batch`](Self::run_batch) in debug mode (each callback timed)
    /// or with an injected queue fault.
    fn run_batch_checked(&self, batch: &mut Drain<'_, Ready>) -> Result<(), Failed> {
        let lifo = self.faults.has(Fault::LifoReadyQueue);
        loop {
            let next = if lifo {
                batch.next_back()
            } else {
                batch.next()
            };
            let Some(item) = next else { return Ok(()) };
            let Some(limit) = self.slow_callback() else {
                item.run()?;
                continue;
            };
            let (what, location) = (item.describe(), item.location());
            let started = Instant::now();
            let outcome = item.run();
            let took = started.elapsed();
            // A subscriber that panics on this warning is reported as the
            // callback's own panic would be (after it, if both).
            let warned = catch_unwind(|| {
                if took >= limit {
                    tracing::warn!(
                        target: "oneloop",
                        "{what} scheduled at {location} took {:.3} s (slow callback threshold {:.3} s)",
                        took.as_secs_f64(),
                        limit.as_secs_f64()
                    );
                }
            });
            outcome?;
            warned.map_err(|payload| Failed {
                what: "slow-callback warning",
                location,
                payload,
            })?;
        }
    }

    /// One scheduler iteration; see the module docs. `on_panic` is told of
    /// each callback that panicked and answers whether the run must stop
    /// (`PanicPolicy::Propagate`); the rest of the batch then stays queued
    /// for the next run (ER-04). Returns false, having done nothing, when
    /// the loop is not live or already dispatching.
    pub(crate) fn run_once(&self, mut on_panic: impl FnMut(Failed) -> bool) -> bool {
        let now = self.now_if_timers();
        // Steps 2 to 4 in one borrow: due timers, the inbox, the snapshot.
        let batch = self.with(|c| {
            if !c.is_live() || c.dispatching {
                return None;
            }
            c.dispatching = true;
            let Core { timers, ready, .. } = c;
            let mut cold = false;
            if let Some(now) = now {
                timers.pop_due(now, |cb| {
                    let location = cb.location();
                    ready.push(Ready::Call(cb, location));
                    cold = true;
                });
            }
            if let Some(remote) = self.shared.take() {
                c.ready.extend(remote.into_iter().map(Ready::from));
            }
            let cold = cold || c.ready.len() > HOT_BATCH;
            Some((Self::take_batch(c), c.slow_callback.is_some(), cold))
        });
        let Some((mut batch, checked, cold)) = batch else {
            return false;
        };
        let checked = checked || self.faults.has(Fault::LifoReadyQueue);
        // The batch is drained from the front; a panic stops the drain
        // where it was (the `Drain` lives out here, so unwinding drops
        // nothing), and the run carries on from there or, stopping, puts
        // the rest back.
        let mut items = batch.drain(..);
        loop {
            let outcome = if checked {
                self.run_batch_checked(&mut items)
            } else if cold {
                Self::run_batch::<true>(&mut items)
            } else {
                Self::run_batch::<false>(&mut items)
            };
            let Err(failed) = outcome else { break };
            // Reporting the panic runs user code too (the exception
            // handler, a `tracing` subscriber, the payload's drop): should
            // that panic, the iteration still ends properly before the
            // panic goes on out of the run.
            match catch_unwind(AssertUnwindSafe(|| on_panic(failed))) {
                Ok(true) => {
                    self.with(|c| c.stopping = true);
                    break;
                }
                // Reported: carry on with the rest of the batch.
                Ok(false) => {}
                Err(payload) => {
                    self.interrupted(items);
                    std::panic::resume_unwind(payload);
                }
            }
        }
        let left = if items.len() == 0 {
            // Nothing left: `Drain`'s drop would only find that out again
            // (≈ 20 instructions an iteration). Forgetting it is safe and
            // leaks nothing: the drain took the whole batch, so `batch` is
            // already empty and there is no tail to move back.
            std::mem::forget(items);
            None
        } else {
            Some(items.collect::<Vec<_>>())
        };
        // Step 5. The clock is read only if a timer decides the next wake,
        // and outside the borrow (it is the backend's); without one, the
        // iteration ends in the same borrow that returns the batch.
        let finish = |c: &mut Core, now: Option<Instant>| {
            c.dispatching = false;
            if std::mem::replace(&mut c.stopping, false) && c.state == RunState::Running {
                c.halted = true;
                let dropped = self
                    .faults
                    .has(Fault::StopDropsQueued)
                    .then(|| std::mem::take(&mut c.ready));
                // Still wake the run loop promptly (it checks `halted` after
                // `turn`), and leave queued work armed for the next run.
                c.armed = NextDispatch::Now;
                return (NextDispatch::Now, dropped);
            }
            let next = c.compute_next(now);
            c.armed = next;
            (next, None)
        };
        let untimed = self.with(|c| {
            Self::return_batch(c, batch, left);
            let timed = c.ready.is_empty() && c.timers.len() > 0;
            (!timed).then(|| finish(c, None))
        });
        let (next, dropped) = match untimed {
            Some(done) => done,
            None => {
                let now = self.backend().now();
                self.with(|c| finish(c, Some(now)))
            }
        };
        drop(dropped);
        self.backend().arm(next);
        true
    }

    /// A panic is unwinding out of [`run_once`](Self::run_once) itself
    /// (not a callback's, which the batch loop catches, but one from
    /// reporting it): end the iteration as `run_once` would have, so that
    /// the loop is not left dispatching for good (every later dispatch
    /// refused, `close` refused as "from inside its callback"), and put
    /// what the batch had not run back at the front of the queue, in
    /// order, for the next run (ER-04).
    #[cold]
    fn interrupted(&self, items: Drain<'_, Ready>) {
        let left: Vec<Ready> = items.collect();
        self.with(|c| {
            c.dispatching = false;
            c.stopping = false;
            c.ready.splice(0..0, left);
            c.armed = NextDispatch::Now;
        });
        self.backend().arm(NextDispatch::Now);
    }

    /// Close: refuse further work, unwatch every fd, let the backend remove
    /// its sources, and hand back everything queued. The caller checked
    /// that the loop is neither running nor dispatching.
    ///
    /// `forked`: this is a fork child closing its copy of the parent's
    /// loop, which touches nothing kernel-side: the poller (and whatever
    /// else the host keeps in the kernel) is shared with the parent, whose
    /// loop would lose its fds. That copy's host is leaked instead, as
    /// `crate::fork` leaks the loop that was running.
    pub(crate) fn close(&self, forked: bool) -> Leftovers {
        let fds: Vec<RawFd> = self.with(|c| {
            c.state = RunState::Closed;
            c.fds.fds()
        });
        if !forked {
            for fd in fds {
                let _ = self.backend().watch(fd, Interest::NONE);
            }
            self.backend().close();
        }
        let (inbox, waker) = self.shared.close();
        // Let the host's resources go now, not when the last `Loop` handle
        // does. (A backend still borrowed, which `close` cannot meet, would
        // simply be kept until the scheduler is dropped.)
        let backend = self.backend.try_borrow_mut().ok().map(|mut b| {
            let released: Box<dyn Backend> = Box::new(Released {
                name: self.name.clone(),
                attached: b.is_attached(),
                clock_resolution: b.clock_resolution(),
            });
            std::mem::replace(&mut *b, released)
        });
        let backend = if forked {
            std::mem::forget(backend);
            None
        } else {
            backend
        };
        self.with(|c| Leftovers {
            ready: std::mem::take(&mut c.ready),
            timers: c.timers.clear(),
            fds: std::mem::take(&mut c.fds),
            inbox,
            host: ReleasedHost {
                _backend: backend,
                _waker: waker,
            },
        })
    }
}
