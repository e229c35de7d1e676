//! [`Turn`]: one turn of an owned loop, the root future of the runtime's
//! `block_on`, which **is** the driver and runs the owned `LocalSet` beside
//! it.
//!
//! `LocalSet::block_on` would wrap the driver in `LocalSet::run_until`,
//! which on every poll of the root future enters the `LocalSet`, registers
//! its waker and ticks its queue, even when the poll is for an fd event and
//! no tokio task is ready (about 200 instructions per event, most of the
//! adapter's own cost after the select). Here the turn keeps the two apart:
//! each has its own waker (a [`Branch`] that records the wake, then wakes
//! the root), and a poll of the root future polls only what was woken: the
//! driver, then the `LocalSet` (as a future: one tick of up to 61 tasks,
//! each under its own coop budget), in that order, as `run_until` did.
//! While the turn runs, the thread is inside the `LocalSet`'s context
//! (`LocalSet::enter`), so `spawn_local` from a oneloop callback or task
//! spawns there, and every schedule of a local task wakes the `LocalSet`'s
//! branch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use tokio::task::LocalSet;

use crate::driver::{DriverTimer, State, yield_to_tokio};

/// One branch of the turn's root future: woken, it records that and wakes
/// the root.
#[derive(Debug)]
struct Branch {
    woken: AtomicBool,
    root: Waker,
}

impl Branch {
    /// Whether the branch was woken since the last call.
    fn take(&self) -> bool {
        self.woken.swap(false, Ordering::AcqRel)
    }
}

impl Wake for Branch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Already set: the root was woken since it last looked.
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.root.wake_by_ref();
        }
    }
}

/// The wakers of an owned loop's two branches, kept from turn to turn (a
/// wake between two turns, a local task woken from another thread, is
/// seen by the next).
#[derive(Debug)]
pub(crate) struct TurnWakes {
    driver: Arc<Branch>,
    local: Arc<Branch>,
    driver_waker: Waker,
    local_waker: Waker,
}

impl TurnWakes {
    /// New wakers for `root`, both branches marked woken: whatever the
    /// wakers they replace recorded is polled for.
    fn new(root: &Waker) -> TurnWakes {
        let branch = || {
            Arc::new(Branch {
                woken: AtomicBool::new(true),
                root: root.clone(),
            })
        };
        let (driver, local) = (branch(), branch());
        TurnWakes {
            driver_waker: Waker::from(driver.clone()),
            local_waker: Waker::from(local.clone()),
            driver,
            local,
        }
    }

    /// Whether these wakers wake `root`: whether it points to the same
    /// data (tokio's `block_on` passes a waker of its runtime's handle).
    /// `Waker::will_wake` compares the vtables' addresses too, and a waker
    /// and its clone can hold two copies of one vtable (from two codegen
    /// units, as in the Python extension's build): the wakers would be
    /// made again at every poll.
    fn serves(&self, root: &Waker) -> bool {
        std::ptr::eq(self.driver.root.data(), root.data())
    }
}

/// One owned-mode turn (see the module docs). It ends once the loop halts
/// (after `stop()`) or a remote wake arrived (it may be for the root future
/// of `run_until_complete`, which the scheduler polls between turns).
///
/// It ends one poll later than it decides to: tokio keeps the wakers of
/// tasks that yielded to it (`tokio::task::yield_now`, or a task that spent
/// its coop budget, a oneloop task among them) in a list of the `block_on`
/// call, woken after its next reactor poll and dropped unwoken when
/// `block_on` returns. So the turn first yields to tokio itself, and
/// returns at the poll that follows, once those wakers ran.
pub(crate) struct Turn<'a> {
    pub(crate) state: &'a State,
    pub(crate) timer: &'a mut DriverTimer,
    pub(crate) local: Pin<&'a mut LocalSet>,
    pub(crate) wakes: &'a mut Option<TurnWakes>,
    pub(crate) primed: bool,
    /// The turn has decided to end (see above).
    pub(crate) ending: bool,
}

impl Future for Turn<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let st = this.state;
        if this.ending {
            return Poll::Ready(());
        }
        // The branches wake the waker of the latest poll (the future
        // contract); tokio's `block_on` passes the same one every time.
        if this.wakes.as_ref().is_some_and(|w| !w.serves(cx.waker())) {
            *this.wakes = None;
        }
        let wakes = this.wakes.get_or_insert_with(|| TurnWakes::new(cx.waker()));
        let first = !this.primed;
        if first {
            // First poll: let tokio poll its reactor before this turn's
            // first dispatch, so that fds already ready are part of it
            // (LC-05), and select whatever tokio then says.
            this.primed = true;
            wakes.driver.take();
            st.reselect.set(true);
            yield_to_tokio(&mut Context::from_waker(&wakes.driver_waker));
        } else if wakes.driver.take() {
            let driven = st.drive(this.timer, &mut Context::from_waker(&wakes.driver_waker));
            if driven.closed || driven.remote || st.halted() {
                this.ending = true;
                yield_to_tokio(cx);
                return Poll::Pending;
            }
        }
        // Tasks spawned or woken before the turn began did not necessarily
        // wake this turn's branch: tick at its first poll.
        if wakes.local.take() || first {
            // Its output (all its tasks are done) means nothing here: new
            // tasks may be spawned at any time.
            let _ = this
                .local
                .as_mut()
                .poll(&mut Context::from_waker(&wakes.local_waker));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{RawWaker, RawWakerVTable};

    use super::*;

    /// Wakes of the root below.
    static ROOT_WAKES: AtomicUsize = AtomicUsize::new(0);

    /// One vtable in two copies, as two codegen units may have it: a clone
    /// of a waker over `A` is over `B`.
    static A: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);
    static B: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);

    fn clone(data: *const ()) -> RawWaker {
        RawWaker::new(data, &B)
    }
    fn wake(_: *const ()) {
        ROOT_WAKES.fetch_add(1, Ordering::SeqCst);
    }
    fn drop(_: *const ()) {}

    #[test]
    fn wakers_serve_a_root_whose_clone_has_another_vtable() {
        static ROOT: u8 = 0;
        // SAFETY: the vtable's functions ignore the data pointer, which
        // points to a static.
        let root = unsafe { Waker::from_raw(RawWaker::new(std::ptr::from_ref(&ROOT).cast(), &A)) };
        let wakes = TurnWakes::new(&root);
        // `will_wake` says no to the waker the branches hold.
        assert!(!root.will_wake(&wakes.driver.root));
        assert!(wakes.serves(&root));

        // New wakers poll both branches once.
        assert!(wakes.driver.take() && wakes.local.take());
        assert!(!wakes.driver.take() && !wakes.local.take());
        // A branch's wakes reach the root once until the turn looks.
        let before = ROOT_WAKES.load(Ordering::SeqCst);
        wakes.driver_waker.wake_by_ref();
        wakes.driver_waker.wake_by_ref();
        assert_eq!(ROOT_WAKES.load(Ordering::SeqCst), before + 1);
        assert!(wakes.driver.take() && !wakes.local.take());
        wakes.driver_waker.wake_by_ref();
        assert_eq!(ROOT_WAKES.load(Ordering::SeqCst), before + 2);
    }
}
