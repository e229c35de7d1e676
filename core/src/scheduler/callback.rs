//! A scheduled callback: one allocation holding the closure, its state and
//! its call site, shared by the ready queue (or the timer queue) and the
//! user's [`Handle`](crate::Handle) through an `Rc`.
//!
//! Returning a cancellable handle therefore costs two reference-count
//! updates and no extra allocation; dropping the handle without using it is
//! the fast path.

use std::cell::Cell;
use std::panic::Location;
use std::rc::Rc;

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
