//! The oneloop `GSource`: the one file of this crate with `unsafe` code.
//!
//! glib-rs 0.22 exposes no safe custom source (HOSTS.md §2.4), so this file
//! builds one with `glib::ffi`, the way glib's own future executor does
//! (`glib/src/main_context_futures.rs`): `g_source_new` with static
//! [`GSourceFuncs`](ffi::GSourceFuncs), `g_source_set_ready_time` for the
//! next oneloop deadline, and `g_source_add_unix_fd` for the watched fds.
//!
//! # How the source maps the backend contract
//!
//! - **ready time**: `Now` is ready time 0, `At(t)` is `t` on GLib's
//!   monotonic clock in microseconds rounded **up**, `OnEvent` is -1. GLib
//!   itself checks the ready time against `g_get_monotonic_time()` and rounds
//!   its poll timeout up to the next millisecond, so a timer is never early.
//! - **fds**: every watched fd is in the loop's
//!   [`Selector`](oneloop::native::Selector), a private level-triggered
//!   epoll set, and the source has **one** `g_source_add_unix_fd` tag, on
//!   the selector's fd, while any fd is watched. GLib polls that one fd
//!   (readable while a watched fd is ready, level-triggered like GLib's own
//!   poll), and `dispatch` selects with a zero timeout only when
//!   `g_source_query_unix_fd` says it is readable. So an iteration costs
//!   GLib one `GPollFD` whatever the number of fds (it used to poll, and
//!   the source to query, every watched fd on every iteration: 10 000
//!   connections were 8.7 s to connect, 12× the default loop), and an fd
//!   change is one `epoll_ctl`.
//! - **remote wake**: an atomic flag that `prepare`/`check` read, set before
//!   `g_main_context_wakeup` (thread-safe, a write to GLib's wakeup fd).
//! - **recursion**: while its dispatch runs, a nested main loop on the same
//!   context (a modal dialog) neither dispatches the source nor polls its
//!   fds: decision D4, "suspend". GLib would do that itself for a source
//!   that is not `can_recurse`, but by blocking it around *every* dispatch:
//!   each watched fd leaves the poll set and comes back, two writes to the
//!   context's wake-up fd per fd per dispatch, whether anything nests or
//!   not. So the source is `can_recurse` and suspends itself, only when a
//!   nested iteration calls `prepare` during its dispatch: its fd leaves the
//!   poll set and its ready time goes to -1 until that dispatch returns
//!   (`SourceState::suspend`/`resume`); what the backend asks for meanwhile
//!   is recorded and applied on resume.
//! - **panics**: every trampoline runs inside `catch_unwind`; nothing
//!   unwinds into C.
//! - **threads**: the state is `!Send`, but a context that nobody owned
//!   when the loop was built may be iterated by another thread later. The
//!   trampolines compare the calling thread with the loop's first: on
//!   another thread `prepare` and `check` answer "not ready" and `dispatch`
//!   removes the source, without touching the state.

use std::cell::Cell;
use std::ffi::c_int;
use std::io::{self, Write};
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, ThreadId};

use glib::ffi;
use glib::translate::{FromGlibPtrFull, IntoGlib, ToGlibPtr};
use oneloop::backend::{Driver, Interest};
use oneloop::native::Selector;

/// What the source's callbacks need; shared between the backend (an `Rc`)
/// and the C source (one `Rc` turned into a raw pointer, released in
/// `finalize`).
pub(crate) struct SourceState {
    /// The loop's side of the plug.
    pub(crate) driver: Driver,
    /// Set by remote wakes, cleared by the dispatch that serves them.
    pub(crate) woken: Arc<AtomicBool>,
    /// True while `dispatch` runs the driver: so that `arm(Now)` issued at
    /// the end of a batch can be told from new work posted by host code
    /// (EM-07), and so that a nested iteration, which only a callback run
    /// by the driver can start, finds the source dispatching (D4).
    pub(crate) in_dispatch: Cell<bool>,
    /// The watched fds.
    selector: Selector,
    /// The `g_source_add_unix_fd` tag of the selector's fd: there while an
    /// fd is watched and the source is not suspended.
    tag: Cell<Option<Tag>>,
    /// The ready time the backend asked for, applied unless suspended.
    ready_time: Cell<i64>,
    /// True while a nested iteration found this source dispatching: its fds
    /// are out of GLib's poll set and its ready time is -1 (D4).
    suspended: Cell<bool>,
    /// True from a dispatch that found the loop not running (owned mode
    /// between runs, the context iterated by someone else) until the next
    /// run arms: the fds are out of GLib's poll set, or a ready fd, which
    /// the loop ignores while it is not running (EM-06), would keep whoever
    /// iterates the context busy.
    parked: Cell<bool>,
    /// The loop armed from inside the current dispatch: it ran an
    /// iteration (the scheduler arms at the end of every one, and a loop
    /// that is not running returns at once, arming nothing). A run's last
    /// dispatch, which halts it, does not park: parking there would take
    /// the fds out and put them back (a `g_source_remove_unix_fd` and a
    /// `g_source_add_unix_fd`, about 1 000 instructions) on every run.
    iterated: Cell<bool>,
    /// A dispatch that found the loop not running cleared a remote wake:
    /// what it announced (a `call_soon_threadsafe`) still waits in the
    /// loop's inbox, and the inbox wakes only when it goes from empty to
    /// non-empty, so the wake is given back when the next run arms.
    owed_wake: Cell<bool>,
}

impl SourceState {
    /// Ask for `us` as the ready time; applied at once unless suspended.
    ///
    /// # Safety
    /// `source` is this state's live, not destroyed source.
    unsafe fn set_ready_time(&self, source: *mut ffi::GSource, us: i64) {
        self.ready_time.set(us);
        if !self.suspended.get() {
            // SAFETY: by the caller's contract; GLib locks the context.
            unsafe { ffi::g_source_set_ready_time(source, us) };
        }
    }

    /// Take the fds out of GLib's poll set and the ready time off, so that
    /// a nested iteration neither polls nor dispatches this source (D4).
    ///
    /// # Safety
    /// `source` is this state's live source, and GLib is calling it.
    unsafe fn suspend(&self, source: *mut ffi::GSource) {
        if self.suspended.replace(true) {
            return;
        }
        // SAFETY: by the caller's contract.
        unsafe { self.set_tag(source, false) };
        // SAFETY: by the caller's contract.
        unsafe { ffi::g_source_set_ready_time(source, -1) };
    }

    /// Undo [`suspend`](Self::suspend), with the fds and ready time asked
    /// for meanwhile.
    ///
    /// # Safety
    /// As for `suspend`.
    unsafe fn resume(&self, source: *mut ffi::GSource) {
        // SAFETY: by the caller's contract, a live source.
        if !self.suspended.replace(false) || unsafe { ffi::g_source_is_destroyed(source) } != 0 {
            // Not suspended, or closed meanwhile (`destroy` emptied `fds`).
            return;
        }
        // SAFETY: by the caller's contract.
        unsafe { self.set_tag(source, self.wants_tag()) };
        // SAFETY: by the caller's contract.
        unsafe { ffi::g_source_set_ready_time(source, self.ready_time.get()) };
    }

    /// Whether GLib should poll the selector's fd (unless suspended).
    fn wants_tag(&self) -> bool {
        !self.parked.get() && !self.selector.is_empty()
    }

    /// The loop is not running: take the fds out of GLib's poll set until
    /// the next run ([`LoopSource::armed`]), and keep the remote wake the
    /// dispatch cleared, if it did, for then.
    ///
    /// # Safety
    /// `source` is this state's live, not destroyed source.
    unsafe fn park(&self, source: *mut ffi::GSource, cleared_wake: bool) {
        self.parked.set(true);
        if cleared_wake {
            self.owed_wake.set(true);
        }
        if !self.suspended.get() {
            // SAFETY: by the caller's contract.
            unsafe { self.set_tag(source, false) };
        }
    }
}

impl SourceState {
    /// Add or remove the selector fd's tag, so that GLib polls it exactly
    /// when `on`.
    ///
    /// # Safety
    /// `source` is this state's live, not destroyed source.
    unsafe fn set_tag(&self, source: *mut ffi::GSource, on: bool) {
        match (self.tag.get(), on) {
            (None, true) => {
                let fd = self.selector.as_raw_fd();
                // SAFETY: by the caller's contract; GLib only polls the
                // number, and the selector (so its fd) outlives the source's
                // use of it: `destroy` removes the tag first.
                let tag = unsafe { ffi::g_source_add_unix_fd(source, fd, ffi::G_IO_IN) };
                self.tag.set(Some(Tag(tag)));
            }
            (Some(tag), false) => {
                self.tag.set(None);
                // SAFETY: a live tag of this source, removed once.
                unsafe { ffi::g_source_remove_unix_fd(source, tag.0) };
            }
            _ => {}
        }
    }
}

/// A `g_source_add_unix_fd` tag.
#[derive(Clone, Copy)]
struct Tag(ffi::gpointer);

/// The C layout GLib allocates: the `GSource` header first, then ours.
#[repr(C)]
struct RawSource {
    base: ffi::GSource,
    /// `Rc::into_raw` of the state; owned by the source until `finalize`.
    state: *const SourceState,
    /// The loop's thread: the only one that may touch the `!Send` state.
    /// Written before the source is attached, never after, so any thread
    /// may read it.
    owner: ThreadId,
}

static FUNCS: ffi::GSourceFuncs = ffi::GSourceFuncs {
    prepare: Some(prepare),
    check: Some(check),
    dispatch: Some(dispatch),
    finalize: Some(finalize),
    closure_callback: None,
    closure_marshal: None,
};

/// The oneloop source of one loop, attached to one main context.
///
/// # Invariant
/// `source` was made by [`LoopSource::new`] from [`FUNCS`], so its memory is
/// a [`RawSource`] whose `state` is valid until `finalize`; this struct holds
/// a strong reference to the source (and so to the state) until dropped.
pub(crate) struct LoopSource {
    source: glib::Source,
    state: Rc<SourceState>,
    /// The priority last set, to skip redundant `g_source_set_priority`.
    priority: Cell<i32>,
}

impl LoopSource {
    /// A new source at `priority`, attached to `ctx`, whose `prepare` and
    /// `check` read `woken`.
    ///
    /// # Errors
    /// If the selector cannot be made (out of fds).
    pub(crate) fn new(
        ctx: &glib::MainContext,
        priority: glib::Priority,
        woken: Arc<AtomicBool>,
        driver: Driver,
    ) -> io::Result<LoopSource> {
        let state = Rc::new(SourceState {
            driver,
            woken,
            in_dispatch: Cell::new(false),
            selector: Selector::new()?,
            tag: Cell::new(None),
            ready_time: Cell::new(-1),
            suspended: Cell::new(false),
            parked: Cell::new(false),
            iterated: Cell::new(false),
            owed_wake: Cell::new(false),
        });
        // SAFETY: `FUNCS` lives for the program and GLib never writes
        // through the pointer (glib-rs passes its static funcs the same
        // way); the size is that of `RawSource`, whose first field is the
        // `GSource` header, as `g_source_new` requires. The returned source
        // has one reference, which `from_glib_full` takes over.
        let source = unsafe {
            let raw = ffi::g_source_new(
                std::ptr::addr_of!(FUNCS).cast_mut(),
                mem::size_of::<RawSource>() as u32,
            );
            let raw_source = raw.cast::<RawSource>();
            // Our fields, after the header, in the zeroed block GLib
            // allocated: written in place before the source is attached.
            std::ptr::addr_of_mut!((*raw_source).state).write(Rc::into_raw(state.clone()));
            std::ptr::addr_of_mut!((*raw_source).owner).write(thread::current().id());
            glib::Source::from_glib_full(raw)
        };
        // SAFETY: a valid source (just created); GLib copies the name.
        unsafe {
            ffi::g_source_set_name(source.to_glib_none().0, c"oneloop".as_ptr());
            ffi::g_source_set_priority(source.to_glib_none().0, priority.into_glib());
            // GLib would otherwise block the source around every dispatch:
            // take each fd out of its poll set and put it back, two writes
            // to its wake-up fd per watched fd per dispatch. The source
            // suspends itself instead, only when a nested iteration needs
            // it (see `prepare`).
            ffi::g_source_set_can_recurse(source.to_glib_none().0, ffi::GTRUE);
        }
        source.attach(Some(ctx));
        Ok(LoopSource {
            source,
            state,
            priority: Cell::new(priority.into_glib()),
        })
    }

    pub(crate) fn state(&self) -> &Rc<SourceState> {
        &self.state
    }

    /// `g_source_set_ready_time`: 0 now, -1 never, else monotonic µs;
    /// kept for the resume while suspended. (GLib returns early when the
    /// value is unchanged.)
    pub(crate) fn set_ready_time(&self, us: i64) {
        if !self.source.is_destroyed() {
            // SAFETY: the source is valid (see the type's invariant) and not
            // destroyed.
            unsafe { self.state.set_ready_time(self.source.to_glib_none().0, us) };
        }
    }

    /// The loop armed a dispatch. From inside a dispatch: that dispatch
    /// ran an iteration. Otherwise, if a dispatch found the loop not
    /// running (parked) and it runs now: give GLib its fds back, and the
    /// source the remote wake that dispatch cleared.
    pub(crate) fn armed(&self) {
        let state = &self.state;
        if state.in_dispatch.get() {
            state.iterated.set(true);
        } else if state.parked.get() && state.driver.is_live() {
            state.parked.set(false);
            if state.owed_wake.replace(false) {
                // Read by the next `prepare`, on this thread.
                state.woken.store(true, Ordering::Release);
            }
            if !state.suspended.get() && !self.source.is_destroyed() {
                // SAFETY: the source is valid (the type's invariant) and
                // not destroyed.
                unsafe { state.set_tag(self.source.to_glib_none().0, state.wants_tag()) };
            }
        }
    }

    /// `g_source_set_priority`, skipped when unchanged.
    pub(crate) fn set_priority(&self, priority: i32) {
        if self.priority.replace(priority) != priority && !self.source.is_destroyed() {
            // SAFETY: valid, not destroyed, not a child source.
            unsafe { ffi::g_source_set_priority(self.source.to_glib_none().0, priority) };
        }
    }

    /// Watch `fd` for `interest` (level-triggered, in the selector);
    /// [`Interest::NONE`] removes it.
    ///
    /// # Errors
    /// What the selector answers (a closed fd, a regular file).
    pub(crate) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        let state = &self.state;
        if self.source.is_destroyed() {
            return if interest.is_none() {
                Ok(())
            } else {
                Err(io::Error::other("the loop's GLib source is destroyed"))
            };
        }
        state.selector.watch(fd, interest)?;
        if !state.suspended.get() {
            // SAFETY: the source is valid (the type's invariant) and not
            // destroyed.
            unsafe { state.set_tag(self.source.to_glib_none().0, state.wants_tag()) };
        }
        Ok(())
    }

    /// Remove the source from its context; no callback runs afterwards.
    pub(crate) fn destroy(&self) {
        let state = &self.state;
        state.selector.clear();
        if !self.source.is_destroyed() {
            // SAFETY: valid and not destroyed.
            unsafe { state.set_tag(self.source.to_glib_none().0, false) };
            self.source.destroy();
        }
    }
}

impl Drop for LoopSource {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// The current monotonic time GLib compares ready times with, in µs.
pub(crate) fn monotonic_us() -> i64 {
    glib::monotonic_time()
}

/// The state of `source`.
///
/// # Safety
/// `source` is a live source created by [`LoopSource::new`], and the
/// reference is used only during the current call from GLib.
unsafe fn state<'a>(source: *mut ffi::GSource) -> &'a SourceState {
    // SAFETY: by the caller's contract `source` is a `RawSource` whose
    // `state` stays valid until `finalize`, which cannot run while GLib is
    // calling one of this source's other functions.
    unsafe { &*(*source.cast::<RawSource>()).state }
}

thread_local! {
    /// This thread's id, cached: `prepare`, `check` and `dispatch` compare
    /// it with the source's owner in every iteration.
    static THREAD: ThreadId = thread::current().id();
}

/// Whether GLib calls `source` on the loop's thread, the only one where
/// its state may be touched.
///
/// # Safety
/// `source` is a live source created by [`LoopSource::new`].
unsafe fn on_owner(source: *mut ffi::GSource) -> bool {
    // SAFETY: by the caller's contract a `RawSource`, whose `owner` is
    // never written after the source was attached.
    let owner = unsafe { (*source.cast::<RawSource>()).owner };
    // (`ThreadId` has no destructor, so this never fails; if it did, the
    // thread would be treated as a stranger: the safe side.)
    THREAD.try_with(|t| *t == owner).unwrap_or(false)
}

/// Run `f`, catching any panic: nothing may unwind into GLib (a panic out
/// of an `extern "C"` function aborts the process).
fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // `writeln!`, not `eprintln!`, which panics when stderr fails
            // (a closed pipe, SIGPIPE ignored as Rust does): out of here it
            // would abort the process.
            let _ = writeln!(
                io::stderr(),
                "oneloop-glib: panic caught at the GSource boundary: {msg}"
            );
            fallback
        }
    }
}

unsafe extern "C" fn prepare(source: *mut ffi::GSource, timeout: *mut c_int) -> ffi::gboolean {
    // SAFETY: GLib calls this only for sources made from `FUNCS`.
    if !unsafe { on_owner(source) } {
        // Another thread iterates the context: leave the state alone (see
        // `dispatch`). SAFETY: GLib passes a valid out-pointer.
        unsafe { *timeout = -1 };
        return ffi::GFALSE;
    }
    // SAFETY: GLib calls this only for sources made from `FUNCS`, on the
    // loop's thread.
    let state = unsafe { state(source) };
    let woken = if state.in_dispatch.get() {
        // A nested iteration from inside our dispatch (a modal dialog):
        // oneloop is suspended until that dispatch returns (D4).
        // SAFETY: our source, from GLib's call.
        guard((), || unsafe { state.suspend(source) });
        false
    } else {
        guard(false, || state.woken.load(Ordering::Acquire))
    };
    // SAFETY: GLib passes a valid out-pointer. -1 lets the ready time and
    // the fds decide how long GLib may block.
    unsafe { *timeout = if woken { 0 } else { -1 } };
    woken.into()
}

unsafe extern "C" fn check(source: *mut ffi::GSource) -> ffi::gboolean {
    // GLib itself treats a reached ready time and polled fds as ready.
    // SAFETY: GLib calls this only for sources made from `FUNCS`.
    if !unsafe { on_owner(source) } {
        return ffi::GFALSE;
    }
    // SAFETY: as above, on the loop's thread.
    let state = unsafe { state(source) };
    let woken = !state.in_dispatch.get() && guard(false, || state.woken.load(Ordering::Acquire));
    woken.into()
}

unsafe extern "C" fn dispatch(
    source: *mut ffi::GSource,
    _callback: ffi::GSourceFunc,
    _data: ffi::gpointer,
) -> ffi::gboolean {
    // SAFETY: GLib calls this only for sources made from `FUNCS`.
    if !unsafe { on_owner(source) } {
        // The context is iterated by a thread that is not the loop's (it
        // was free when the loop was built, another thread took it since):
        // the loop's `!Send` state and callbacks must not run here. Remove
        // the source rather than stay ready and spin that thread; the
        // loop's thread finds it destroyed (`watch` says so).
        // `writeln!`, not `eprintln!`: nothing may panic here.
        let _ = writeln!(
            io::stderr(),
            "oneloop-glib: the loop's main context is iterated by another thread than the loop's; \
             its source is removed (build the loop on the thread that iterates the context)"
        );
        return ffi::GFALSE;
    }
    // SAFETY: as above, on the loop's thread.
    let state = unsafe { state(source) };
    if state.in_dispatch.get() {
        // Nested, though `prepare` suspended the source: GLib found it
        // ready from before the nesting. The outer dispatch serves it.
        return ffi::GTRUE;
    }
    guard((), || dispatch_state(source, state));
    // Also after a panic in the driver's dispatch.
    state.in_dispatch.set(false);
    // SAFETY: our source, from its dispatch.
    guard((), || unsafe { state.resume(source) });
    ffi::GTRUE
}

fn dispatch_state(source: *mut ffi::GSource, state: &SourceState) {
    // A wake that arrives after the load stays set for the next `prepare`.
    let cleared_wake = state.woken.load(Ordering::Acquire);
    if cleared_wake {
        state.woken.store(false, Ordering::Release);
    }
    let driver = &state.driver;
    // The loop, upgraded once for the reports and the dispatch.
    let target = driver.target();
    if let Some(tag) = state.tag.get() {
        // SAFETY: `source` is ours and `tag` its live tag, queried from its
        // own dispatch as GLib documents.
        let cond = unsafe { ffi::g_source_query_unix_fd(source, tag.0) };
        if cond != 0 {
            // A failure (not expected of a zero-timeout epoll_wait on our
            // own epoll fd) reports nothing; GLib's poll says so again.
            let _ = state
                .selector
                .select(Some(std::time::Duration::ZERO), |fd, r| {
                    if let Some(lp) = &target {
                        lp.fd_ready(fd, r);
                    }
                });
        }
    }
    state.iterated.set(false);
    state.in_dispatch.set(true);
    if let Some(lp) = &target {
        lp.dispatch();
    }
    state.in_dispatch.set(false);
    // Let go first: whether the loop outlived its dispatch is part of the
    // question.
    drop(target);
    if !driver.is_live() {
        // Not running (owned mode between runs) or closed: do not stay
        // ready and spin whoever iterates the context, neither by the ready
        // time nor, if this dispatch ran nothing, by a ready fd that the
        // loop ignores until it runs; the next run arms again, which gives
        // the fds back (EM-06), with the remote wake cleared here.
        // SAFETY: our own source, from its dispatch, so alive (GLib holds
        // it). If a close destroyed it meanwhile, `destroy` removed the tag
        // first, so `park` makes no GLib call, and GLib accepts a ready
        // time on a destroyed source that is still referenced.
        unsafe {
            state.set_ready_time(source, -1);
            if !state.iterated.get() {
                state.park(source, cleared_wake);
            }
        }
    }
}

unsafe extern "C" fn finalize(source: *mut ffi::GSource) {
    // SAFETY: GLib calls `finalize` once, when the last reference goes; the
    // pointer came from `Rc::into_raw` in `LoopSource::new`.
    let state = unsafe { Rc::from_raw((*source.cast::<RawSource>()).state) };
    // SAFETY: GLib calls this only for sources made from `FUNCS`.
    if !unsafe { on_owner(source) } {
        // The context was finalized on another thread: the state holds a
        // `!Send` driver that must not be dropped here; leak it instead.
        mem::forget(state);
    }
}
