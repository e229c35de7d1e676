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

/// A timer whose handle crosses threads ([`RemoteTimer`](crate::RemoteTimer)):
/// the state is atomic and the closure `Send`, so it may be cancelled from
/// any thread; the timer queue holds it through [`SharedTimerEntry`].
pub(crate) struct SharedTimer {
    /// [`State`] as a `u8`: only `Scheduled`, `Cancelled` or `Done`.
    state: std::sync::atomic::AtomicU8,
    f: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    location: &'static Location<'static>,
}

const SCHEDULED: u8 = 0;
const CANCELLED: u8 = 1;
const DONE: u8 = 2;

impl SharedTimer {
    pub(crate) fn new(
        f: Box<dyn FnOnce() + Send>,
        location: &'static Location<'static>,
    ) -> SharedTimer {
        SharedTimer {
            state: std::sync::atomic::AtomicU8::new(SCHEDULED),
            f: std::sync::Mutex::new(Some(f)),
            location,
        }
    }

    /// Move from `Scheduled` to `to`; whether this call did.
    fn settle(&self, to: u8) -> bool {
        use std::sync::atomic::Ordering::AcqRel;
        self.state
            .compare_exchange(SCHEDULED, to, AcqRel, std::sync::atomic::Ordering::Acquire)
            .is_ok()
    }

    fn take(&self) -> Option<Box<dyn FnOnce() + Send>> {
        self.f.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Cancel if still scheduled (any thread); returns the state it was in.
    pub(crate) fn cancel(&self) -> State {
        if self.settle(CANCELLED) {
            // Dropped here, on the cancelling thread: the closure is `Send`.
            drop(self.take());
            State::Scheduled
        } else {
            self.state()
        }
    }

    pub(crate) fn state(&self) -> State {
        match self.state.load(std::sync::atomic::Ordering::Acquire) {
            SCHEDULED => State::Scheduled,
            CANCELLED => State::Cancelled,
            _ => State::Done,
        }
    }
}

/// The timer queue's side of a [`SharedTimer`].
pub(crate) struct SharedTimerEntry(pub(crate) std::sync::Arc<SharedTimer>);

impl Callback for SharedTimerEntry {
    fn run(&self) {
        if self.0.settle(DONE)
            && let Some(f) = self.0.take()
        {
            f();
        }
    }

    fn cancel(&self) -> State {
        self.0.cancel()
    }

    fn state(&self) -> State {
        self.0.state()
    }

    fn location(&self) -> &'static Location<'static> {
        self.0.location
    }
}
