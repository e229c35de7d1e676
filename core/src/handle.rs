//! [`Handle`] and [`TimerHandle`]: what `call_soon`, `call_later` and
//! `call_at` return, to cancel the call before it runs.
//!
//! Both share the scheduled callback's one allocation with the queue that
//! holds it (`scheduler::callback`); a handle holds the loop only weakly.

use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Instant;

use crate::event_loop::LoopInner;
use crate::scheduler::callback::{Callback, State};

/// A callback scheduled with [`Loop::call_soon`](crate::Loop::call_soon):
/// cancel it before it runs.
///
/// Dropping the handle does **not** cancel the callback.
///
/// # Examples
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
///
/// # Examples
///
/// A request timeout, cancelled when the answer comes first:
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop::Loop::new()?;
/// let timeout = lp.call_later(Duration::from_secs(30), || panic!("no answer in 30 s"))?;
/// assert!(timeout.when() >= lp.time() + Duration::from_secs(29));
///
/// lp.call_soon({
///     let (timeout, lp) = (timeout.clone(), lp.clone());
///     move || {
///         // the answer arrived
///         timeout.cancel();
///         lp.stop();
///     }
/// })?;
/// lp.run_forever()?;
/// assert!(timeout.cancelled());
/// # Ok::<(), oneloop::Error>(())
/// ```
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
            inner.sched.timer_cancelled();
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
