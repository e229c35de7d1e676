//! `add_signal_handler` / `remove_signal_handler`: Unix signals as ordinary
//! loop callbacks (SG-01…SG-07).
//!
//! # How it works
//!
//! The first handler a loop adds creates a self-pipe, watched with
//! [`Loop::add_reader`] like any fd. The C-level handler (in `sys`) marks the
//! signal pending and writes a byte to the pipe, both async-signal-safe
//! (D6). The pipe's reader drains it and queues each pending signal's
//! handler with `call_soon`, so handlers run serialized with every other
//! callback and may use the loop freely (SG-01).
//!
//! # Invariants
//! - One loop per process owns signal handling at a time (dispositions are
//!   process-wide); another loop's `add_signal_handler` answers
//!   `InvalidState` until the owner removes its handlers or closes.
//! - A signal's disposition is replaced on its first handler and given back
//!   (the one it had before) when its handler is removed, and for every
//!   signal when the owning loop closes (SG-05, SG-06). A loop that adds no
//!   handler changes nothing process-wide.
//! - Ownership is the owning process's: a child forked from the owner's
//!   callback (as asyncio's, which resets its wake-up fd in the child) may
//!   handle signals with a loop of its own. The fork handler forgets the
//!   wake-up fd and the process-wide claim; the parent's owner, copied into
//!   the child's thread-local, is recognised by its pid and let go the
//!   first time the child asks, giving back the dispositions it had taken.

pub(crate) mod sys;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;

/// The signal state of the owning loop (on the thread that owns it).
struct Owner {
    loop_id: u64,
    /// The process that set this up: another one is a fork child, which
    /// must not act for the parent's loop.
    pid: rustix::process::Pid,
    lp: std::rc::Weak<crate::event_loop::LoopInner>,
    read: OwnedFd,
    write: OwnedFd,
    handlers: RefCell<HashMap<i32, Rc<dyn Fn()>>>,
    saved: RefCell<HashMap<i32, sys::Saved>>,
    released: Cell<bool>,
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Owner")
            .field("loop_id", &self.loop_id)
            .finish()
    }
}

thread_local! {
    static OWNER: RefCell<Option<Rc<Owner>>> = const { RefCell::new(None) };
}

/// Releases the signal state when the loop drops the pipe's reader (at
/// `close()`), so a closed loop leaves no disposition behind.
struct ReleaseOnDrop(Rc<Owner>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        release(&self.0);
    }
}

fn release(owner: &Rc<Owner>) {
    if owner.released.replace(true) {
        return;
    }
    if owner.pid != rustix::process::getpid() {
        // The parent's, copied by a fork: its pipe and its loop's poller
        // are shared with the parent, so nothing of it may be touched here
        // (unwatching the pipe would unwatch it in the parent's poller);
        // the dispositions it took are the child's to give back.
        forget_parent(owner);
        return;
    }
    sys::set_wake_fd(-1);
    let saved = std::mem::take(&mut *owner.saved.borrow_mut());
    for (sig, s) in &saved {
        let _ = sys::restore(*sig, s);
        sys::take_pending(*sig);
    }
    let handlers = std::mem::take(&mut *owner.handlers.borrow_mut());
    drop(handlers);
    OWNER.with(|o| {
        let mut o = o.borrow_mut();
        if o.as_ref().is_some_and(|x| Rc::ptr_eq(x, owner)) {
            *o = None;
        }
    });
    sys::unclaim();
    if let Some(inner) = owner.lp.upgrade() {
        Loop::from_inner(inner).remove_reader(&owner.read);
    }
}

/// Give back the dispositions a parent's owner took, in its fork child.
fn forget_parent(owner: &Rc<Owner>) {
    let saved = std::mem::take(&mut *owner.saved.borrow_mut());
    for (sig, s) in &saved {
        let _ = sys::restore(*sig, s);
        sys::take_pending(*sig);
    }
    // Leaked, as the parent's loop is in the child (`crate::fork`): a
    // handler may hold the last handle of that loop, whose drop would
    // unregister its fds from the poller it shares with the parent.
    std::mem::forget(std::mem::take(&mut *owner.handlers.borrow_mut()));
    OWNER.with(|o| {
        let mut o = o.borrow_mut();
        if o.as_ref().is_some_and(|x| Rc::ptr_eq(x, owner)) {
            *o = None;
        }
    });
}

/// This thread's owner, if it is one of this process (see
/// [`forget_parent`]).
fn current_owner() -> Option<Rc<Owner>> {
    let owner = OWNER.with(|o| o.borrow().clone())?;
    if owner.pid == rustix::process::getpid() {
        return Some(owner);
    }
    owner.released.set(true);
    forget_parent(&owner);
    None
}

fn check_number(sig: i32) -> Result<()> {
    if sig <= 0 || sig >= sys::NSIG {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{sig} is not a signal number"),
        ));
    }
    Ok(())
}

/// Signals a handler cannot be set for: uncatchable, or synchronous faults
/// that re-fault at once if the C handler just returns.
fn uncatchable(sig: i32) -> bool {
    [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
    ]
    .contains(&sig)
}

fn on_main_thread() -> bool {
    sys::on_main_thread()
}

impl Loop {
    /// Run `handler` as a loop callback each time signal `sig` arrives
    /// (SG-01). Adding again for the same signal replaces the handler
    /// (SG-03) and takes the signal back if something changed its
    /// disposition behind the loop meanwhile. A signal arriving while the
    /// loop waits wakes it (SG-04).
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidArgument`]: `sig` is not a signal number, or
    ///   cannot be caught (SIGKILL, SIGSTOP) or is a synchronous fault
    ///   (SIGSEGV, SIGBUS, SIGFPE, SIGILL) (SG-02), or is one the C library
    ///   keeps for itself (glibc's 32 and 33).
    /// - [`ErrorKind::Unsupported`]: off the main thread, or on a loop
    ///   attached to a host loop, which owns signals (SG-07).
    /// - [`ErrorKind::InvalidState`]: another loop handles signals.
    /// - [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::Io`] if the
    ///   pipe or the disposition cannot be set up.
    ///
    /// # Examples
    ///
    /// Run until a signal comes: here SIGUSR1, sent by the process itself
    /// as `kill -USR1` would; SIGINT would make Ctrl-C stop the loop.
    ///
    /// ```
    /// use rustix::process::{Signal, getpid, kill_process};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let stop = lp.clone();
    /// lp.add_signal_handler(libc::SIGUSR1, move || stop.stop())?;
    /// kill_process(getpid(), Signal::USR1)?;
    /// lp.run_forever()?; // until the handler runs, as an ordinary callback
    /// assert!(lp.remove_signal_handler(libc::SIGUSR1)?); // the old disposition is back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_signal_handler(&self, sig: i32, handler: impl Fn() + 'static) -> Result<()> {
        check_number(sig)?;
        if uncatchable(sig) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("signal {sig} cannot be handled"),
            ));
        }
        self.check_open()?;
        if self.is_attached() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "an attached loop's host owns signal handling",
            ));
        }
        if !on_main_thread() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "signal handlers can only be added on the main thread",
            ));
        }
        let owner = self.signal_owner()?;
        // Installed on every call, not only the first: whoever changed the
        // disposition behind the loop since (Python's `signal.signal`, a C
        // library) gets it taken back, as asyncio's `signal.signal` call
        // per `add_signal_handler` does. What removal gives back stays the
        // disposition from before the loop first took the signal.
        let previous = match sys::install(sig) {
            Ok(previous) => previous,
            Err(e) => {
                // EINVAL: a number the C library keeps for itself (glibc's
                // 32 and 33), asyncio's "cannot be caught".
                let err = if e.raw_os_error() == Some(libc::EINVAL) {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("signal {sig} cannot be handled: {e}"),
                    )
                } else {
                    e.into()
                };
                // A loop with no handler owns nothing (asyncio gives back
                // its wake-up fd here too).
                if owner.handlers.borrow().is_empty() {
                    release(&owner);
                }
                return Err(err);
            }
        };
        owner.saved.borrow_mut().entry(sig).or_insert(previous);
        let old = owner.handlers.borrow_mut().insert(sig, Rc::new(handler));
        drop(old);
        Ok(())
    }

    /// Remove the handler of `sig` and give the signal back the
    /// disposition it had before (the default, unless the program set
    /// another), so that Ctrl-C works again after SIGINT's (SG-05).
    /// Returns whether a handler was set; `false` for SIGKILL (SG-02).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] if `sig` is not a signal number.
    pub fn remove_signal_handler(&self, sig: i32) -> Result<bool> {
        check_number(sig)?;
        let Some(owner) = current_owner().filter(|o| o.loop_id == self.id() && !o.released.get())
        else {
            return Ok(false);
        };
        let removed = owner.handlers.borrow_mut().remove(&sig);
        let Some(removed) = removed else {
            return Ok(false);
        };
        drop(removed);
        let saved = owner.saved.borrow_mut().remove(&sig);
        if let Some(saved) = saved {
            sys::restore(sig, &saved)?;
        }
        sys::take_pending(sig);
        if owner.handlers.borrow().is_empty() {
            release(&owner);
        }
        Ok(true)
    }

    /// This loop's signal state, set up on first use.
    fn signal_owner(&self) -> Result<Rc<Owner>> {
        let id = self.id();
        if let Some(o) = current_owner() {
            if o.loop_id == id {
                return Ok(o);
            }
            return Err(Error::new(
                ErrorKind::InvalidState,
                "another event loop handles signals in this process",
            ));
        }
        if !sys::claim() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "another event loop handles signals in this process",
            ));
        }
        let setup = (|| {
            let (read, write) = rustix::pipe::pipe_with(
                rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
            )
            .map_err(std::io::Error::from)?;
            let owner = Rc::new(Owner {
                loop_id: id,
                pid: rustix::process::getpid(),
                lp: Rc::downgrade(&self.inner),
                read,
                write,
                handlers: RefCell::new(HashMap::new()),
                saved: RefCell::new(HashMap::new()),
                released: Cell::new(false),
            });
            let guard = ReleaseOnDrop(owner.clone());
            // Weakly: the loop holds this callback, so a strong handle would
            // keep a loop dropped without `close()` (and its signals) for good.
            let lp = self.downgrade();
            self.add_reader(&owner.read, move || {
                if let Some(lp) = lp.upgrade() {
                    dispatch(&lp, &guard.0);
                }
            })?;
            Ok::<_, Error>(owner)
        })();
        let owner = match setup {
            Ok(o) => o,
            Err(e) => {
                sys::unclaim();
                return Err(e);
            }
        };
        use std::os::fd::AsRawFd;
        sys::set_wake_fd(owner.write.as_raw_fd());
        OWNER.with(|o| *o.borrow_mut() = Some(owner.clone()));
        Ok(owner)
    }
}

/// The pipe is readable: drain it, queue the handler of each pending signal.
fn dispatch(lp: &Loop, owner: &Rc<Owner>) {
    let mut buf = [0u8; 64];
    while let Ok(n) = rustix::io::read(&owner.read, &mut buf) {
        if n == 0 {
            break;
        }
    }
    for sig in 1..sys::NSIG {
        if sys::take_pending(sig) {
            let h = owner.handlers.borrow().get(&sig).cloned();
            if let Some(h) = h {
                let _ = lp.call_soon(move || h());
            }
        }
    }
}
