//! [`sleep`], [`sleep_until`] and [`timeout`]: std futures on the running
//! loop's timers.

use std::fmt;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::future::LoopFuture;
use crate::handle::TimerHandle;
use crate::policy;

/// Wait `delay` on the running loop (`asyncio.sleep`).
///
/// # Errors
/// The future yields [`ErrorKind::NotRunning`] when polled outside a running
/// loop, and [`ErrorKind::Cancelled`] when its task is cancelled.
///
/// # Cancel safety
/// Dropping it cancels the timer.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let lp = oneloop::Loop::new()?;
/// let start = Instant::now();
/// lp.run_until_complete(oneloop::sleep(Duration::from_millis(10)))??;
/// assert!(start.elapsed() >= Duration::from_millis(10));
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn sleep(delay: Duration) -> Sleep {
    Sleep {
        target: Target::After(delay),
        state: None,
    }
}

/// Wait until `deadline` on the running loop's clock.
///
/// # Errors
/// As [`sleep`].
///
/// # Cancel safety
/// Dropping it cancels the timer.
///
/// # Examples
///
/// A fixed-rate tick that does not drift, however long each round takes:
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop::Loop::new()?;
/// let period = Duration::from_millis(2);
/// let start = lp.time();
/// let ticks = lp.run_until_complete(async {
///     let mut next = start;
///     for _ in 0..3 {
///         next += period;
///         oneloop::sleep_until(next).await?;
///     }
///     Ok::<_, oneloop::Error>(next)
/// })??;
/// assert!(lp.time() >= ticks && ticks == start + 3 * period);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        target: Target::At(deadline),
        state: None,
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    After(Duration),
    At(Instant),
}

/// The future of [`sleep`] and [`sleep_until`].
///
/// It does nothing until first polled, and then arms a timer on the loop
/// running on that thread: a `Sleep` may be made anywhere, but only a
/// running oneloop loop can drive it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use oneloop::ErrorKind;
///
/// let nap = oneloop::sleep(Duration::from_millis(1)); // nothing armed yet
/// let lp = oneloop::Loop::new()?;
/// lp.run_until_complete(nap)??;
///
/// // Polled by another executor, with no oneloop loop running:
/// let err = futures::executor::block_on(oneloop::sleep(Duration::ZERO)).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::NotRunning);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub struct Sleep {
    target: Target,
    /// Made on first poll, on the loop that polls it.
    state: Option<(LoopFuture<()>, TimerHandle)>,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("target", &self.target)
            .field("armed", &self.state.is_some())
            .finish()
    }
}

impl StdFuture for Sleep {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.state.is_none() {
            let lp = match policy::get_running_loop() {
                Ok(lp) => lp,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let fut = lp.create_future::<()>();
            let done = fut.clone();
            let when = match self.target {
                Target::After(d) => lp.time().checked_add(d),
                Target::At(t) => Some(t),
            };
            let when = when.unwrap_or_else(|| lp.time() + Duration::from_secs(86_400 * 365 * 30));
            let timer = match lp.call_at(when, move || {
                let _ = done.set_result(());
            }) {
                Ok(t) => t,
                Err(e) => return Poll::Ready(Err(e)),
            };
            self.state = Some((fut, timer));
        }
        let Some((fut, _)) = &mut self.state else {
            unreachable!("set above")
        };
        Pin::new(fut).poll(cx)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((_, timer)) = &self.state {
            timer.cancel();
        }
    }
}

/// Run `future` for at most `limit` (`asyncio.timeout` / `wait_for`).
///
/// On expiry the inner future is dropped (its cleanup runs then, before
/// the error is returned, CN-05) and the result is
/// [`ErrorKind::TimedOut`].
///
/// # Cancel safety
/// As cancel-safe as `future`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let lp = oneloop::Loop::new()?;
/// let r = lp.run_until_complete(oneloop::timeout(
///     Duration::from_millis(5),
///     oneloop::sleep(Duration::from_secs(100)),
/// ))?;
/// assert_eq!(r.unwrap_err().kind(), oneloop::ErrorKind::TimedOut);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn timeout<F: StdFuture>(limit: Duration, future: F) -> Timeout<F> {
    Timeout {
        future: Some(Box::pin(future)),
        sleep: sleep(limit),
    }
}

/// The future of [`timeout`]: `Ok(output)` if the inner future finished
/// in time, [`ErrorKind::TimedOut`] otherwise.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop::Loop::new()?;
/// let quick = oneloop::timeout(Duration::from_secs(5), async { 7 });
/// assert_eq!(lp.run_until_complete(quick)??, 7);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub struct Timeout<F: StdFuture> {
    future: Option<Pin<Box<F>>>,
    sleep: Sleep,
}

impl<F: StdFuture> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("sleep", &self.sleep)
            .finish()
    }
}

impl<F: StdFuture> StdFuture for Timeout<F> {
    type Output = Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(fut) = self.future.as_mut() else {
            return Poll::Ready(Err(Error::new(
                ErrorKind::InvalidState,
                "timeout polled after completion",
            )));
        };
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            self.future = None;
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.future = None;
                Poll::Ready(Err(Error::new(
                    ErrorKind::TimedOut,
                    "the operation timed out",
                )))
            }
            Poll::Ready(Err(e)) => {
                self.future = None;
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
