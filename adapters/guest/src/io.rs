//! The I/O thread: the guest's only wait, on a [`Poller`], off the host
//! thread; and the fd registrations it waits on.
//!
//! All `unsafe` of the crate is here: registering fds borrowed from their
//! owners with the poller (polling's `add` has an I/O-safety contract).
//!
//! # The protocol
//!
//! Guest mode splits each loop iteration over two threads, as Trio's guest
//! mode does: the I/O thread waits (for the watched fds, the next timer
//! deadline, or a wake), then posts a tick to the host; the host thread runs
//! it, which hands the fds found ready to the loop and dispatches it. Only
//! the host thread touches the loop's state; the I/O thread touches only
//! the poller (which is thread-safe) and [`State`] under its mutex.
//!
//! After reporting ready fds the I/O thread waits, off the poller, for the
//! host to **acknowledge** them: the fds are level-triggered, so polling
//! again before their callbacks ran would report them again and again. The
//! acknowledgement comes at the end of the batch that ran their callbacks,
//! so a tick that could not dispatch (a nested host loop inside a oneloop
//! callback, D4) leaves the I/O thread parked instead of spinning.
//!
//! Everything else needs no handshake: "dispatch now" is posted straight to
//! the host by the host thread itself; a new, earlier deadline interrupts
//! the wait with the poller's `notify`; a wake from another thread sets a
//! flag and notifies (an eventfd write: async-signal-safe, D6).

use std::collections::HashSet;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use oneloop::backend::{Interest, Readiness};
use polling::{Event, Events, PollMode, Poller};

use crate::host::{Host, Job, Work};

/// What the two threads share.
pub(crate) struct Shared {
    poller: Poller,
    state: Mutex<State>,
    /// The I/O thread parks here while the host owes an acknowledgement.
    acked: Condvar,
    /// A wake from another thread is pending (`call_soon_threadsafe`).
    woken: AtomicBool,
    /// A tick job is posted and has not started: do not post another.
    tick_posted: AtomicBool,
    /// Ready fds were reported and not yet acknowledged (`State::unacked`,
    /// readable without the lock): ticks and batches that carry none, the
    /// common case, skip the mutex. Paired with `tick_posted` in SeqCst
    /// (store one, load the other, on both threads) so that a tick never
    /// misses fds reported while it starts.
    reported: AtomicBool,
    /// The I/O thread was joined.
    joined: AtomicBool,
    /// Jobs in a row that the host did not run (see [`Shared::not_run`]);
    /// a tick that runs resets it.
    misses: AtomicU32,
    host: Box<dyn Host>,
    id: u64,
    thread: ThreadId,
    /// This value, for the jobs it posts.
    me: Weak<Shared>,
}

/// The part of [`Shared`] behind the mutex.
#[derive(Default)]
struct State {
    /// The loop's next timer deadline, as last armed.
    deadline: Option<Instant>,
    /// The I/O thread is in the poller's wait, until this deadline (or none).
    waiting: Option<Option<Instant>>,
    /// Fds found ready, not yet taken by a tick.
    events: Vec<(RawFd, Readiness)>,
    /// Ready fds were reported and their batch has not ended: do not wait.
    unacked: bool,
    /// Work of jobs the host did not run, to post again at `retry_at`.
    returned: Vec<Work>,
    retry_at: Option<Instant>,
    closing: bool,
}

impl Shared {
    pub(crate) fn new(host: Box<dyn Host>, id: u64) -> io::Result<Arc<Shared>> {
        let poller = Poller::new()?;
        Ok(Arc::new_cyclic(|me| Shared {
            poller,
            state: Mutex::new(State::default()),
            acked: Condvar::new(),
            woken: AtomicBool::new(false),
            tick_posted: AtomicBool::new(false),
            reported: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            misses: AtomicU32::new(0),
            host,
            id,
            thread: std::thread::current().id(),
            me: me.clone(),
        }))
    }

    fn job(&self, work: Work) -> Job {
        Job::new(work, self.thread, self.me.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (no user code runs
        // under it), but do not turn one into a second panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Post a tick to the host, unless one is already waiting to run.
    pub(crate) fn post_tick(&self) {
        if !self.tick_posted.swap(true, Ordering::SeqCst) {
            self.host.run_soon(self.job(Work::Tick(self.id)));
        }
    }

    /// A tick starts: later events need a new one. Returns the ready fds
    /// to hand to the loop.
    pub(crate) fn begin_tick(&self) -> Vec<(RawFd, Readiness)> {
        self.tick_posted.store(false, Ordering::SeqCst);
        if self.misses.load(Ordering::Relaxed) != 0 {
            // The host runs jobs where it should again.
            self.misses.store(0, Ordering::Relaxed);
        }
        // Either this sees fds reported since the store above, or the I/O
        // thread's `post_tick` after reporting them sees `tick_posted`
        // false and posts another tick (both SeqCst).
        if !self.reported.load(Ordering::SeqCst) {
            return Vec::new();
        }
        std::mem::take(&mut self.state().events)
    }

    /// A job's work came back unrun (the host dropped the job, or ran it
    /// on another thread): the I/O thread posts it again, at once the
    /// first time, then after a delay that doubles from 1 ms up to 1 s
    /// while the host keeps failing. Until then the tick it stands for is
    /// still owed (`tick_posted` stays set, the fds it carries unacked):
    /// nothing is lost, and a broken host does not make the guest spin.
    pub(crate) fn not_run(&self, work: Work) {
        let misses = self.misses.fetch_add(1, Ordering::Relaxed);
        let delay = match misses {
            0 => Duration::ZERO,
            n => Duration::from_millis(1 << (n - 1).min(10)).min(Duration::from_secs(1)),
        };
        let mut st = self.state();
        if st.closing {
            return;
        }
        st.returned.push(work);
        let at = Instant::now() + delay;
        st.retry_at = Some(st.retry_at.map_or(at, |t| t.min(at)));
        drop(st);
        // The I/O thread is parked (unacked fds) or in the poller's wait.
        self.acked.notify_all();
        let _ = self.poller.notify();
    }

    /// The batch that ran the reported fds' callbacks ended: wait again.
    pub(crate) fn ack(&self) {
        // Set before the tick that took the fds, on this thread's view:
        // false means nothing is owed.
        if !self.reported.load(Ordering::SeqCst) {
            return;
        }
        let mut st = self.state();
        if st.unacked && st.events.is_empty() {
            st.unacked = false;
            self.reported.store(false, Ordering::SeqCst);
            drop(st);
            self.acked.notify_one();
        }
    }

    /// The loop wants to be dispatched at `deadline` (or only on events).
    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) {
        let mut st = self.state();
        st.deadline = deadline;
        // Interrupt a wait that would sleep past the new deadline.
        let interrupt = match (st.waiting, deadline) {
            (Some(until), Some(d)) => until.is_none_or(|u| d < u),
            _ => false,
        };
        drop(st);
        if interrupt {
            let _ = self.poller.notify();
        }
    }

    /// A thread-safe, async-signal-safe wake: an atomic store and an
    /// eventfd write; the I/O thread posts the tick.
    pub(crate) fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        let _ = self.poller.notify();
    }

    /// Post the last job of a guest run (see `run::finish`).
    pub(crate) fn post_finish(&self) {
        self.host.run_soon(self.job(Work::Finish(self.id)));
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn is_joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }
}

/// The I/O thread and the fds registered with its poller (host thread side).
pub(crate) struct Io {
    pub(crate) shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    registered: HashSet<RawFd>,
}

impl Io {
    pub(crate) fn start(shared: Arc<Shared>) -> io::Result<Io> {
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("oneloop-guest-io".into())
            .spawn(move || wait_loop(&s))?;
        Ok(Io {
            shared,
            thread: Some(thread),
            registered: HashSet::new(),
        })
    }

    /// Watch `fd` for `interest`, level-triggered; `NONE` forgets it.
    pub(crate) fn watch(&mut self, fd: RawFd, interest: Interest) -> io::Result<()> {
        let poller = &self.shared.poller;
        if interest.is_none() {
            if self.registered.remove(&fd) {
                // SAFETY: `fd` is registered, so it is still open: the
                // `Backend::watch` contract keeps a watched fd open until
                // this `Interest::NONE` call.
                poller.delete(unsafe { BorrowedFd::borrow_raw(fd) })?;
            }
            return Ok(());
        }
        let key = usize::try_from(fd)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative fd"))?;
        let event = Event::new(key, interest.readable, interest.writable);
        // SAFETY: `fd` is open for this call (borrowed from its owner by
        // `add_reader`/`add_writer`), and stays open until the
        // `Interest::NONE` call deletes it from the poller, by the
        // `Backend::watch` contract; so the poller never holds a closed fd.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if self.registered.contains(&fd) {
            poller.modify_with_mode(borrowed, event, PollMode::Level)
        } else {
            // SAFETY: as above: the fd is deleted before it is closed.
            unsafe { poller.add_with_mode(fd, event, PollMode::Level)? };
            self.registered.insert(fd);
            Ok(())
        }
    }

    /// Stop the I/O thread and join it; forget every fd.
    pub(crate) fn stop(&mut self) {
        for fd in std::mem::take(&mut self.registered) {
            // SAFETY: registered, hence open (see `watch`).
            let _ = self
                .shared
                .poller
                .delete(unsafe { BorrowedFd::borrow_raw(fd) });
        }
        self.shared.state().closing = true;
        self.shared.acked.notify_all();
        let _ = self.shared.poller.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            self.shared.joined.store(true, Ordering::Release);
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The I/O thread: wait, report, wait for the acknowledgement, again;
/// post returned work again when it is due.
fn wait_loop(shared: &Shared) {
    let mut events = Events::new();
    loop {
        let timeout = {
            let mut st = shared.state();
            loop {
                if st.closing {
                    return;
                }
                if st.retry_at.is_some_and(|at| at <= Instant::now()) {
                    st.retry_at = None;
                    let returned = std::mem::take(&mut st.returned);
                    drop(st);
                    for work in returned {
                        shared.host.run_soon(shared.job(work));
                    }
                    st = shared.state();
                    continue;
                }
                if !st.unacked {
                    break;
                }
                st = match st.retry_at {
                    Some(at) => {
                        let left = at.saturating_duration_since(Instant::now());
                        shared
                            .acked
                            .wait_timeout(st, left)
                            .map_or_else(|e| e.into_inner().0, |r| r.0)
                    }
                    None => shared.acked.wait(st).unwrap_or_else(|e| e.into_inner()),
                };
            }
            let until = match (st.deadline, st.retry_at) {
                (Some(d), Some(r)) => Some(d.min(r)),
                (d, r) => d.or(r),
            };
            st.waiting = Some(until);
            until.map(|d| d.saturating_duration_since(Instant::now()))
        };
        events.clear();
        let waited = shared.poller.wait(&mut events, timeout);
        let now = Instant::now();
        let mut st = shared.state();
        st.waiting = None;
        if st.closing {
            return;
        }
        if let Err(e) = waited
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!("the oneloop guest's I/O wait failed: {e}");
            return;
        }
        let ready: Vec<(RawFd, Readiness)> = events
            .iter()
            .filter_map(|ev| {
                let fd = RawFd::try_from(ev.key).ok()?;
                Some((
                    fd,
                    Readiness {
                        readable: ev.readable,
                        writable: ev.writable,
                        hangup: ev.is_interrupt() || ev.is_err() == Some(true),
                    },
                ))
            })
            .collect();
        let due = st.deadline.is_some_and(|d| now >= d);
        if due {
            // Consumed: the dispatch it causes arms the next one.
            st.deadline = None;
        }
        let woken = shared.woken.swap(false, Ordering::AcqRel);
        let report = !ready.is_empty();
        if report {
            st.events.extend(ready);
            st.unacked = true;
            shared.reported.store(true, Ordering::SeqCst);
        }
        drop(st);
        if report || due || woken {
            shared.post_tick();
        }
    }
}
