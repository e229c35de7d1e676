//! The glib guest: a GLib [`MainContext`] run by a oneloop loop of any
//! adapter, the way GLib hands a context to an outer poll.
//!
//! All `unsafe` of the guest is here: `g_main_context_query`, `g_poll` and
//! `g_main_context_check` over the context's `GPollFD` array (glib-rs wraps
//! neither), and borrowing the context's raw fds for the loop's fd watch.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use glib::MainContext;
use glib::ffi::{GPollFD, gboolean};
use glib::translate::ToGlibPtr;
use oneloop::{Error, ErrorKind, Loop, Result, RunContext, TimerHandle};

/// Run `ctx`'s sources, idles, timeouts and `spawn_local` futures on the
/// thread of `lp`, a loop of **any** adapter (the default loop, tokio,
/// smol, calloop; owned or attached), beside oneloop's callbacks.
///
/// The guest drives the context as GLib's own iteration does, split over
/// the loop: after every batch the loop runs, it asks the context
/// (`prepare`, `query`) for its poll fds and its next timeout, watches each
/// fd with the loop's fd watching and the timeout with a loop timer; when
/// one fires it polls those fds without waiting, then `check`s and
/// `dispatch`es. Nothing polls on a clock: an idle guest costs nothing, a
/// source added from another thread wakes it through the context's own
/// wakeup fd, one added on the loop's thread is seen at the end of that
/// batch. While the loop runs a batch, `ctx` is this thread's
/// thread-default context, so gio futures and `glib::spawn_future_local`
/// called from oneloop tasks attach to it and complete.
///
/// The guest holds the context acquired (owned by this thread) until it
/// ends: on [`GuestContext::detach`], or when the loop closes. A GLib
/// timeout fires no earlier than GLib computes, and no later than one
/// millisecond (GLib's poll unit) plus the loop's own timer resolution.
///
/// At one wake-up the guest runs GLib iterations, without waiting, while
/// the context has work ready without polling (an idle, a due timeout),
/// at most [`GuestContext::DISPATCH_BUDGET`] of them; then the loop runs
/// its other work before the guest goes on. A chain of idles costs about
/// what it costs on GLib's own `MainLoop` (`docs/benchmarks.md`).
///
/// # Sources attached outside the loop's callbacks
///
/// GLib signals the context's wakeup fd when *another* thread attaches a
/// source, and the guest sees what a batch of the loop did at its end; a
/// source attached on this thread outside both (between two runs of an
/// owned loop, or by host code of an attached loop that is not a oneloop
/// callback) waits for the loop's next batch. Call
/// [`MainContext::wakeup`] after attaching it to make that now. Sources
/// attached between `guest()` and the loop's first run need nothing: that
/// run starts by looking at the context.
///
/// # Iterating the context from inside
///
/// Code that iterates the context itself works as it does on GLib's own
/// loop: a oneloop callback may call [`MainContext::iteration`] (GLib runs
/// the ready sources right there), and a GLib callback may run a nested
/// `MainLoop` on the context (a modal dialog): GLib's sources run in it,
/// while the oneloop loop, which is inside that callback, runs nothing
/// until it returns; its timers are then late, never early. The guest
/// queries the context afresh at each wake-up, so a poll set changed by
/// such an iteration confuses nothing.
///
/// # Panics in callbacks
///
/// - A panic in a GLib source callback (`idle_add_local`,
///   `timeout_add_local`, an fd watch) **aborts the process**, on a guest
///   as on GLib's own loop: glib-rs calls them from `extern "C"`
///   trampolines, and a panic cannot unwind through GLib's C frames.
///   Catch it inside the callback (`std::panic::catch_unwind`) if it can
///   happen.
/// - A panic in a `spawn_local` future is caught by glib-rs and handed to
///   its `JoinHandle` (`JoinError::is_panic`); the guest goes on.
/// - A panic in a oneloop callback or task goes to the loop's exception
///   handler, as on any loop; the guest goes on.
///
/// # Errors
/// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::InvalidState`] if
/// `ctx` is owned by another thread (GLib allows one owner), or already has
/// a oneloop loop or guest (EM-10: one per context, e.g. the glib adapter's
/// own loop on it).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = oneloop::Loop::new()?; // the default loop: no glib in it
/// let ctx = glib::MainContext::new();
/// let guest = oneloop_glib::guest(&lp, &ctx)?;
/// // A future spawned on the context...
/// let fired = lp.create_future::<()>();
/// let f = fired.clone();
/// ctx.spawn_local(async move {
///     glib::timeout_future(Duration::from_millis(1)).await;
///     let _ = f.set_result(());
/// });
/// // ...and glib futures awaited in a oneloop task.
/// let task = lp.spawn(async move {
///     fired.await?;
///     glib::timeout_future(Duration::from_millis(1)).await;
///     Ok::<_, oneloop::Error>("both ran")
/// })?;
/// assert_eq!(lp.run_until_complete(task)???, "both ran");
/// assert!(guest.detach()); // or close the loop: the context is released
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn guest(lp: &Loop, ctx: &MainContext) -> Result<GuestContext> {
    if lp.is_closed() {
        return Err(Error::new(ErrorKind::Closed, "the event loop is closed"));
    }
    let acquired = Acquired::new(ctx).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidState,
            "the main context is owned by another thread; a guest runs on the thread that owns it",
        )
    })?;
    crate::backend::claim(ctx).map_err(|e| Error::new(ErrorKind::InvalidState, e.to_string()))?;
    let state = Rc::new(Guest {
        acquired,
        fds: RefCell::new(Vec::new()),
        watched: RefCell::new(Vec::new()),
        timer: RefCell::new(None),
        soon: Cell::new(false),
        in_dispatch: Cell::new(false),
        ended: Cell::new(false),
        me: RefCell::new(Weak::new()),
    });
    *state.me.borrow_mut() = Rc::downgrade(&state);
    if let Err(e) = lp.add_run_context(state.clone()) {
        crate::backend::release(ctx);
        return Err(e);
    }
    state.refresh(lp);
    // Sources attached on this thread outside a batch of the loop do not
    // wake it (GLib signals its wakeup fd only for other threads): the
    // first run starts with a batch that looks at the context.
    state.iterate_soon(lp);
    Ok(GuestContext {
        lp: lp.clone(),
        state: Rc::downgrade(&state),
    })
}

/// The handle of a glib guest (see [`guest`]): the guest runs until
/// [`detach`](GuestContext::detach) or until its loop closes; dropping the
/// handle does not end it.
pub struct GuestContext {
    lp: Loop,
    state: Weak<Guest>,
}

impl fmt::Debug for GuestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestContext")
            .field("attached", &self.is_attached())
            .finish_non_exhaustive()
    }
}

impl GuestContext {
    /// The most GLib iterations the guest runs at one wake-up before it
    /// lets the loop run its other work (callbacks, timers, other fds): it
    /// iterates the context again, without waiting, only while the context
    /// has work ready without polling (idles, due timeouts).
    pub const DISPATCH_BUDGET: u32 = DISPATCH_BUDGET;

    /// The context the guest runs, while it runs.
    pub fn main_context(&self) -> Option<MainContext> {
        self.state.upgrade().map(|g| g.acquired.ctx.clone())
    }

    /// Whether the guest still runs its context.
    pub fn is_attached(&self) -> bool {
        self.state.upgrade().is_some()
    }

    /// Stop running the context: its fds are unwatched, its timer
    /// cancelled, the context released (another thread may run it now).
    /// Its sources stay attached to it, untouched. Returns whether the
    /// guest was still attached.
    pub fn detach(&self) -> bool {
        let Some(state) = self.state.upgrade() else {
            return false;
        };
        // Ended before unwatching: called from a callback, the batch this
        // runs in would otherwise watch the context again at its end, for
        // a guest that is gone (its fds watched for good, its timer armed).
        state.ended.set(true);
        state.unwatch_all(&self.lp);
        let ctx: Rc<dyn RunContext> = state;
        self.lp.remove_run_context(&ctx)
    }
}

/// What the guest keeps between batches.
struct Guest {
    acquired: Acquired,
    /// Scratch space for `query`: the context's poll fds, and their
    /// `revents` after a poll.
    fds: RefCell<Vec<GPollFD>>,
    /// The fds watched on the loop.
    watched: RefCell<Vec<Watch>>,
    /// The loop timer for the context's next timeout.
    timer: RefCell<Option<TimerHandle>>,
    /// An iteration is queued with `call_soon`.
    soon: Cell<bool>,
    /// The guest is iterating the context (a batch nested in one of its
    /// callbacks must not prepare it again, nor iterate it).
    in_dispatch: Cell<bool>,
    /// Detached: watch nothing, arm nothing, iterate nothing any more
    /// (the batch that detached it, or a queued iteration, may still run).
    ended: Cell<bool>,
    me: RefCell<Weak<Guest>>,
}

impl RunContext for Guest {
    fn enter(&self, run: &mut dyn FnMut()) {
        let ctx = &self.acquired.ctx;
        if ctx.with_thread_default(&mut *run).is_err() {
            run();
        }
        // Whatever the batch did to the context (sources added or gone,
        // a dispatch), look again before the loop waits.
        if !self.in_dispatch.get()
            && let Ok(lp) = oneloop::get_running_loop()
        {
            self.refresh(&lp);
        }
    }

    fn name(&self) -> &str {
        "glib guest"
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // The loop closed (its fd watches and timers are gone with it) or
        // the guest was detached.
        crate::backend::release(&self.acquired.ctx);
    }
}

/// GLib's poll event bits (`GIOCondition`).
const G_IO_IN: u16 = 1;
const G_IO_OUT: u16 = 4;
const G_IO_PRI: u16 = 2;
const G_IO_ERR: u16 = 8;
const G_IO_HUP: u16 = 16;

impl Guest {
    /// `prepare` and `query` the context, then make the loop's watches and
    /// timer match what it asked for.
    fn refresh(&self, lp: &Loop) {
        if self.ended.get() {
            return;
        }
        let ctx = &self.acquired.ctx;
        let (ready, max_priority) = ctx.prepare();
        let (timeout_ms, wanted) = {
            let mut fds = self.fds.borrow_mut();
            let timeout_ms = query(ctx, max_priority, &mut fds);
            let wanted: Vec<Watch> = fds
                .iter()
                .map(|p| Watch {
                    fd: p.fd,
                    read: p.events & (G_IO_IN | G_IO_PRI | G_IO_HUP | G_IO_ERR) != 0,
                    write: p.events & G_IO_OUT != 0,
                    file: file_id(p.fd),
                })
                .collect();
            (timeout_ms, wanted)
        };
        self.rewatch(lp, &wanted);
        if let Some(timer) = self.timer.borrow_mut().take() {
            timer.cancel();
        }
        if ready || timeout_ms == 0 {
            self.iterate_soon(lp);
        } else if timeout_ms > 0 {
            let me = self.me.borrow().clone();
            let delay = Duration::from_millis(u64::from(timeout_ms.unsigned_abs()));
            if let Ok(timer) = lp.call_later(delay, move || {
                if let Some(me) = me.upgrade() {
                    me.iterate();
                }
            }) {
                *self.timer.borrow_mut() = Some(timer);
            }
        }
    }

    fn iterate_soon(&self, lp: &Loop) {
        if self.soon.replace(true) {
            return;
        }
        let me = self.me.borrow().clone();
        let _ = lp.call_soon(move || {
            if let Some(me) = me.upgrade() {
                me.soon.set(false);
                me.iterate();
            }
        });
    }

    /// One fd or the timer fired (or the context had work ready): run GLib
    /// iterations without waiting, as `g_main_context_iteration(FALSE)`
    /// would, while the context has work ready, at most
    /// [`DISPATCH_BUDGET`] of them. The batch's end refreshes.
    ///
    /// Each round prepares and queries afresh, so the poll set it checks is
    /// the context's current one even if user code iterated the context
    /// itself since the last refresh. After the first round, a round runs
    /// only if the context has work without polling (an idle, a due
    /// timeout, a source ready in `prepare`): ready fds are the loop's to
    /// report, in its own order with its other work.
    fn iterate(&self) {
        if self.in_dispatch.get() || self.ended.get() {
            return;
        }
        let _dispatching = Flag::raise(&self.in_dispatch);
        let ctx = &self.acquired.ctx;
        for round in 0..DISPATCH_BUDGET {
            let ready = {
                let mut fds = self.fds.borrow_mut();
                let (ready, max_priority) = ctx.prepare();
                let timeout_ms = query(ctx, max_priority, &mut fds);
                if round > 0 && !ready && timeout_ms != 0 {
                    break;
                }
                poll_now(&mut fds);
                check(ctx, max_priority, &mut fds)
            };
            if !ready {
                break;
            }
            ctx.dispatch();
        }
    }

    /// Watch `wanted` on the loop, unwatching what is no longer asked for.
    ///
    /// An fd counts as the same watch only if it is still the same file: a
    /// source may close its fd and a new one get the same number within one
    /// batch (a reconnect), and the loop's registration went away with the
    /// old file (epoll forgets a closed file), so the new one is watched
    /// afresh.
    fn rewatch(&self, lp: &Loop, wanted: &[Watch]) {
        let mut watched = self.watched.borrow_mut();
        if *watched == wanted {
            return;
        }
        let same = |a: &Watch, b: &Watch| a.fd == b.fd && a.file == b.file;
        for old in watched.iter() {
            let keep = wanted.iter().find(|w| same(w, old));
            // By number: the context stopped listing it, so its source
            // may have closed it already.
            if old.read && !keep.is_some_and(|w| w.read) {
                lp.remove_reader_raw(old.fd);
            }
            if old.write && !keep.is_some_and(|w| w.write) {
                lp.remove_writer_raw(old.fd);
            }
        }
        for new in wanted {
            let had = watched.iter().find(|w| same(w, new)).copied();
            with_fd(new.fd, |borrowed| {
                if new.read && !had.is_some_and(|w| w.read) {
                    let me = self.me.borrow().clone();
                    let _ = lp.add_reader(borrowed, move || {
                        if let Some(me) = me.upgrade() {
                            me.iterate();
                        }
                    });
                }
                if new.write && !had.is_some_and(|w| w.write) {
                    let me = self.me.borrow().clone();
                    let _ = lp.add_writer(borrowed, move || {
                        if let Some(me) = me.upgrade() {
                            me.iterate();
                        }
                    });
                }
            });
        }
        *watched = wanted.to_vec();
    }

    fn unwatch_all(&self, lp: &Loop) {
        self.rewatch(lp, &[]);
        if let Some(timer) = self.timer.borrow_mut().take() {
            timer.cancel();
        }
    }
}

/// One of the context's poll fds as watched on the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watch {
    fd: RawFd,
    read: bool,
    write: bool,
    /// Which file the number stood for (see [`file_id`]).
    file: FileId,
}

/// A file's identity: its device and inode numbers (`fstat`). Tells a
/// socket, pipe or file apart from the one that had its fd number before;
/// not two eventfds (or timerfds), which share one anonymous inode.
type FileId = (u64, u64);

/// The identity of the file `fd` refers to; `(0, 0)` if `fstat` fails
/// (the loop then refuses the fd as well).
fn file_id(fd: RawFd) -> FileId {
    // SAFETY: `fd` came from the context's `query` just made: a source of
    // the context has it open. The `File` is never dropped, so it does not
    // close the fd it does not own; it only lends it to `fstat`.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    file.metadata().map_or((0, 0), |m| (m.dev(), m.ino()))
}

/// The context, acquired by this thread for the guest's lifetime.
struct Acquired {
    ctx: MainContext,
}

impl Acquired {
    fn new(ctx: &MainContext) -> Option<Acquired> {
        let ptr: *mut glib::ffi::GMainContext = ctx.to_glib_none().0;
        // SAFETY: `ptr` is a live context (`ctx` holds a reference);
        // `g_main_context_acquire` only takes GLib's lock and records the
        // owner.
        let ok = unsafe { glib::ffi::g_main_context_acquire(ptr) } != 0;
        ok.then(|| Acquired { ctx: ctx.clone() })
    }
}

impl Drop for Acquired {
    fn drop(&mut self) {
        let ptr: *mut glib::ffi::GMainContext = self.ctx.to_glib_none().0;
        // SAFETY: this thread acquired the context in `Acquired::new` and
        // releases it once; the `Acquired` is `!Send` (it holds a
        // `MainContext` in an `Rc`-owned guest), so this is that thread.
        unsafe { glib::ffi::g_main_context_release(ptr) }
    }
}

/// `g_main_context_query` into `fds`: the context's poll fds; returns its
/// timeout (ms; -1 is none), for sources of `max_priority` or more urgent.
fn query(ctx: &MainContext, max_priority: i32, fds: &mut Vec<GPollFD>) -> i32 {
    let ptr: *mut glib::ffi::GMainContext = ctx.to_glib_none().0;
    let mut timeout = -1;
    fds.clear();
    loop {
        let capacity = i32::try_from(fds.capacity()).unwrap_or(i32::MAX);
        // SAFETY: `fds` has room for `capacity` entries; GLib writes at
        // most that many and returns how many it needs. The context is
        // acquired by this thread and was just prepared.
        let needed = unsafe {
            glib::ffi::g_main_context_query(
                ptr,
                max_priority,
                &mut timeout,
                fds.as_mut_ptr(),
                capacity,
            )
        };
        let needed_len = usize::try_from(needed).unwrap_or(0);
        if needed_len <= fds.capacity() {
            // SAFETY: GLib initialised the first `needed` entries.
            unsafe { fds.set_len(needed_len) };
            return timeout;
        }
        fds.reserve(needed_len);
    }
}

/// `g_poll` with a zero timeout: fill each entry's `revents`.
fn poll_now(fds: &mut [GPollFD]) {
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    let n = u32::try_from(fds.len()).unwrap_or(u32::MAX);
    // SAFETY: `fds` is a valid array of `n` entries; `g_poll` with timeout 0
    // does not block and only writes `revents`.
    unsafe { glib::ffi::g_poll(fds.as_mut_ptr(), n, 0) };
}

/// `g_main_context_check` over the polled fds: whether a source is ready.
fn check(ctx: &MainContext, max_priority: i32, fds: &mut [GPollFD]) -> bool {
    let ptr: *mut glib::ffi::GMainContext = ctx.to_glib_none().0;
    let n = i32::try_from(fds.len()).unwrap_or(i32::MAX);
    // SAFETY: the context is acquired by this thread; `fds` are the `n`
    // entries of the `query` just made (sorted by fd, as GLib requires; it
    // returns false by itself if its poll set changed since).
    let ready: gboolean =
        unsafe { glib::ffi::g_main_context_check(ptr, max_priority, fds.as_mut_ptr(), n) };
    ready != 0
}

/// Lend `fd`, one of the context's poll fds, to the loop's fd API for the
/// duration of `f`.
fn with_fd(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>)) {
    // SAFETY: `fd` came from the context's `query` just made: a source of
    // the context has it open and registered. The borrow lasts only this
    // call; the loop keeps the number, not the borrow, and the guest
    // unwatches it when the context stops listing it.
    f(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The most GLib iterations one wake-up of the guest runs while the
/// context has work ready without polling (see [`Guest::iterate`]).
const DISPATCH_BUDGET: u32 = 16;

/// Sets a flag for its lifetime, and clears it even on unwinding.
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
