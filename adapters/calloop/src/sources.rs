//! The calloop sources one oneloop loop inserts into its host, and when it
//! dispatches.
//!
//! Per loop, never per callback, per timer or per fd (PERFORMANCE.md):
//! - one [`Generic`] over the loop's [`Selector`]: the private,
//!   level-triggered epoll set that holds every watched fd and the wake
//!   eventfd (`Send + Sync`, safe in a signal handler). calloop's poller
//!   reports the selector's one fd while anything in it is ready, and the
//!   source's callback selects with a zero timeout. calloop idles are not
//!   enough for "dispatch soon": `dispatch` polls *before* it runs idles and
//!   does not shorten the poll for them, so an idle queued from an idle
//!   waits for the whole poll timeout (HOSTS.md §2.5); a wake does not;
//! - one [`Timer`] at the scheduler's earliest deadline, replaced when that
//!   deadline changes (calloop keeps timers in a heap; one per oneloop timer
//!   would make every `call_later` a host insertion).
//!
//! Adding or removing a watched fd is one `epoll_ctl` on the selector and
//! touches nothing of calloop's, so thousands of connections cost calloop
//! one source.
//!
//! # When oneloop code runs
//!
//! One host `dispatch` runs one oneloop iteration (two at most, see the
//! timer below), with every fd of the loop already reported: they are all
//! behind the selector's one select (the `Backend` contract).
//!
//! - **The selector reported something**: the iteration runs right there,
//!   in the selector source's callback, after its select. Nothing else of
//!   oneloop's is reported later in that poll, so there is nothing to wait
//!   for, and no idle to allocate (two allocations and frees, and calloop's
//!   idle list, per iteration: about a fifth of a 1 KiB echo request).
//!   Fd changes made by oneloop callbacks are `epoll_ctl`s on the selector
//!   and touch nothing of calloop's; a callback that closes the loop
//!   removes the source being dispatched, which calloop finishes once the
//!   callback returns.
//! - **Attached, the timer fired** (or the select failed): **one** calloop
//!   idle, queued by the source's callback, runs the iteration once calloop
//!   has delivered every event of the poll (unless the selector's callback
//!   runs it first in that poll). Work queued by a oneloop callback wakes
//!   the selector, so the next host poll returns at once instead of
//!   waiting for an idle that would not shorten it.
//! - **Owned** (`Backend::turn` runs calloop): the turn knows what was
//!   armed before it polls: `Now` polls with a zero timeout (no wake-up
//!   write and read on the selector), `At(t)` polls with the time left (no
//!   calloop `Timer` source inserted and removed per deadline), and if the
//!   selector reported nothing, the turn runs the iteration itself once
//!   `EventLoop::dispatch` returns and the armed moment has come (work a
//!   native calloop source queued for oneloop included).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calloop::generic::Generic;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{Idle, LoopHandle, Mode, PostAction, RegistrationToken};
use oneloop::backend::{Dispatch, Driver, Interest, NextDispatch, RemoteWake};
use oneloop::native::Selector;

/// Everything one loop inserted into its calloop host.
///
/// # Invariants
/// - The callbacks given to calloop hold only a `Weak<Sources>`, so a host
///   that outlives the loop keeps nothing of it alive, and calls nothing.
/// - No `RefCell` borrow here is held across a call that can run oneloop
///   code (`Driver::dispatch`), so oneloop callbacks may add and remove fds
///   and re-arm from anywhere.
/// - `timer` and `selector_token` hold exactly the tokens of sources that
///   are still in the host; `idle` is the queued, not yet started, dispatch
///   idle. An owned loop never inserts either of the two (see the module
///   docs): its turn polls with the armed timeout and dispatches itself.
pub(crate) struct Sources<D: 'static> {
    me: Weak<Sources<D>>,
    /// The host's handle, weakly: oneloop does not keep a compositor's loop
    /// alive; once it is gone every operation is a no-op or an error. (A
    /// closure because calloop 0.14 does not export `WeakLoopHandle`'s name.)
    handle: Box<dyn Fn() -> Option<LoopHandle<'static, D>>>,
    /// The loop's side of the plug.
    driver: Driver,
    /// The watched fds and the wake; shared with its `Generic` source.
    selector: Rc<Selector>,
    waker: Arc<dyn RemoteWake>,
    selector_token: Cell<Option<RegistrationToken>>,
    /// We woke the selector and its source has not run since: waking again
    /// would only cost a syscall.
    woken: Cell<bool>,
    /// The one timer: its deadline and token.
    timer: Cell<Option<(Instant, RegistrationToken)>>,
    idle: RefCell<Option<Idle<'static>>>,
    /// Owned mode: `Backend::turn` runs the iteration (no idle, no timer
    /// source, no wake for `Now`).
    owned: bool,
    /// Owned mode: the scheduler's last `arm`, which the next turn polls
    /// for.
    armed: Cell<NextDispatch>,
    /// Owned mode: an iteration ran during this turn's host dispatch (the
    /// selector's callback ran it), so the turn runs none after it: the
    /// work that iteration queued waits for the next poll (CB-04).
    dispatched: Cell<bool>,
    closed: Cell<bool>,
}

fn host_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the calloop event loop of this oneloop loop was dropped",
    )
}

impl<D: 'static> Sources<D> {
    /// The sources of a new loop on `handle`'s event loop: for now the
    /// selector's, inserted at once.
    pub(crate) fn new(
        handle: &LoopHandle<'static, D>,
        driver: Driver,
        owned: bool,
    ) -> io::Result<Rc<Sources<D>>> {
        let selector = Rc::new(Selector::new()?);
        let waker = selector.waker();
        let sources = Rc::new_cyclic(|me| Sources {
            me: me.clone(),
            handle: {
                let weak = handle.downgrade();
                Box::new(move || weak.upgrade())
            },
            driver,
            selector: selector.clone(),
            waker,
            selector_token: Cell::new(None),
            woken: Cell::new(false),
            timer: Cell::new(None),
            idle: RefCell::new(None),
            owned,
            armed: Cell::new(NextDispatch::OnEvent),
            dispatched: Cell::new(false),
            closed: Cell::new(false),
        });
        let me = sources.me.clone();
        // Level-triggered: calloop reports the selector's fd on every poll
        // while a watched fd is ready, which is the level the scheduler
        // needs, with no re-check of our own.
        let source = Generic::new(selector, calloop::Interest::READ, Mode::Level);
        let token = handle
            .insert_source(source, move |_, selector, _: &mut D| {
                if let Some(me) = me.upgrade() {
                    me.selected(selector);
                }
                Ok(PostAction::Continue)
            })
            .map_err(|e| io::Error::from(e.error))?;
        sources.selector_token.set(Some(token));
        Ok(sources)
    }

    pub(crate) fn handle(&self) -> Option<LoopHandle<'static, D>> {
        (self.handle)()
    }

    /// The wake other threads use: an eventfd write into the selector.
    pub(crate) fn waker(&self) -> Arc<dyn RemoteWake> {
        self.waker.clone()
    }

    /// The selector's fd is readable: report its ready fds, consume its
    /// wake, and run the iteration if anything was there (see the module
    /// docs).
    fn selected(&self, selector: &Selector) {
        // The loop, upgraded once for the reports and the dispatch.
        let target = self.driver.target();
        let report = |fd, r| {
            if let Some(lp) = &target {
                lp.fd_ready(fd, r);
            }
        };
        match selector.select(Some(Duration::ZERO), report) {
            Ok(seen) => {
                if seen.woken {
                    self.woken.set(false);
                }
                if seen.any() {
                    self.dispatch_now_or_schedule(target.as_deref());
                }
            }
            // Not expected of a zero-timeout epoll_wait on our own epoll
            // fd; dispatch anyway so that nothing waits on a lost event.
            Err(e) => {
                tracing::warn!(target: "oneloop", "selecting the watched fds failed: {e}");
                self.dispatch_now_or_schedule(target.as_deref());
            }
        }
    }

    /// The selector reported something, and with it every fd the loop
    /// watches: run the iteration now, unless an idle queued by the timer
    /// in this poll will (see the module docs).
    fn dispatch_now_or_schedule(&self, target: Option<&dyn Dispatch>) {
        if self.closed.get() || self.idle.borrow().is_some() {
            return;
        }
        self.dispatched.set(true);
        if let Some(lp) = target {
            lp.dispatch();
        }
    }

    /// Have the scheduler iteration run once calloop has delivered the
    /// events of the current poll: attached, a calloop idle, queued once;
    /// owned, the turn runs it after the host dispatch. Called only from
    /// our sources' callbacks, i.e. before calloop runs this dispatch's
    /// idles.
    fn schedule_dispatch(&self) {
        if self.owned || self.closed.get() || self.idle.borrow().is_some() {
            return;
        }
        let Some(handle) = self.handle() else { return };
        let me = self.me.clone();
        let idle = handle.insert_idle(move |_: &mut D| {
            let Some(me) = me.upgrade() else { return };
            // Forget the idle before running oneloop code, which may close
            // the loop (cancelling a running idle would panic in calloop).
            drop(me.idle.borrow_mut().take());
            me.driver.dispatch();
        });
        *self.idle.borrow_mut() = Some(idle);
    }

    /// [`Backend::arm`](oneloop::backend::Backend::arm).
    pub(crate) fn arm(&self, next: NextDispatch) {
        if self.closed.get() {
            return;
        }
        if self.owned {
            // Only ever called on the loop's thread, so never while the
            // turn blocks: the next poll, or the end of the current turn,
            // reads it.
            self.armed.set(next);
            return;
        }
        match next {
            // The timer stays: it is still the earliest deadline, and the
            // dispatch re-arms with whatever is next.
            NextDispatch::Now => {
                if !self.woken.replace(true) {
                    self.waker.wake();
                }
            }
            NextDispatch::At(t) => {
                if self.timer.get().is_some_and(|(armed, _)| armed == t) {
                    return;
                }
                self.remove_timer();
                self.insert_timer(t);
            }
            NextDispatch::OnEvent => self.remove_timer(),
        }
    }

    fn insert_timer(&self, deadline: Instant) {
        let Some(handle) = self.handle() else { return };
        let me = self.me.clone();
        let inserted = handle.insert_source(
            Timer::from_deadline(deadline),
            move |_, &mut (), _: &mut D| {
                if let Some(me) = me.upgrade() {
                    // calloop removes the source on `Drop`: forget its token.
                    me.timer.set(None);
                    me.schedule_dispatch();
                }
                TimeoutAction::Drop
            },
        );
        // Inserting a timer only fails if calloop's source list cannot
        // grow; the wake still wakes the loop then, only early.
        match inserted {
            Ok(token) => self.timer.set(Some((deadline, token))),
            Err(e) => {
                tracing::warn!(target: "oneloop", "calloop refused the timer source: {}", e.error);
                self.arm(NextDispatch::Now);
            }
        }
    }

    fn remove_timer(&self) {
        if let Some((_, token)) = self.timer.take()
            && let Some(handle) = self.handle()
        {
            handle.remove(token);
        }
    }

    /// Owned mode: how long the turn's host dispatch may block, from what
    /// was armed (rounded up to `granularity`, so a deadline is never
    /// missed by polling too briefly). The clock is read only for a
    /// deadline.
    pub(crate) fn poll_timeout(&self, granularity: Duration) -> Option<Duration> {
        self.dispatched.set(false);
        match self.armed.get() {
            NextDispatch::Now => Some(Duration::ZERO),
            NextDispatch::OnEvent => None,
            at @ NextDispatch::At(_) => at.timeout(Instant::now(), granularity),
        }
    }

    /// Owned mode, after the turn's host dispatch: if the selector's
    /// callback ran no iteration, run one when the armed moment has come
    /// (also when a native calloop source queued oneloop work while the
    /// host dispatched, or a select failed).
    pub(crate) fn dispatch_if_due(&self) {
        if self.dispatched.replace(false) || self.closed.get() {
            return;
        }
        let due = match self.armed.get() {
            NextDispatch::Now => true,
            NextDispatch::At(t) => t <= Instant::now(),
            NextDispatch::OnEvent => false,
        };
        if due {
            self.driver.dispatch();
        }
    }

    /// [`Backend::watch`](oneloop::backend::Backend::watch): one
    /// `epoll_ctl` on the selector; calloop is not involved.
    pub(crate) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        if !interest.is_none() {
            if self.closed.get() {
                return Err(io::Error::other("the loop is closed"));
            }
            if self.handle().is_none() {
                return Err(host_gone());
            }
        }
        self.selector.watch(fd, interest)
    }

    /// Remove every source from the host; idempotent.
    pub(crate) fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.selector.clear();
        let idle = self.idle.borrow_mut().take();
        if let Some(idle) = idle {
            idle.cancel();
        }
        let timer = self.timer.take();
        let selector = self.selector_token.take();
        if let Some(handle) = self.handle() {
            for token in timer.map(|(_, t)| t).into_iter().chain(selector) {
                handle.remove(token);
            }
        }
    }

    /// The number of sources currently in the host (for `Debug`).
    pub(crate) fn count(&self) -> usize {
        usize::from(self.selector_token.get().is_some()) + usize::from(self.timer.get().is_some())
    }

    /// How many fds the loop watches (for `Debug`).
    pub(crate) fn watched(&self) -> usize {
        self.selector.len()
    }
}
