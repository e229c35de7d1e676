//! The scheduler: ready queue, timer heap, fd registry, inbox, and the one
//! iteration every backend drives.
//!
//! # One iteration (`dispatch`, asyncio's `_run_once`)
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
//! # Mutual exclusion
//!
//! - No `RefCell` borrow is held while a callback (or a `Drop` of user
//!   data) runs: items are popped one at a time, so callbacks may call
//!   every `Loop` method, including cancelling a later item of the same
//!   batch (CB-05).
//! - `dispatch` never nests (CB-03, TK-04, D4): a host loop iterated from
//!   inside a callback (a modal dialog) finds `dispatching` set and returns;
//!   the deferred work runs, in order, once the outer callback returns.
//! - A panic is caught around each callback and handled by the exception
//!   handler or the panic policy (D3); it never unwinds through the host.

pub(crate) mod fds;
pub(crate) mod inbox;
mod prefetch;
pub(crate) mod timers;

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::rc::Rc;
use std::time::Instant;

use crate::backend::{NextDispatch, Readiness};
use crate::event_loop::{LoopInner, RunState};
use crate::handle::Callback;
use crate::policy;
use crate::task::TaskMeta;
use fds::FdCallback;
use inbox::Remote;

/// How far ahead of the running item the batch loop prefetches: far enough
/// that a cache miss (~100 ns) is over before the item runs. 2, 4, 8 and 16
/// measured the same within noise on 1e6 timers; 16 is what the recorded
/// benchmarks ran with.
const PREFETCH_AHEAD: usize = 16;

/// An item of the ready queue.
pub(crate) enum Ready {
    /// `call_soon` or a timer that fell due.
    Call(Rc<dyn Callback>),
    /// `call_soon_threadsafe`, drained from the inbox.
    Boxed(Box<dyn FnOnce()>, &'static Location<'static>),
    /// A task step.
    Task(async_task::Runnable<TaskMeta>),
    /// An fd reader or writer whose fd was reported ready.
    Fd(Rc<FdCallback>),
}

/// A callback that panicked: what it was, where it was scheduled, why.
pub(crate) struct Failed {
    pub(crate) what: &'static str,
    pub(crate) location: &'static Location<'static>,
    pub(crate) payload: Box<dyn std::any::Any + Send>,
}

impl Ready {
    /// Ask for the memory this item will touch first when it runs.
    fn prefetch(&self) {
        match self {
            Ready::Call(cb) => prefetch::prefetch(Rc::as_ptr(cb)),
            Ready::Fd(f) => prefetch::prefetch(Rc::as_ptr(f)),
            Ready::Boxed(f, _) => prefetch::prefetch(&raw const **f),
            Ready::Task(_) => {}
        }
    }

    fn location(&self) -> &'static Location<'static> {
        match self {
            Ready::Call(cb) => cb.location(),
            Ready::Boxed(_, location) => location,
            Ready::Task(r) => r.metadata().location,
            Ready::Fd(f) => f.location,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Ready::Call(_) | Ready::Boxed(..) => "callback",
            Ready::Task(_) => "task step",
            Ready::Fd(_) => "fd callback",
        }
    }

    /// Run the item; a panic unwinds out of here, to the batch's guard.
    #[inline]
    fn run_unguarded(self) {
        match self {
            Ready::Call(cb) => cb.run(),
            Ready::Boxed(f, _) => f(),
            Ready::Task(r) => {
                r.run();
            }
            Ready::Fd(f) => f.run(),
        }
    }

    /// Run the item, catching a panic.
    fn run(self) -> Result<(), Failed> {
        let (what, location) = (self.describe(), self.location());
        catch_unwind(AssertUnwindSafe(|| self.run_unguarded())).map_err(|payload| Failed {
            what,
            location,
            payload,
        })
    }
}

impl From<Remote> for Ready {
    fn from(r: Remote) -> Ready {
        match r {
            Remote::Call(f, location) => Ready::Boxed(f, location),
            Remote::Task(r) => Ready::Task(r),
        }
    }
}

impl LoopInner {
    /// Whether a dispatch would run callbacks now.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.run_state.get(), RunState::Running | RunState::Attached) && !self.halted.get()
    }

    /// Append to the ready queue and make sure the backend will dispatch.
    #[inline]
    pub(crate) fn push_ready(&self, item: Ready) {
        self.push_ready_with(|| item);
    }

    /// [`push_ready`](Self::push_ready) of the item `make` builds, which it
    /// builds straight into the queue's free slot.
    ///
    /// Why not `push_back(make())`: `push_back` may grow the buffer first,
    /// so the item is built on the stack with 8-byte stores, then copied
    /// with 16-byte loads that the CPU cannot forward from those stores.
    /// That stall was a third of `call_soon`'s cost. `extend` with a
    /// `TrustedLen` iterator reserves first and builds the item in place.
    #[inline]
    pub(crate) fn push_ready_with(&self, make: impl FnOnce() -> Ready) {
        let was_empty = {
            let mut ready = self.ready.borrow_mut();
            ready.extend(std::iter::once_with(make));
            ready.len() == 1
        };
        if was_empty {
            self.arm_if_earlier(NextDispatch::Now);
        }
    }

    /// Add a timer and make sure the backend will dispatch by its deadline,
    /// or within the timer slack after it.
    pub(crate) fn push_timer(&self, when: Instant, cb: Rc<dyn Callback>) {
        self.timers.borrow_mut().push(when, cb);
        if let NextDispatch::At(armed) = self.armed.get()
            && when <= armed
            && when
                .checked_add(self.timer_slack.get())
                .is_none_or(|late| late >= armed)
        {
            // The wake-up already armed serves this timer too.
            return;
        }
        self.arm_if_earlier(NextDispatch::At(when));
    }

    pub(crate) fn timer_cancelled(&self) {
        self.timers.borrow_mut().note_cancelled();
    }

    /// Outside a dispatch, tell the backend about a wake-up earlier than the
    /// one it has (EM-02: work created from a host callback must wake the
    /// host). Inside a dispatch the end of the iteration arms anyway.
    pub(crate) fn arm_if_earlier(&self, next: NextDispatch) {
        if self.dispatching.get() || self.run_state.get() == RunState::Closed {
            return;
        }
        let earlier = match (next, self.armed.get()) {
            (_, NextDispatch::Now) => false,
            (NextDispatch::Now, _) => true,
            (NextDispatch::At(t), NextDispatch::At(armed)) => t < armed,
            (NextDispatch::At(_), NextDispatch::OnEvent) => true,
            (NextDispatch::OnEvent, _) => false,
        };
        if earlier {
            self.armed.set(next);
            self.backend.arm(next);
        }
    }

    /// When the next dispatch is needed, from the queues.
    pub(crate) fn compute_next(&self) -> NextDispatch {
        if self.stopping.get() || !self.ready.borrow().is_empty() {
            return NextDispatch::Now;
        }
        let now = self.backend.now();
        match self
            .timers
            .borrow_mut()
            .next_wake(now, self.timer_slack.get())
        {
            Some(t) => NextDispatch::At(t),
            None => NextDispatch::OnEvent,
        }
    }

    pub(crate) fn next_dispatch(&self) -> NextDispatch {
        if !self.is_live() {
            return NextDispatch::OnEvent;
        }
        self.compute_next()
    }

    /// Step 1: queue the reader and/or writer of a ready fd.
    pub(crate) fn fd_ready(&self, fd: std::os::fd::RawFd, r: Readiness) {
        if !self.is_live() {
            return;
        }
        let (reader, writer) = {
            let fds = self.fds.borrow();
            let Some(e) = fds.entries.get(&fd) else {
                return;
            };
            let reader = e.reader.clone().filter(|_| r.readable || r.hangup);
            let writer = e.writer.clone().filter(|_| r.writable || r.hangup);
            (reader, writer)
        };
        for cb in [reader, writer].into_iter().flatten() {
            if !cb.queued.replace(true) {
                self.ready.borrow_mut().push_back(Ready::Fd(cb));
            }
        }
    }

    /// Step 4's snapshot: take the whole ready queue out in one borrow (the
    /// queue keeps a spare buffer, so no allocation churns); what callbacks
    /// queue meanwhile lands in the emptied queue, for the next iteration.
    fn take_batch(&self) -> VecDeque<Ready> {
        let spare = std::mem::take(&mut *self.spare.borrow_mut());
        std::mem::replace(&mut *self.ready.borrow_mut(), spare)
    }

    /// Give the batch buffer back: items left by a stopping panic go back to
    /// the front of the queue, in order; the emptied buffer is the spare.
    fn return_batch(&self, mut batch: VecDeque<Ready>) {
        if !batch.is_empty() {
            let mut ready = self.ready.borrow_mut();
            while let Some(item) = batch.pop_back() {
                ready.push_front(item);
            }
        }
        *self.spare.borrow_mut() = batch;
    }

    /// Run the batch up to its end or its first panic, the fast way: one
    /// unwind guard for the whole run rather than one per callback (it is
    /// set up again after a panic, for the rest), and the next few items'
    /// memory prefetched while one runs.
    fn run_batch(batch: &mut VecDeque<Ready>) -> Result<(), Failed> {
        let mut running = ("callback", Location::caller());
        catch_unwind(AssertUnwindSafe(|| {
            while let Some(item) = batch.pop_front() {
                if let Some(ahead) = batch.get(PREFETCH_AHEAD) {
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
    fn run_batch_checked(&self, batch: &mut VecDeque<Ready>) -> Result<(), Failed> {
        let lifo = self.faults.has(crate::fault::Fault::LifoReadyQueue);
        loop {
            let next = if lifo {
                batch.pop_back()
            } else {
                batch.pop_front()
            };
            let Some(item) = next else { return Ok(()) };
            let Some(limit) = self.slow_callback.get() else {
                item.run()?;
                continue;
            };
            let (what, location) = (item.describe(), item.location());
            let started = Instant::now();
            let outcome = item.run();
            let took = started.elapsed();
            if took >= limit {
                tracing::warn!(
                    target: "oneloop",
                    "{what} scheduled at {location} took {:.3} s (slow callback threshold {:.3} s)",
                    took.as_secs_f64(),
                    limit.as_secs_f64()
                );
            }
            outcome?;
        }
    }

    /// One scheduler iteration; see the module docs.
    pub(crate) fn dispatch(&self) {
        if !self.is_live() || self.dispatching.get() {
            return;
        }
        // Keep the loop alive for the whole iteration: a callback may drop
        // the last user handle.
        let Some(this) = self.weak.upgrade() else {
            return;
        };
        self.dispatching.set(true);
        let _running = policy::RunningScope::enter(&this);

        // Step 2: due timers.
        let now = self.backend.now();
        {
            let mut timers = self.timers.borrow_mut();
            let mut ready = self.ready.borrow_mut();
            timers.pop_due(now, |cb| ready.push_back(Ready::Call(cb)));
        }
        // Step 3: the inbox.
        let remote = self.shared.take();
        if !remote.is_empty() {
            self.ready
                .borrow_mut()
                .extend(remote.into_iter().map(Ready::from));
        }
        // Step 4: the snapshot.
        let mut batch = self.take_batch();
        loop {
            let outcome = if self.slow_callback.get().is_none()
                && !self.faults.has(crate::fault::Fault::LifoReadyQueue)
            {
                Self::run_batch(&mut batch)
            } else {
                self.run_batch_checked(&mut batch)
            };
            let Err(failed) = outcome else { break };
            if self.exceptions.callback_panicked(
                &this,
                failed.payload,
                failed.what,
                failed.location,
            ) {
                // PanicPolicy::Propagate: stop here; the rest of the batch
                // stays queued for the next run (ER-04).
                self.stopping.set(true);
                break;
            }
            // Reported: carry on with the rest of the batch.
        }
        self.return_batch(batch);
        // Step 5.
        self.dispatching.set(false);
        if self.stopping.replace(false) && self.run_state.get() == RunState::Running {
            self.halted.set(true);
            if self.faults.has(crate::fault::Fault::StopDropsQueued) {
                let dropped = std::mem::take(&mut *self.ready.borrow_mut());
                drop(dropped);
            }
            // Still wake the run loop promptly (it checks `halted` after
            // `turn`), and leave queued work armed for the next run.
            self.armed.set(NextDispatch::Now);
            self.backend.arm(NextDispatch::Now);
            return;
        }
        let next = self.compute_next();
        self.armed.set(next);
        self.backend.arm(next);
    }
}
