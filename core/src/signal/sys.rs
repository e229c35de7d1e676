//! The signal-handler plumbing: the only `unsafe` of the signal module.
//!
//! The C handler does two async-signal-safe things: set the signal's
//! pending flag and write one byte to the owning loop's self-pipe (D6). The
//! loop watches the pipe's read end like any fd and runs the Rust handlers
//! as ordinary callbacks.
//!
//! Why not `signal-hook-registry`: it never gives a signal its previous
//! disposition back when the last action is removed (its docs say so), and
//! `remove_signal_handler` must (SG-05: Ctrl-C works again afterwards).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Signal numbers are below this on every supported platform (Linux NSIG is 65).
pub(crate) const NSIG: i32 = 65;

/// The write end of the owning loop's self-pipe, or -1.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Signals that arrived and were not yet dispatched.
static PENDING: [AtomicBool; NSIG as usize] = [const { AtomicBool::new(false) }; NSIG as usize];

extern "C" fn on_signal(sig: libc::c_int) {
    // errno must survive the handler: the interrupted code may be reading it.
    // The `errno` crate reads and writes this thread's errno slot on every
    // Unix (`__errno_location`, `__error`, `___errno`), nothing more.
    let saved = errno::errno();
    if (0..NSIG).contains(&sig) {
        PENDING[sig as usize].store(true, Ordering::SeqCst);
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: `write` is async-signal-safe; `byte` outlives the call; a
        // full pipe (EAGAIN) is fine: a byte is already waiting and the
        // pending flag is set.
        unsafe {
            libc::write(fd, (&raw const byte).cast(), 1);
        }
    }
    errno::set_errno(saved);
}

/// Point the C handler at a self-pipe write end (or -1 for none).
pub(crate) fn set_wake_fd(fd: i32) {
    WAKE_FD.store(fd, Ordering::SeqCst);
}

/// Any loop in the process owns signals (the owner may live on another
/// thread).
static OWNED: AtomicBool = AtomicBool::new(false);

/// Claim signals for a loop; false if a loop of this process has them.
pub(crate) fn claim() -> bool {
    !OWNED.swap(true, Ordering::SeqCst)
}

/// Give the claim back.
pub(crate) fn unclaim() {
    OWNED.store(false, Ordering::SeqCst);
}

/// In a fork child, before `fork` returns there (`crate::fork`): the
/// parent's self-pipe is shared with the parent (a signal of the child's
/// must not wake the parent), and its claim on signals is the parent's.
/// Atomic stores only: async-signal-safe.
pub(crate) fn forget_after_fork() {
    set_wake_fd(-1);
    unclaim();
}

/// Take the pending flag of `sig`.
pub(crate) fn take_pending(sig: i32) -> bool {
    PENDING[sig as usize].swap(false, Ordering::SeqCst)
}

/// A saved disposition, to give back on removal.
pub(crate) struct Saved(libc::sigaction);

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("handler", &self.0.sa_sigaction)
            .finish()
    }
}

/// Install the self-pipe handler for `sig`; returns the disposition it replaced.
pub(crate) fn install(sig: i32) -> io::Result<Saved> {
    // SAFETY: an all-zero `sigaction` is a valid value of the C struct.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    new.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa_mask` is a valid `sigset_t` owned by `new`.
    unsafe {
        libc::sigemptyset(&mut new.sa_mask);
    }
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; `on_signal` is
    // async-signal-safe and lives for the program.
    if unsafe { libc::sigaction(sig, &new, &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Saved(old))
}

/// Give `sig` back the disposition `saved`.
pub(crate) fn restore(sig: i32, saved: &Saved) -> io::Result<()> {
    // SAFETY: `saved.0` came from `sigaction` itself; a null old-action pointer is allowed.
    if unsafe { libc::sigaction(sig, &saved.0, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this is the process's main thread (signal handlers may only be
/// added there, SG-07).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn on_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// Whether this is the process's main thread (signal handlers may only be
/// added there, SG-07).
#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "openbsd"
))]
pub(crate) fn on_main_thread() -> bool {
    // SAFETY: `pthread_main_np` takes nothing and only reads the calling
    // thread's identity.
    unsafe { libc::pthread_main_np() == 1 }
}

/// Whether this is the process's main thread: where no system call says,
/// the thread Rust's runtime names `main`.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "openbsd"
)))]
pub(crate) fn on_main_thread() -> bool {
    std::thread::current().name() == Some("main")
}
