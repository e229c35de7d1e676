//! The calloop guest: a calloop [`EventLoop`] run by a oneloop loop of any
//! adapter, its sources on the loop's fd watching and its timers on the
//! loop's timers.
//!
//! # Why timers need [`GuestTimers`]
//!
//! calloop keeps its timers in a heap inside its poller (`TimerWheel`,
//! `src/sources/timer.rs`) and reads the earliest deadline only inside
//! `dispatch`, where it shortens its own poll timeout with it
//! (`Poll::poll`, `src/sys.rs`). Nothing public exposes that deadline, and
//! the poller's fd (the `AsFd` of [`EventLoop`]) becomes readable for fd
//! events only: a host that watches it sees every `Generic`, `Ping` and
//! channel source, but no timer. (On Linux, polling happens to arm a
//! timerfd inside that epoll set for the timeout of each wait, but only
//! while a wait with a timeout is under way, computed before the timers it
//! dispatches re-arm: an implementation detail that cannot carry a timer.)
//!
//! So the guest learns deadlines from the timers themselves: a
//! [`GuestTimer`] is calloop's own [`Timer`] inside a source that reports
//! its deadline to the guest whenever calloop registers it and whenever its
//! callback re-arms it. The guest arms one loop timer at the earliest such
//! deadline and dispatches the event loop when it fires. A plain `Timer` (or
//! a `TimeoutFuture`) inserted without it still fires, never early, but only
//! at the guest's next dispatch for another reason: late, by as much as the
//! loop stays idle.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use calloop::timer::{TimeoutAction, Timer};
use calloop::{
    EventLoop, EventSource, LoopHandle, LoopSignal, Poll, PostAction, Readiness, Token,
    TokenFactory,
};
use oneloop::{Error, ErrorKind, Loop, RemoteLoop, Result, RunContext, TimerHandle};
use rustix::event::{PollFd, PollFlags, Timespec};

/// Run `event_loop`'s sources and timers on the thread of `lp`, a loop of
/// **any** adapter (the default loop, tokio, smol, glib, calloop; owned
/// or attached), beside oneloop's callbacks. `data` is the `&mut D` its
/// callbacks receive; the guest owns both until it ends.
///
/// The event loop's poller fd is watched with the loop's fd watching: when
/// one of its sources is ready, the guest dispatches it without waiting
/// (`dispatch(Duration::ZERO)`), and calloop runs the callbacks, then its
/// idles. While the poller stays readable (a callback woke another
/// source), the guest dispatches again, up to
/// [`CalloopGuest::DISPATCH_BUDGET`] times, before the loop runs its other
/// work. Its timers reach the loop through [`GuestTimers`]: the earliest
/// deadline of the timers made with [`CalloopGuest::timers`] is one loop
/// timer. Nothing polls on a clock: an idle guest costs nothing.
///
/// The guest ends on [`CalloopGuest::detach`], which hands the event loop
/// and its data back, or when the loop closes, which drops them: the event
/// loop first (its sources, in insertion order, unless a `LoopHandle` you
/// kept still holds them), then the data.
///
/// Two guests cannot share an event loop: the guest takes it by value.
///
/// # Limits
///
/// - A plain [`Timer`] (or `TimeoutFuture`) not made with
///   [`GuestTimers`] fires only when the guest dispatches for another
///   reason: never early, possibly late: calloop keeps the deadline of a
///   timer private (its `TimerWheel`, read only inside `dispatch`), and
///   its poller fd does not become readable when a timer is due.
/// - An idle inserted from outside a calloop callback runs at the guest's
///   next dispatch; [`LoopSignal::wakeup`] (from
///   [`CalloopGuest::signal`]) makes that now, as on calloop's own loop.
/// - [`EventLoop::run`]'s per-iteration callback and [`LoopSignal::stop`]
///   mean nothing here: the oneloop loop runs the guest.
///
/// A panic in a calloop callback unwinds out of the guest's dispatch into
/// the oneloop callback that ran it, where the loop catches it and reports
/// it to its exception handler (or propagates it, under
/// [`PanicPolicy::Propagate`](oneloop::PanicPolicy)); the guest dispatches
/// again at its next event. calloop drops the rest of that dispatch: the
/// timers due in it that had not been called back (the panicking one
/// among them) never fire, as on calloop's own loop, and the guest stops
/// arming their deadlines; its other sources and timers go on.
///
/// # Errors
/// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::Unsupported`] if
/// the loop cannot watch fds; [`ErrorKind::InvalidArgument`] if the loop
/// cannot watch this event loop's fd (for example `lp` is itself attached
/// to `event_loop`: an epoll set cannot contain itself).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use calloop::EventLoop;
/// use calloop::ping::make_ping;
/// use calloop::timer::{TimeoutAction, Timer};
///
/// #[derive(Default)]
/// struct State { pings: u32, ticks: u32 }
///
/// let lp = oneloop::Loop::new()?; // any loop: here the default one
/// let event_loop: EventLoop<'static, State> = EventLoop::try_new()?;
/// let handle = event_loop.handle();
/// let guest = oneloop_calloop::guest(&lp, event_loop, State::default())?;
///
/// // A source on the calloop loop, woken from a oneloop callback...
/// let (ping, source) = make_ping()?;
/// handle.insert_source(source, |_, _, s: &mut State| s.pings += 1).map_err(|e| e.error)?;
/// lp.call_soon(move || ping.ping())?;
/// // ...and a calloop timer, armed as a loop timer.
/// let timer = guest.timers().timer(Timer::from_duration(Duration::from_millis(2)));
/// handle
///     .insert_source(timer, |_, _, s: &mut State| {
///         s.ticks += 1;
///         TimeoutAction::Drop
///     })
///     .map_err(|e| e.error)?;
///
/// lp.run_until_complete(oneloop::sleep(Duration::from_millis(10)))??;
/// assert_eq!(guest.with_data(|s| (s.pings, s.ticks)), Some((1, 1)));
/// let (_event_loop, state) = guest.detach().expect("still attached");
/// assert_eq!(state.ticks, 1);
/// lp.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn guest<D: 'static>(
    lp: &Loop,
    event_loop: EventLoop<'static, D>,
    data: D,
) -> Result<CalloopGuest<D>> {
    if lp.is_closed() {
        return Err(Error::new(ErrorKind::Closed, "the event loop is closed"));
    }
    let handle = event_loop.handle();
    let signal = event_loop.get_signal();
    let state = Rc::new(Guest {
        owned: RefCell::new(Some(Owned {
            event_loop,
            handle,
            data,
        })),
        signal,
        tracker: Rc::new(Tracker {
            guest: RefCell::new(Weak::<Guest<D>>::new()),
            by_id: RefCell::default(),
            ordered: RefCell::default(),
            next_id: Cell::new(0),
            epoch: Cell::new(0),
        }),
        remote: lp.remote(),
        timer: RefCell::new(None),
        dirty: Cell::new(true),
        poked: Cell::new(false),
        in_batch: Cell::new(false),
        dispatching: Cell::new(false),
        checks: Cell::new(Checks::default()),
        redispatch: Cell::new(false),
    });
    let hooks: Weak<dyn GuestHooks> = Rc::downgrade(&state) as Weak<Guest<D>>;
    *state.tracker.guest.borrow_mut() = hooks;
    let weak = Rc::downgrade(&state);
    state
        .with_fd(|fd| {
            lp.add_reader(fd, move || {
                if let Some(guest) = weak.upgrade() {
                    guest.dispatch();
                }
            })
        })?
        .map_err(|e| match e.kind() {
            ErrorKind::Io => Error::new(
                ErrorKind::InvalidArgument,
                format!("the loop cannot watch the calloop event loop's fd: {e}"),
            ),
            _ => e,
        })?;
    if let Err(e) = lp.add_run_context(state.clone()) {
        state.unwatch(lp);
        return Err(e);
    }
    state.poke();
    Ok(CalloopGuest {
        lp: lp.clone(),
        state: Rc::downgrade(&state),
    })
}

/// The handle of a calloop guest (see [`guest`]): the guest runs until
/// [`detach`](CalloopGuest::detach) or until its loop closes; dropping the
/// handle does not end it.
pub struct CalloopGuest<D: 'static> {
    lp: Loop,
    state: Weak<Guest<D>>,
}

impl<D: 'static> fmt::Debug for CalloopGuest<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloopGuest")
            .field("attached", &self.is_attached())
            .finish_non_exhaustive()
    }
}

impl<D: 'static> CalloopGuest<D> {
    /// The most times the guest dispatches its event loop at one wake-up
    /// before it lets the loop run its other work (callbacks, timers, other
    /// fds): it dispatches again, without waiting, only while the event
    /// loop's fd stays readable (a calloop callback woke another source).
    pub const DISPATCH_BUDGET: u32 = DISPATCH_BUDGET;

    /// Whether the guest still runs its event loop.
    pub fn is_attached(&self) -> bool {
        self.state.upgrade().is_some_and(|g| {
            g.dispatching.get() || g.owned.try_borrow().map_or(true, |o| o.is_some())
        })
    }

    /// The event loop's handle, to insert sources; `None` once the guest
    /// ended, or from inside one of its callbacks (keep a clone for those).
    pub fn handle(&self) -> Option<LoopHandle<'static, D>> {
        let guest = self.state.upgrade()?;
        let owned = guest.owned.try_borrow().ok()?;
        owned.as_ref().map(|o| o.handle.clone())
    }

    /// The event loop's signal: [`wakeup`](LoopSignal::wakeup) makes the
    /// guest dispatch now (for idles inserted from outside a calloop
    /// callback); `stop` means nothing to a guest.
    pub fn signal(&self) -> Option<LoopSignal> {
        self.state.upgrade().map(|g| g.signal.clone())
    }

    /// Makes [`GuestTimer`]s: calloop timers whose deadlines this guest
    /// arms on the loop. Cheap to clone, holds the guest weakly, so it may
    /// live in the event loop's data for callbacks that add timers.
    pub fn timers(&self) -> GuestTimers {
        GuestTimers {
            tracker: self
                .state
                .upgrade()
                .map_or_else(Weak::new, |g| Rc::downgrade(&g.tracker)),
        }
    }

    /// Run `f` with the event loop's data, outside its dispatch. `None` once
    /// the guest ended, or from inside one of its callbacks (which have the
    /// data as their `&mut D` already).
    pub fn with_data<R>(&self, f: impl FnOnce(&mut D) -> R) -> Option<R> {
        let guest = self.state.upgrade()?;
        let mut owned = guest.owned.try_borrow_mut().ok()?;
        owned.as_mut().map(|o| f(&mut o.data))
    }

    /// End the guest and hand the event loop and its data back: its fd is
    /// unwatched and its loop timer cancelled; its sources stay in it,
    /// untouched. `None` if the guest already ended, or from inside one of
    /// its own callbacks (the event loop is dispatching).
    pub fn detach(&self) -> Option<(EventLoop<'static, D>, D)> {
        let guest = self.state.upgrade()?;
        if guest.dispatching.get() {
            return None;
        }
        guest.unwatch(&self.lp);
        let ctx: Rc<dyn RunContext> = guest.clone();
        self.lp.remove_run_context(&ctx);
        let owned = guest.owned.borrow_mut().take()?;
        drop(owned.handle);
        Some((owned.event_loop, owned.data))
    }
}

/// What the guest owns: the event loop and the data its callbacks get.
/// Dropped in field order: calloop's sources live as long as any handle
/// of their loop, so the guest's handle goes before the data (a handle the
/// user kept keeps them alive until it goes).
struct Owned<D: 'static> {
    event_loop: EventLoop<'static, D>,
    handle: LoopHandle<'static, D>,
    data: D,
}

/// A guest's state, owned by its loop (as a [`RunContext`]): dropped when
/// the loop closes, event loop before data (field order of [`Owned`]).
///
/// # Invariants
/// - Every callback given to the loop holds only a `Weak<Guest>`.
/// - No `RefCell` borrow is held across a call into oneloop, except the
///   event loop's own borrow during `dispatch` (calloop callbacks reach
///   the guest only through [`CalloopGuest`], which refuses then).
struct Guest<D: 'static> {
    owned: RefCell<Option<Owned<D>>>,
    signal: LoopSignal,
    tracker: Rc<Tracker>,
    /// Wakes the loop for a batch when a timer changed outside one.
    remote: RemoteLoop,
    /// The loop timer at the earliest tracked deadline, and that deadline.
    timer: RefCell<Option<(Instant, TimerHandle)>>,
    /// The tracked deadlines changed since the loop timer was armed.
    dirty: Cell<bool>,
    /// An empty callback is queued to get a batch that re-arms.
    poked: Cell<bool>,
    /// The loop is running a batch (our [`RunContext::enter`]).
    in_batch: Cell<bool>,
    /// `EventLoop::dispatch` is under way.
    dispatching: Cell<bool>,
    /// Whether to ask if the poller is still readable after a dispatch.
    checks: Cell<Checks>,
    /// A dispatch unwound: dispatch once more soon (see [`LostTimers`]).
    redispatch: Cell<bool>,
}

impl<D: 'static> RunContext for Guest<D> {
    fn enter(&self, run: &mut dyn FnMut()) {
        let outer = self.in_batch.replace(true);
        self.poked.set(false);
        let batch = BatchEnd { guest: self, outer };
        run();
        drop(batch);
        if outer {
            return;
        }
        let Ok(lp) = oneloop::get_running_loop() else {
            return;
        };
        if self.redispatch.take() {
            let me = self.tracker.guest.borrow().clone();
            let _ = lp.call_soon(move || {
                if let Some(me) = me.upgrade() {
                    me.dispatch_now();
                }
            });
        }
        if self.dirty.get() {
            self.rearm(&lp);
        }
    }

    fn name(&self) -> &str {
        "calloop guest"
    }
}

/// Ends a batch for the guest, also when a panic unwinds out of it (a
/// panicking tracing subscriber, a panic payload whose drop panics; the
/// loop stays fit for use, ER-04): left raised, `in_batch` would make
/// every later batch look nested, and none would re-arm the timers.
struct BatchEnd<'a, D: 'static> {
    guest: &'a Guest<D>,
    outer: bool,
}

impl<D: 'static> Drop for BatchEnd<'_, D> {
    fn drop(&mut self) {
        let guest = self.guest;
        guest.in_batch.set(self.outer);
        // Unwinding: no loop timer is made from here, while the loop's
        // own state unwinds; the thread-safe inbox gets the guest a batch
        // of its own, whose end re-arms.
        if std::thread::panicking() && !self.outer && guest.dirty.get() {
            guest.poke();
        }
    }
}

/// Guards one dispatch of the event loop against a panic in a calloop
/// callback (reported by the loop, as the guest's docs promise).
///
/// calloop takes every due timer off its wheel before it calls back the
/// ready sources, then those timers; a panic in any callback drops the
/// rest of the dispatch, so the due timers not yet called back are lost
/// (they never fire again, as on calloop's own loop), the panicking one
/// too, and none of them reported. Left tracked, their past deadlines
/// would have the guest re-arm a loop timer at them after every dispatch:
/// a spin. So an unwinding dispatch forgets every deadline due by now that
/// no timer reported since it began, and asks for one more dispatch soon,
/// which calls back whichever of those timers calloop still holds (due
/// after its poll): they report again.
struct LostTimers<'a, D: 'static> {
    guest: &'a Guest<D>,
    epoch: u64,
}

impl<D: 'static> Drop for LostTimers<'_, D> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.guest.tracker.forget_lost(self.epoch, Instant::now());
            self.guest.redispatch.set(true);
        }
    }
}

impl<D: 'static> Guest<D> {
    /// Lend the event loop's poller fd to `f`.
    fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Result<R> {
        let owned = self.owned.borrow();
        let owned = owned
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::InvalidState, "the guest has ended"))?;
        Ok(f(owned.event_loop.as_fd()))
    }

    /// The poller fd or a timer fired: dispatch what is ready, without
    /// waiting. The batch's end re-arms the loop timer.
    fn dispatch(&self) {
        let Ok(mut owned) = self.owned.try_borrow_mut() else {
            return;
        };
        let Some(Owned {
            event_loop, data, ..
        }) = owned.as_mut()
        else {
            return;
        };
        let _dispatching = Flag::raise(&self.dispatching);
        // A dispatched timer re-arms or drops itself: re-arm at the batch's
        // end. Marked first, so that it holds even if a callback panics out
        // of the dispatch (the loop timer that ran it is spent).
        self.dirty.set(true);
        let _lost = LostTimers {
            guest: self,
            epoch: self.tracker.begin_dispatch(),
        };
        // Dispatch again while the poller stays readable (a calloop
        // callback woke another source, a ping chain): each round saves a
        // loop iteration, and the budget bounds how long the loop's other
        // work waits. Asking costs a poll(2), so a guest whose sources are
        // woken from outside (found not readable again and again) asks
        // less and less often (see `Checks`).
        let mut checks = self.checks.get();
        let mut rounds = 0;
        let dispatched = loop {
            if let Err(e) = event_loop.dispatch(Some(Duration::ZERO), data) {
                break Err(e);
            }
            rounds += 1;
            if rounds == DISPATCH_BUDGET || !checks.ask() {
                break Ok(());
            }
            let readable = readable_now(event_loop.as_fd());
            checks.answered(readable);
            if !readable {
                break Ok(());
            }
        };
        self.checks.set(checks);
        if let Err(e) = dispatched {
            drop(owned);
            if let Ok(lp) = oneloop::get_running_loop() {
                lp.call_exception_handler(
                    oneloop::ExceptionContext::new("the calloop guest's dispatch failed")
                        .with_error(Error::new(ErrorKind::Io, e.to_string())),
                );
            }
        }
    }

    /// A tracked deadline changed: re-arm at the end of this batch, or get
    /// a batch.
    fn timers_changed(&self) {
        self.dirty.set(true);
        if !self.in_batch.get() && !self.dispatching.get() {
            self.poke();
        }
    }

    /// Queue an empty callback from outside a batch: its batch re-arms.
    fn poke(&self) {
        if !self.poked.replace(true) && self.remote.call_soon_threadsafe(|| {}).is_err() {
            self.poked.set(false);
        }
    }

    /// Arm the loop timer at the earliest tracked deadline.
    fn rearm(&self, lp: &Loop) {
        self.dirty.set(false);
        // Detached (from inside the batch that ends now): the event loop and
        // its timers were handed back, nothing is armed for them any more.
        if self.owned.try_borrow().is_ok_and(|o| o.is_none()) {
            return;
        }
        let next = self.tracker.earliest();
        let mut timer = self.timer.borrow_mut();
        if timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, old)) = timer.take() {
            old.cancel();
        }
        if let Some(at) = next {
            let me = self.tracker.guest.borrow().clone();
            if let Ok(handle) = lp.call_at(at, move || {
                if let Some(me) = me.upgrade() {
                    me.fired();
                }
            }) {
                *timer = Some((at, handle));
            }
        }
    }

    fn unwatch(&self, lp: &Loop) {
        let _ = self.with_fd(|fd| lp.remove_reader(fd));
        if let Some((_, old)) = self.timer.borrow_mut().take() {
            old.cancel();
        }
    }
}

/// The erased side of a guest that its timers and loop timer call.
trait GuestHooks {
    fn timers_changed(&self);
    fn fired(&self);
    fn dispatch_now(&self);
}

impl<D: 'static> GuestHooks for Guest<D> {
    fn timers_changed(&self) {
        Guest::timers_changed(self);
    }

    fn fired(&self) {
        // The loop timer is spent: a new one is armed after the dispatch.
        self.timer.borrow_mut().take();
        self.dispatch();
    }

    fn dispatch_now(&self) {
        self.dispatch();
    }
}

/// The deadlines of a guest's [`GuestTimer`]s.
struct Tracker {
    guest: RefCell<Weak<dyn GuestHooks>>,
    /// Each timer's deadline, and the dispatch (epoch) of its last report.
    by_id: RefCell<HashMap<u64, (Instant, u64)>>,
    ordered: RefCell<BTreeSet<(Instant, u64)>>,
    next_id: Cell<u64>,
    /// Counts the guest's dispatches.
    epoch: Cell<u64>,
}

impl Tracker {
    fn set(&self, id: u64, deadline: Option<Instant>) {
        let old = match deadline {
            Some(d) => self.by_id.borrow_mut().insert(id, (d, self.epoch.get())),
            None => self.by_id.borrow_mut().remove(&id),
        }
        .map(|(d, _)| d);
        if old == deadline {
            return;
        }
        let mut ordered = self.ordered.borrow_mut();
        if let Some(old) = old {
            ordered.remove(&(old, id));
        }
        if let Some(d) = deadline {
            ordered.insert((d, id));
        }
        drop(ordered);
        if let Some(guest) = self.guest.borrow().upgrade() {
            guest.timers_changed();
        }
    }

    fn earliest(&self) -> Option<Instant> {
        self.ordered.borrow().first().map(|(d, _)| *d)
    }

    /// A dispatch of the guest begins: its epoch.
    fn begin_dispatch(&self) -> u64 {
        let epoch = self.epoch.get() + 1;
        self.epoch.set(epoch);
        epoch
    }

    /// The dispatch of `epoch` unwound: forget every deadline due by `now`
    /// that no timer reported since it began (see [`LostTimers`]).
    fn forget_lost(&self, epoch: u64, now: Instant) {
        let lost: Vec<u64> = {
            let by_id = self.by_id.borrow();
            self.ordered
                .borrow()
                .iter()
                .take_while(|(d, _)| *d <= now)
                .filter(|(_, id)| by_id.get(id).is_some_and(|(_, e)| *e < epoch))
                .map(|(_, id)| *id)
                .collect()
        };
        for id in lost {
            self.set(id, None);
        }
    }
}

/// Makes [`GuestTimer`]s for one guest (see [`CalloopGuest::timers`]).
#[derive(Clone)]
pub struct GuestTimers {
    tracker: Weak<Tracker>,
}

impl fmt::Debug for GuestTimers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestTimers")
            .field("attached", &(self.tracker.strong_count() > 0))
            .finish()
    }
}

impl GuestTimers {
    /// Wrap `timer` so that the guest arms its deadline on the loop. Insert
    /// the result into the guest's event loop as you would the `Timer`: its
    /// callback gets the same deadline and returns the same
    /// [`TimeoutAction`].
    pub fn timer(&self, timer: Timer) -> GuestTimer {
        let id = self.tracker.upgrade().map_or(0, |t| {
            let id = t.next_id.get();
            t.next_id.set(id + 1);
            id
        });
        GuestTimer {
            inner: timer,
            id,
            registered: false,
            tracker: self.tracker.clone(),
        }
    }
}

/// A calloop [`Timer`] whose deadline a guest arms on its loop (see
/// [`GuestTimers::timer`]): an [`EventSource`] with the `Timer`'s event
/// (the deadline), metadata and return value.
pub struct GuestTimer {
    inner: Timer,
    id: u64,
    /// Registered in a poller: its deadline counts.
    registered: bool,
    tracker: Weak<Tracker>,
}

impl fmt::Debug for GuestTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestTimer")
            .field("deadline", &self.inner.current_deadline())
            .field("registered", &self.registered)
            .finish()
    }
}

impl GuestTimer {
    fn report(&self) {
        if let Some(tracker) = self.tracker.upgrade() {
            let deadline = self.inner.current_deadline().filter(|_| self.registered);
            tracker.set(self.id, deadline);
        }
    }
}

impl EventSource for GuestTimer {
    type Event = Instant;
    type Metadata = ();
    type Ret = TimeoutAction;
    type Error = std::io::Error;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        callback: F,
    ) -> std::result::Result<PostAction, Self::Error>
    where
        F: FnMut(Self::Event, &mut Self::Metadata) -> Self::Ret,
    {
        // A panic in the callback unwinds out of here without a report:
        // the guest's dispatch forgets the deadline (see `LostTimers`).
        let action = self.inner.process_events(readiness, token, callback)?;
        if matches!(action, PostAction::Remove | PostAction::Disable) {
            self.registered = false;
        }
        self.report();
        Ok(action)
    }

    fn register(
        &mut self,
        poll: &mut Poll,
        token_factory: &mut TokenFactory,
    ) -> calloop::Result<()> {
        self.inner.register(poll, token_factory)?;
        self.registered = true;
        self.report();
        Ok(())
    }

    fn reregister(
        &mut self,
        poll: &mut Poll,
        token_factory: &mut TokenFactory,
    ) -> calloop::Result<()> {
        self.inner.reregister(poll, token_factory)?;
        self.registered = true;
        self.report();
        Ok(())
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.registered = false;
        self.report();
        self.inner.unregister(poll)
    }
}

impl Drop for GuestTimer {
    fn drop(&mut self) {
        if self.registered {
            self.registered = false;
            self.report();
        }
    }
}

/// The most times one wake-up of the guest dispatches its event loop, while
/// the event loop's poller stays readable.
const DISPATCH_BUDGET: u32 = 32;

/// When the guest asks whether its event loop is still ready after a
/// dispatch: always while the answer is yes; after a no, it skips the
/// question at the next 1, then 2, 4, … up to [`MAX_SKIPPED`] wake-ups, so
/// that sources woken from outside the event loop (one dispatch per
/// wake-up, the common case) cost next to no extra `poll(2)`, while a
/// chain of sources woken by each other is found within that many
/// wake-ups.
#[derive(Debug, Default, Clone, Copy)]
struct Checks {
    /// Wake-ups left before asking again.
    skip: u32,
    /// How many the last "no" made it skip.
    skipped: u32,
}

/// The most wake-ups the guest goes without asking (see [`Checks`]).
const MAX_SKIPPED: u32 = 64;

impl Checks {
    /// Whether to ask now, after a dispatch. While skipping, each call uses
    /// up one wake-up (a wake-up that does not ask dispatches only once).
    fn ask(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    fn answered(&mut self, readable: bool) {
        if readable {
            self.skipped = 0;
        } else {
            self.skipped = (self.skipped * 2).clamp(1, MAX_SKIPPED);
            self.skip = self.skipped;
        }
    }
}

/// Whether `fd` (the event loop's poller) is readable now: one of its
/// sources is ready. `poll(2)` on an epoll fd consumes nothing.
fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).is_ok_and(|n| n > 0)
}

/// Sets a flag for its lifetime, and clears it even on unwinding (a panic
/// in a calloop callback).
struct Flag<'a>(&'a Cell<bool>);

impl<'a> Flag<'a> {
    fn raise(flag: &'a Cell<bool>) -> Flag<'a> {
        flag.set(true);
        Flag(flag)
    }
}

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::{Checks, MAX_SKIPPED};

    /// How many of the next `wakeups` wake-ups ask, when every answer is no.
    fn asked_while_never_ready(checks: &mut Checks, wakeups: u32) -> u32 {
        let mut asked = 0;
        for _ in 0..wakeups {
            if checks.ask() {
                asked += 1;
                checks.answered(false);
            }
        }
        asked
    }

    #[test]
    fn a_no_backs_off_doubling_up_to_the_cap_and_a_yes_resets() {
        let mut checks = Checks::default();
        // Asked at wake-ups 1, 3, 6, 11, 20, 37, 70, then every 65th.
        assert_eq!(asked_while_never_ready(&mut checks, 70), 7);
        assert_eq!(checks.skip, MAX_SKIPPED);
        assert_eq!(
            asked_while_never_ready(&mut checks, 10 * (MAX_SKIPPED + 1)),
            10
        );
        // Found ready: asked at every wake-up again.
        while !checks.ask() {}
        checks.answered(true);
        assert!(checks.ask() && checks.ask());
        assert_eq!(asked_while_never_ready(&mut checks, 3), 2);
    }
}
