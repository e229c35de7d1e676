//! Wakes held back: [`defer_wakes`] lets a thread that wakes many loops (or
//! one loop many times) in a burst send each backend's wake once, when the
//! burst is over.
//!
//! It sits below the scheduler (its inbox sends every wake through
//! [`wake_or_defer`]) and imports nothing but the plug, so its thread-local
//! lives here rather than in `context`, whose thread-locals name loops.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::backend::RemoteWake;

thread_local! {
    /// Backend wakes held back by open `defer_wakes` scopes on this thread.
    static DEFERRED: RefCell<Deferred> = const {
        RefCell::new(Deferred { depth: 0, wakes: Vec::new() })
    };
}

/// The open `defer_wakes` scopes of a thread and the wakes they hold, each
/// backend once.
struct Deferred {
    depth: usize,
    wakes: Vec<Arc<dyn RemoteWake>>,
}

/// Wake `waker` now, or once when this thread's outermost `defer_wakes`
/// scope ends.
pub(crate) fn wake_or_defer(waker: &Arc<dyn RemoteWake>) {
    let deferred = DEFERRED
        .try_with(|d| {
            let mut d = d.borrow_mut();
            if d.depth == 0 {
                return false;
            }
            if !d.wakes.iter().any(|w| Arc::ptr_eq(w, waker)) {
                d.wakes.push(waker.clone());
            }
            true
        })
        .unwrap_or(false);
    if !deferred {
        waker.wake();
    }
}

/// Hold back the wake-ups this thread sends to loops (a
/// [`RemoteLoop`](crate::RemoteLoop) call, a waker of a task on another
/// thread's loop) until the returned guard drops, then wake each loop once.
///
/// For a thread that wakes many loop tasks in one burst: a reactor
/// dispatching the readiness of many sockets, say. Without it, the first
/// wake of the burst can switch to the loop's thread before the burst is
/// done (always so when both threads share a CPU), and the loop sleeps and
/// wakes again for each later one; with it, the loop wakes once and finds
/// the whole burst queued. The tokio bridge holds one around each turn of
/// its reactor. Nothing is lost or reordered: what is posted is queued at
/// once, only the backend's wake waits.
///
/// Scopes nest; the outermost one sends the wakes. Do not block on a loop
/// (wait for its answer) while holding one: the loop may not be woken until
/// the guard drops.
///
/// # Examples
///
/// ```
/// let lp = oneloop::Loop::new()?;
/// let remote = lp.remote();
/// std::thread::spawn(move || {
///     let _batch = oneloop::defer_wakes();
///     for i in 0..3 {
///         remote.call_soon_threadsafe(move || println!("{i}")).unwrap();
///     }
///     remote.stop().unwrap(); // the loop is woken once, as `_batch` drops
/// });
/// lp.run_forever()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn defer_wakes() -> DeferredWakes {
    DEFERRED.with(|d| d.borrow_mut().depth += 1);
    DeferredWakes {
        _thread_bound: PhantomData,
    }
}

/// The guard of [`defer_wakes`]: dropping it sends the wakes held back.
/// It belongs to the thread that made it (`!Send`).
#[must_use = "wakes are held back only while the guard lives"]
pub struct DeferredWakes {
    _thread_bound: PhantomData<*const ()>,
}

impl fmt::Debug for DeferredWakes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredWakes").finish_non_exhaustive()
    }
}

impl Drop for DeferredWakes {
    fn drop(&mut self) {
        // Taken out of the thread-local before waking: a wake runs backend
        // code, which may post again (and must find the scope closed).
        let wakes = DEFERRED
            .try_with(|d| {
                let mut d = d.borrow_mut();
                d.depth -= 1;
                if d.depth == 0 {
                    std::mem::take(&mut d.wakes)
                } else {
                    Vec::new()
                }
            })
            .unwrap_or_default();
        for waker in wakes {
            waker.wake();
        }
    }
}
