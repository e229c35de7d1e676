//! Small helpers the checks share: ordered traces, a one-shot signal that
//! any thread can set, and a single trip through the loop.

use std::cell::RefCell;
use std::rc::Rc;

/// A single-threaded ordered log, cheap to clone into callbacks.
pub(crate) type Trace<T> = Rc<RefCell<Vec<T>>>;

/// A new, empty trace.
pub(crate) fn trace<T>() -> Trace<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// A callback that appends `v` to `t`.
pub(crate) fn push<T: Clone + 'static>(t: &Trace<T>, v: T) -> impl FnOnce() + 'static {
    let t = t.clone();
    move || t.borrow_mut().push(v)
}

/// A future that is pending once, then ready: one trip through the loop.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// A one-shot value set from any thread, awaited on the loop: the waker it
/// holds is woken by whoever sets it, so awaiting it depends on no busy
/// re-polling (the wake-up checks rely on that).
pub(crate) struct Signal<T>(
    std::sync::Arc<std::sync::Mutex<(Option<T>, Option<std::task::Waker>)>>,
);

impl<T> Clone for Signal<T> {
    fn clone(&self) -> Self {
        Signal(self.0.clone())
    }
}

impl<T> Signal<T> {
    pub(crate) fn new() -> Signal<T> {
        Signal(std::sync::Arc::new(std::sync::Mutex::new((None, None))))
    }

    /// Set the value (the first one wins) and wake the awaiter.
    pub(crate) fn set(&self, v: T) {
        let waker = {
            let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if g.0.is_none() {
                g.0 = Some(v);
            }
            g.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T: Clone> std::future::Future for Signal<T> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &g.0 {
            Some(v) => std::task::Poll::Ready(v.clone()),
            None => {
                g.1 = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

/// On a helper thread: wait (up to 5 s) until the loop's thread `tid` is
/// asleep in the kernel, which for a loop with nothing to do means blocked
/// in its poll, so that what the helper does next has to wake it.
///
/// Returns `false` where the OS does not tell; the helper then goes on at
/// once, and the check records with [`Env::skip_part`](crate::Env::skip_part)
/// that it could not make sure the loop was blocked. A thread that sleeps
/// for another reason (a lock) makes one run weaker, never a false failure.
pub(crate) fn wait_for_loop_asleep(tid: i32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    crate::support::wait_until_asleep(tid, deadline).is_some()
}

/// What a check records when [`wait_for_loop_asleep`] could not tell.
pub(crate) const ASLEEP_UNKNOWN: &str = "no /proc/self/task/<tid>/stat on this system: \
     that the loop was blocked in its poll (not merely busy) when woken is not made sure of";
