//! The calloop sources one oneloop loop inserts into its host, and when it
//! dispatches.
//!
//! Per loop, never per callback or per timer (PERFORMANCE.md):
//! - one [`Ping`] for "dispatch soon" and for wakes from other threads (an
//!   eventfd: `Send + Sync`, safe in a signal handler). calloop idles are not
//!   enough: `dispatch` polls *before* it runs idles and does not shorten
//!   the poll for them, so an idle queued from an idle waits for the whole
//!   poll timeout (HOSTS.md §2.5);
//! - one [`Timer`] at the scheduler's earliest deadline, replaced when that
//!   deadline changes (calloop keeps timers in a heap; one per oneloop timer
//!   would make every `call_later` a host insertion);
//! - one [`Generic`] per watched fd, level-triggered, carrying the reader's
//!   and the writer's interest at once (a second registration of an fd
//!   fails with `EEXIST`), updated in place with [`LoopHandle::update`].
//!
//! # When oneloop code runs
//!
//! The three sources' callbacks never run oneloop code: they report fd
//! readiness to the scheduler and queue **one** calloop idle, which runs the
//! scheduler iteration once calloop has delivered every event of the poll.
//! So one host `dispatch` is one oneloop iteration, with all the fds of that
//! poll already reported (the `Backend` contract), and oneloop callbacks run
//! outside every calloop source callback. That is what makes `add_reader`,
//! `remove_writer` and interest changes from inside a oneloop fd callback
//! take effect at once: calloop defers `update`/`disable` of a source only
//! while that source's own callback runs, and ours has returned by then.
//!
//! Work queued by a oneloop callback pings the `Ping`, so the next host poll
//! returns at once instead of waiting for an idle that would not shorten it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::time::Instant;

use calloop::generic::Generic;
use calloop::ping::{Ping, make_ping};
use calloop::timer::{TimeoutAction, Timer};
use calloop::{Dispatcher, Idle, LoopHandle, Mode, PostAction, RegistrationToken};
use oneloop::backend::{Driver, Interest, NextDispatch, Readiness};

use crate::fd::WatchedFd;

/// The `Generic` source of one watched fd.
struct FdSource<D: 'static> {
    /// Kept to change the interest in place.
    dispatcher: Dispatcher<'static, Generic<WatchedFd>, D>,
    token: RegistrationToken,
    interest: Interest,
}

/// Everything one loop inserted into its calloop host.
///
/// # Invariants
/// - The callbacks given to calloop hold only a `Weak<Sources>`, so a host
///   that outlives the loop keeps nothing of it alive, and calls nothing.
/// - No `RefCell` borrow here is held across a call that can run oneloop
///   code (`Driver::dispatch`), so oneloop callbacks may add and remove fds
///   and re-arm from anywhere.
/// - `timer` and `fds` hold exactly the tokens of sources that are still
///   in the host; `idle` is the queued, not yet started, dispatch idle.
pub(crate) struct Sources<D: 'static> {
    me: Weak<Sources<D>>,
    /// The host's handle, weakly: oneloop does not keep a compositor's loop
    /// alive; once it is gone every operation is a no-op or an error. (A
    /// closure because calloop 0.14 does not export `WeakLoopHandle`'s name.)
    handle: Box<dyn Fn() -> Option<LoopHandle<'static, D>>>,
    /// The loop's side of the plug.
    driver: Driver,
    ping: Ping,
    ping_token: Cell<Option<RegistrationToken>>,
    /// We pinged and the ping source has not run since: pinging again would
    /// only cost a syscall.
    pinged: Cell<bool>,
    /// The one timer: its deadline and token.
    timer: Cell<Option<(Instant, RegistrationToken)>>,
    fds: RefCell<HashMap<RawFd, FdSource<D>>>,
    idle: RefCell<Option<Idle<'static>>>,
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
    /// ping, inserted at once.
    pub(crate) fn new(
        handle: &LoopHandle<'static, D>,
        driver: Driver,
    ) -> io::Result<Rc<Sources<D>>> {
        let (ping, ping_source) = make_ping()?;
        let sources = Rc::new_cyclic(|me| Sources {
            me: me.clone(),
            handle: {
                let weak = handle.downgrade();
                Box::new(move || weak.upgrade())
            },
            driver,
            ping,
            ping_token: Cell::new(None),
            pinged: Cell::new(false),
            timer: Cell::new(None),
            fds: RefCell::new(HashMap::new()),
            idle: RefCell::new(None),
            closed: Cell::new(false),
        });
        let me = sources.me.clone();
        let token = handle
            .insert_source(ping_source, move |(), &mut (), _: &mut D| {
                if let Some(me) = me.upgrade() {
                    me.pinged.set(false);
                    me.schedule_dispatch();
                }
            })
            .map_err(|e| io::Error::from(e.error))?;
        sources.ping_token.set(Some(token));
        Ok(sources)
    }

    pub(crate) fn handle(&self) -> Option<LoopHandle<'static, D>> {
        (self.handle)()
    }

    /// The wake other threads use: a ping (an eventfd write).
    pub(crate) fn ping(&self) -> Ping {
        self.ping.clone()
    }

    /// Queue the scheduler iteration as a calloop idle, once: it runs after
    /// the events of the current poll. Called only from our sources'
    /// callbacks, i.e. before calloop runs this dispatch's idles.
    fn schedule_dispatch(&self) {
        if self.closed.get() || self.idle.borrow().is_some() {
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
        match next {
            // The timer stays: it is still the earliest deadline, and the
            // dispatch re-arms with whatever is next.
            NextDispatch::Now => {
                if !self.pinged.replace(true) {
                    self.ping.ping();
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
        // grow; the ping still wakes the loop then, only early.
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

    /// [`Backend::watch`](oneloop::backend::Backend::watch).
    pub(crate) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        if interest.is_none() {
            let removed = self.fds.borrow_mut().remove(&fd);
            if let Some(src) = removed
                && let Some(handle) = self.handle()
            {
                handle.remove(src.token);
            }
            return Ok(());
        }
        if self.closed.get() {
            return Err(io::Error::other("the loop is closed"));
        }
        let handle = self.handle().ok_or_else(host_gone)?;
        let mut fds = self.fds.borrow_mut();
        if let Some(src) = fds.get_mut(&fd) {
            if src.interest != interest {
                // Never borrowed elsewhere: the source's callback runs no
                // oneloop code, so no `watch` can come from inside it.
                src.dispatcher.as_source_mut().interest = to_calloop(interest);
                handle.update(&src.token).map_err(io::Error::from)?;
                src.interest = interest;
            }
            return Ok(());
        }
        let me = self.me.clone();
        let dispatcher = Dispatcher::new(
            Generic::new(WatchedFd::new(fd), to_calloop(interest), Mode::Level),
            move |r: calloop::Readiness, _: &mut _, _: &mut D| {
                if let Some(me) = me.upgrade() {
                    me.driver.fd_ready(
                        fd,
                        Readiness {
                            readable: r.readable,
                            writable: r.writable,
                            hangup: r.error,
                        },
                    );
                    me.schedule_dispatch();
                }
                Ok(PostAction::Continue)
            },
        );
        let token = handle
            .register_dispatcher(dispatcher.clone())
            .map_err(io::Error::from)?;
        fds.insert(
            fd,
            FdSource {
                dispatcher,
                token,
                interest,
            },
        );
        Ok(())
    }

    /// Remove every source from the host; idempotent.
    pub(crate) fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let fds = std::mem::take(&mut *self.fds.borrow_mut());
        let idle = self.idle.borrow_mut().take();
        if let Some(idle) = idle {
            idle.cancel();
        }
        let timer = self.timer.take();
        let ping = self.ping_token.take();
        if let Some(handle) = self.handle() {
            let tokens = fds.values().map(|s| s.token);
            for token in tokens.chain(timer.map(|(_, t)| t)).chain(ping) {
                handle.remove(token);
            }
        }
    }

    /// The number of sources currently in the host (for `Debug`).
    pub(crate) fn count(&self) -> usize {
        usize::from(self.ping_token.get().is_some())
            + usize::from(self.timer.get().is_some())
            + self.fds.borrow().len()
    }
}

fn to_calloop(i: Interest) -> calloop::Interest {
    calloop::Interest {
        readable: i.readable,
        writable: i.writable,
    }
}
