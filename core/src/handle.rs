//! [`Handle`] and [`TimerHandle`]: what `call_soon`, `call_later` and
//! `call_at` return, to cancel the call before it runs.
//!
//! A scheduled callback is **one allocation** holding the closure, its state
//! and its call site. The ready queue (or the timer heap) and the handle
//! share it through an `Rc`, so returning a cancellable handle costs two
//! reference-count updates and no extra allocation; dropping the handle
//! without using it is the fast path.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Instant;

use crate::event_loop::LoopInner;

/// The life of a scheduled callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// A timer, waiting in the timer queue or, once due, in the ready queue
    /// (the queue does not touch the callback as it moves it: see
    /// `TimerQueue::pop_due`).
    Scheduled,
    /// Queued by `call_soon`, in the ready queue.
    Ready,
    /// Cancelled before it ran; the closure is already dropped.
    Cancelled,
    /// Ran (or is running); the closure is gone.
    Done,
}

/// A type-erased scheduled callback.
pub(crate) trait Callback {
    /// Run the closure if it is still pending; afterwards the state is `Done`.
    fn run(&self);
    /// Cancel if pending; returns the state it was in.
    fn cancel(&self) -> State;
    /// The current state.
    fn state(&self) -> State;
    /// Where the callback was scheduled (for debug mode and the exception
    /// handler's context).
    fn location(&self) -> &'static Location<'static>;
}

/// The single allocation behind a handle.
pub(crate) struct CallbackCell<F> {
    /// The closure; taken out when it runs or is cancelled.
    f: Cell<Option<F>>,
    /// See [`State`].
    state: Cell<State>,
    /// The `#[track_caller]` location of the `call_*` that scheduled it.
    location: &'static Location<'static>,
}

impl<F: FnOnce() + 'static> CallbackCell<F> {
    pub(crate) fn new_rc(
        f: F,
        state: State,
        location: &'static Location<'static>,
    ) -> Rc<dyn Callback> {
        Rc::new(CallbackCell {
            f: Cell::new(Some(f)),
            state: Cell::new(state),
            location,
        })
    }
}

impl<F: FnOnce()> Callback for CallbackCell<F> {
    fn run(&self) {
        if matches!(self.state.get(), State::Cancelled | State::Done) {
            return;
        }
        self.state.set(State::Done);
        if let Some(f) = self.f.take() {
            f();
        }
    }

    fn cancel(&self) -> State {
        let was = self.state.get();
        if matches!(was, State::Scheduled | State::Ready) {
            self.state.set(State::Cancelled);
            // Drop the closure now: it may hold the loop or big buffers, and
            // a cancelled timer can sit in the heap until compaction.
            drop(self.f.take());
        }
        was
    }

    fn state(&self) -> State {
        self.state.get()
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

/// A callback scheduled with [`Loop::call_soon`](crate::Loop::call_soon):
/// cancel it before it runs.
///
/// Dropping the handle does **not** cancel the callback.
///
/// ```
/// let lp = oneloop::Loop::new()?;
/// let h = lp.call_soon(|| unreachable!("cancelled before it ran"))?;
/// h.cancel();
/// assert!(h.cancelled());
/// lp.call_soon({ let lp = lp.clone(); move || lp.stop() })?;
/// lp.run_forever()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    /// The scheduled callback, shared with the ready queue.
    pub(crate) cb: Rc<dyn Callback>,
}

impl Handle {
    /// Cancel the callback if it has not run yet (CB-05). Cancelling after it
    /// ran, or twice, does nothing.
    pub fn cancel(&self) {
        self.cb.cancel();
    }

    /// Whether the callback was cancelled before it ran.
    pub fn cancelled(&self) -> bool {
        self.cb.state() == State::Cancelled
    }

    /// Where the callback was scheduled.
    pub fn location(&self) -> &'static Location<'static> {
        self.cb.location()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("state", &self.cb.state())
            .field("location", &self.cb.location())
            .finish()
    }
}

/// A callback scheduled with [`Loop::call_later`](crate::Loop::call_later) or
/// [`Loop::call_at`](crate::Loop::call_at).
///
/// Dropping the handle does **not** cancel the timer.
#[derive(Clone)]
pub struct TimerHandle {
    /// The scheduled callback, shared with the timer heap.
    pub(crate) cb: Rc<dyn Callback>,
    /// The deadline.
    pub(crate) when: Instant,
    /// The loop, to account for cancelled entries left in its heap.
    pub(crate) owner: Weak<LoopInner>,
}

impl TimerHandle {
    /// Cancel the timer if it has not fired yet (CB-05, TM-06). A cancelled
    /// timer never fires and never keeps the loop waiting.
    pub fn cancel(&self) {
        if self.cb.cancel() == State::Scheduled
            && let Some(inner) = self.owner.upgrade()
        {
            inner.timer_cancelled();
        }
    }

    /// Whether the timer was cancelled before it fired.
    pub fn cancelled(&self) -> bool {
        self.cb.state() == State::Cancelled
    }

    /// The deadline, on the loop's clock ([`Loop::time`](crate::Loop::time)).
    pub fn when(&self) -> Instant {
        self.when
    }

    /// Where the timer was scheduled.
    pub fn location(&self) -> &'static Location<'static> {
        self.cb.location()
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle")
            .field("when", &self.when)
            .field("state", &self.cb.state())
            .field("location", &self.cb.location())
            .finish()
    }
}
