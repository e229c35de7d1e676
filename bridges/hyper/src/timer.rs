//! [`LoopTimer`] and [`LoopSleep`]: hyper's `Send + Sync` timer over loop
//! timers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use hyper::rt::{Sleep, Timer};
use oneloop::{Loop, RemoteLoop, RemoteTimer};

/// hyper's [`Timer`] on a oneloop loop: each sleep is a timer of the loop
/// (through [`RemoteLoop::call_at`], so the timer and its sleeps are
/// `Send + Sync`, as hyper requires), woken on the loop's thread.
///
/// A [`LoopSleep`] dropped before its deadline cancels its loop timer;
/// `reset` moves it (cancel, re-arm). On a loop that has closed, a sleep
/// completes at once: nothing would ever fire it, and a timeout that never
/// fires would hang the connection waiting on it.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use hyper::rt::Timer;
///
/// let lp = oneloop::Loop::new()?;
/// let timer = oneloop_hyper::LoopTimer::new(&lp);
///
/// // What you do with it: give it to a connection builder.
/// let mut http1 = hyper::server::conn::http1::Builder::new();
/// http1.timer(timer.clone()).header_read_timeout(Duration::from_secs(10));
///
/// // What hyper does with it: sleeps, which are loop timers.
/// let start = Instant::now();
/// lp.run_until_complete(timer.sleep(Duration::from_millis(2)))?;
/// assert!(start.elapsed() >= Duration::from_millis(2));
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LoopTimer {
    remote: RemoteLoop,
}

impl LoopTimer {
    /// A timer on `lp`.
    pub fn new(lp: &Loop) -> LoopTimer {
        LoopTimer {
            remote: lp.remote(),
        }
    }

    /// A timer on the loop `remote` reaches (from any thread).
    pub fn from_remote(remote: RemoteLoop) -> LoopTimer {
        LoopTimer { remote }
    }
}

impl Timer for LoopTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(LoopSleep::until(&self.remote, deadline_after(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(LoopSleep::until(&self.remote, deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<LoopSleep>() {
            Some(mine) => mine.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// `now + duration`, saturating far in the future (hyper may ask for
/// `Duration::MAX`-like timeouts).
fn deadline_after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// One arming of a sleep: what its loop timer sets when it fires.
#[derive(Default)]
struct Shot {
    fired: AtomicBool,
    waker: AtomicWaker,
}

/// A sleep of [`LoopTimer`]: completes at its deadline by the loop's clock
/// (never early), on the loop's thread. `Send + Sync`; dropping it cancels
/// its loop timer.
pub struct LoopSleep {
    remote: RemoteLoop,
    deadline: Instant,
    /// This arming's flag; a new one per `reset`, so a timer of an earlier
    /// arming that fires late cannot end this one.
    shot: Arc<Shot>,
    /// `None` once the loop had closed when arming (then `shot` is fired).
    timer: Option<RemoteTimer>,
}

impl fmt::Debug for LoopSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopSleep")
            .field("deadline", &self.deadline)
            .field("fired", &self.shot.fired.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl LoopSleep {
    /// A sleep until `deadline` on the loop `remote` reaches.
    pub fn until(remote: &RemoteLoop, deadline: Instant) -> LoopSleep {
        let mut sleep = LoopSleep {
            remote: remote.clone(),
            deadline,
            shot: Arc::default(),
            timer: None,
        };
        sleep.arm();
        sleep
    }

    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Move the deadline: the current loop timer is cancelled and a new one
    /// armed, even if the sleep had already completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use oneloop_hyper::LoopSleep;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let mut idle = LoopSleep::until(&lp.remote(), Instant::now() + Duration::from_secs(3600));
    /// let soon = Instant::now() + Duration::from_millis(1);
    /// idle.reset(soon); // the hour-long timer is cancelled
    /// lp.run_until_complete(&mut idle)?;
    /// assert!(Instant::now() >= soon && idle.deadline() == soon);
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn reset(&mut self, deadline: Instant) {
        self.cancel();
        self.deadline = deadline;
        self.shot = Arc::default();
        self.arm();
    }

    fn arm(&mut self) {
        let shot = self.shot.clone();
        match self.remote.call_at(self.deadline, move || {
            shot.fired.store(true, Ordering::Release);
            shot.waker.wake();
        }) {
            Ok(timer) => self.timer = Some(timer),
            // The loop is closed: complete now rather than never.
            Err(_) => self.shot.fired.store(true, Ordering::Release),
        }
    }

    fn cancel(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.cancel();
        }
    }
}

impl Future for LoopSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shot = &self.shot;
        if shot.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        shot.waker.register(cx.waker());
        // It may have fired between the check and the registration.
        if shot.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Sleep for LoopSleep {}

impl Drop for LoopSleep {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping a sleep cancels its loop timer, which frees the timer's
    /// closure (and its hold on the sleep's state) at once.
    #[test]
    fn a_dropped_sleep_cancels_its_loop_timer() {
        let lp = Loop::new().unwrap();
        let timer = LoopTimer::new(&lp);
        let sleep = LoopSleep::until(&lp.remote(), deadline_after(Duration::from_secs(3600)));
        let shot = Arc::downgrade(&sleep.shot);
        let armed = Arc::downgrade(&sleep.shot);
        let mut boxed: Pin<Box<dyn Sleep>> = Box::pin(sleep);
        // A reset re-arms: the first arming's timer is cancelled.
        timer.reset(&mut boxed, deadline_after(Duration::from_secs(7200)));
        assert!(
            armed.upgrade().is_none(),
            "reset left the first loop timer armed"
        );
        let now = boxed.as_mut().downcast_mut_pin::<LoopSleep>().unwrap();
        let current = Arc::downgrade(&now.shot);
        drop(boxed);
        assert!(
            current.upgrade().is_none(),
            "drop left the loop timer armed"
        );
        assert!(shot.upgrade().is_none());
        lp.close().unwrap();
    }

    #[test]
    fn on_a_closed_loop_a_sleep_completes_at_once() {
        let lp = Loop::new().unwrap();
        let timer = LoopTimer::new(&lp);
        lp.close().unwrap();
        let sleep = timer.sleep(Duration::from_secs(3600));
        assert!(futures::FutureExt::now_or_never(sleep).is_some());
    }
}
