//! The [`Selector`](super::Selector) on Linux: epoll driven directly, the
//! one place in this module with `unsafe` code on Linux.
//!
//! Why not `polling` here: its `wait` re-arms a timerfd and re-registers its
//! notifier around every call, four extra syscalls per iteration that
//! doubled the cost of an fd callback (docs/benchmarks.md, `fd_callbacks`).
//! Here an iteration is one wait: the raw `epoll_pwait` (glibc's
//! `epoll_wait` is a thread-cancellation point, ≈ 50 instructions a call
//! for nothing here) for no timeout, a zero one or whole milliseconds, and
//! `epoll_pwait2` (nanosecond timeouts, so no timerfd) only for a deadline
//! that is not whole milliseconds; the wake eventfd stays registered,
//! level-triggered: it is read only in the iterations it fired.
//!
//! `epoll_pwait2` is Linux 5.11 and later, and a seccomp filter written
//! before it (an old container runtime's default profile) answers `EPERM`.
//! Either answer switches this registry, for good, to `epoll_pwait` with
//! the timeout rounded **up** to whole milliseconds: timers then wake up to
//! 1 ms late, never early. rustix only chooses between the two at compile time
//! (its `linux_5_11` feature), so the wait itself is a raw syscall here.
//!
//! I/O safety: see [`Selector`](super::Selector).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{EventfdFlags, eventfd};

use super::Selected;
use crate::backend::{Interest, Readiness, RemoteWake};

/// The key of the wake eventfd; fds are non-negative, so it cannot clash.
const WAKE: u64 = u64::MAX;

/// An epoll instance, its wake eventfd, and the interest of each fd.
pub(super) struct Registry {
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
    /// # Invariant
    /// Holds exactly the fds added to `epoll` and not yet deleted.
    watched: RefCell<HashMap<RawFd, Interest>>,
    /// Reused event buffer.
    events: RefCell<Vec<libc::epoll_event>>,
    /// Whether `epoll_pwait2` may be tried (see the module docs).
    pwait2: Cell<bool>,
}

/// Events taken per wait; more stay ready for the next one (level-triggered).
const EVENTS: usize = 256;

/// The kernel's `struct __kernel_timespec`, what `epoll_pwait2` reads: 64-bit
/// fields on every architecture (libc's `timespec` is 32-bit on some).
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// `d` in whole milliseconds, rounded up, for `epoll_wait`; saturates at
/// `c_int::MAX` (24 days: a wake-up that early only re-arms).
fn millis_rounded_up(d: Duration) -> libc::c_int {
    // In 64 bits: `as_nanos().div_ceil(..)` is a 128-bit division, about 50
    // instructions on every zero-timeout select (an adapter makes two a
    // host event).
    let ms = d
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)));
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}

fn flags(i: Interest) -> EventFlags {
    // Level-triggered (no EPOLLET): asyncio's add_reader semantics.
    let mut f = EventFlags::empty();
    if i.readable {
        f |= EventFlags::IN;
    }
    if i.writable {
        f |= EventFlags::OUT;
    }
    f
}

/// Writes to the wake eventfd: one `write(2)`, async-signal-safe (D6).
struct Wake(Arc<OwnedFd>);

impl RemoteWake for Wake {
    fn wake(&self) {
        // EAGAIN means the counter is saturated: a wake is pending anyway.
        let _ = rustix::io::write(&*self.0, &1u64.to_ne_bytes());
    }
}

/// The error of a `select` made from inside another's `ready` callback.
#[cold]
fn nested_select() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "Selector::select called from inside a select's callback",
    )
}

impl Registry {
    pub(super) fn new() -> io::Result<Registry> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &wake, EventData::new_u64(WAKE), EventFlags::IN)?;
        Ok(Registry {
            epoll,
            wake: Arc::new(wake),
            watched: RefCell::new(HashMap::new()),
            events: RefCell::new(Vec::with_capacity(EVENTS)),
            pwait2: Cell::new(cfg!(target_os = "linux")),
        })
    }

    pub(super) fn waker(&self) -> Arc<dyn RemoteWake> {
        Arc::new(Wake(self.wake.clone()))
    }

    /// The epoll fd.
    pub(super) fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }

    /// How many fds are registered.
    pub(super) fn len(&self) -> usize {
        self.watched.borrow().len()
    }

    /// Wait up to `timeout` (`None`: until an event) and report each ready
    /// fd; wake-ups are consumed here.
    pub(super) fn wait(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut(RawFd, Readiness),
    ) -> io::Result<Selected> {
        // The buffer is lent out while `ready` runs, and `ready` is user
        // code (`Selector::select` is public): a nested select is refused.
        let Ok(mut events) = self.events.try_borrow_mut() else {
            return Err(nested_select());
        };
        match self.wait_into(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Selected::default()),
            Err(e) => return Err(e),
        }
        let mut seen = Selected::default();
        for ev in events.iter() {
            // Copies: the struct is packed on x86_64.
            let (key, bits) = (ev.u64, ev.events);
            if key == WAKE {
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(&*self.wake, &mut buf);
                seen.woken = true;
                continue;
            }
            seen.fds += 1;
            let f = EventFlags::from_bits_retain(bits);
            ready(
                key as RawFd,
                Readiness {
                    readable: f.intersects(EventFlags::IN | EventFlags::PRI),
                    writable: f.contains(EventFlags::OUT),
                    hangup: f.intersects(EventFlags::HUP | EventFlags::ERR),
                },
            );
        }
        Ok(seen)
    }

    /// One wait: `events` is overwritten with what the kernel reported.
    fn wait_into(
        &self,
        events: &mut Vec<libc::epoll_event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        events.clear();
        let epfd = self.epoll.as_raw_fd();
        let buf = events.as_mut_ptr();
        let cap = libc::c_int::try_from(events.capacity()).unwrap_or(libc::c_int::MAX);
        // A timeout too large for a timespec (TM-07) waits for events only.
        let ts = timeout.and_then(|d| {
            Some(KernelTimespec {
                tv_sec: i64::try_from(d.as_secs()).ok()?,
                tv_nsec: i64::from(d.subsec_nanos()),
            })
        });
        let n = match &ts {
            // A sub-millisecond deadline needs `epoll_pwait2`; zero and
            // whole-millisecond timeouts are the same with `epoll_wait`.
            Some(t) if self.pwait2.get() && t.tv_nsec % 1_000_000 != 0 => {
                // SAFETY: `buf` points to `cap` writable `epoll_event`s
                // (the vector's capacity), which the kernel fills with at
                // most `cap` entries; `t` is a valid `__kernel_timespec`
                // that outlives the call; a null sigmask (size 0) leaves
                // the signal mask alone; `epfd` is our epoll fd, open.
                // The variadic `syscall` reads every argument as a `long`.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        libc::c_long::from(epfd),
                        buf,
                        libc::c_long::from(cap),
                        std::ptr::from_ref(t),
                        std::ptr::null::<libc::sigset_t>(),
                        0usize,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                        self.pwait2.set(false);
                        return self.wait_into(events, timeout);
                    }
                    return Err(e);
                }
                r
            }
            _ => {
                let ms = timeout.map_or(-1, millis_rounded_up);
                // The raw syscall, not libc's `epoll_wait`: glibc's wrapper
                // is a thread-cancellation point and switches cancellation
                // on and off around the call, about 50 instructions of
                // every turn for a feature Rust code never uses.
                // SAFETY: as above for `buf`, `cap`, `epfd` and the null
                // sigmask; `ms` is a plain `int` timeout.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait,
                        libc::c_long::from(epfd),
                        buf,
                        libc::c_long::from(cap),
                        libc::c_long::from(ms),
                        std::ptr::null::<libc::sigset_t>(),
                        0usize,
                    )
                };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                r
            }
        };
        let n = usize::try_from(n).unwrap_or(0).min(events.capacity());
        // SAFETY: the kernel initialised the first `n` entries (`n` is its
        // count, never more than `cap`).
        unsafe { events.set_len(n) };
        Ok(())
    }

    pub(super) fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        if fd < 0 {
            // `Selector::watch` is safe and takes any number, but
            // `BorrowedFd::borrow_raw` panics on -1: answer what the OS
            // answers for a number that is no fd. Never watched, so there
            // is nothing to stop watching.
            return if interest.is_none() {
                Ok(())
            } else {
                Err(rustix::io::Errno::BADF.into())
            };
        }
        let mut watched = self.watched.borrow_mut();
        // SAFETY: `fd` is not -1 (checked above), and it is open: the loop only
        // passes fds its user lent it through `AsFd` and documents that they
        // stay open while registered; for a change or a removal the fd is still
        // registered here, so by that same contract still open. An fd closed
        // against the contract makes the syscall fail with EBADF; no memory is
        // involved.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let data = EventData::new_u64(fd as u64);
        match (watched.get(&fd).copied(), interest.is_none()) {
            (None, true) => Ok(()),
            (None, false) => {
                epoll::add(&self.epoll, borrowed, data, flags(interest))?;
                watched.insert(fd, interest);
                Ok(())
            }
            (Some(_), true) => {
                watched.remove(&fd);
                epoll::delete(&self.epoll, borrowed).map_err(Into::into)
            }
            (Some(old), false) if old == interest => Ok(()),
            (Some(_), false) => {
                epoll::modify(&self.epoll, borrowed, data, flags(interest))?;
                watched.insert(fd, interest);
                Ok(())
            }
        }
    }

    /// Delete every registration (loop close).
    pub(super) fn clear(&self) {
        let fds: Vec<RawFd> = self
            .watched
            .borrow_mut()
            .drain()
            .map(|(fd, _)| fd)
            .collect();
        for fd in fds {
            // SAFETY: as in `watch`: registered, hence open by contract.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = epoll::delete(&self.epoll, borrowed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_millisecond_fallback_rounds_up_never_down() {
        assert_eq!(millis_rounded_up(Duration::ZERO), 0);
        assert_eq!(millis_rounded_up(Duration::from_nanos(1)), 1);
        assert_eq!(millis_rounded_up(Duration::from_millis(1)), 1);
        assert_eq!(millis_rounded_up(Duration::from_micros(1001)), 2);
        assert_eq!(millis_rounded_up(Duration::MAX), libc::c_int::MAX);
    }

    /// Without `epoll_pwait2` (old kernel, seccomp), a sub-millisecond
    /// timeout waits a whole millisecond: late, never early.
    #[test]
    fn the_fallback_wait_rounds_a_sub_millisecond_timeout_up() {
        let r = Registry::new().unwrap();
        r.pwait2.set(false);
        let start = std::time::Instant::now();
        r.wait(Some(Duration::from_micros(300)), |_, _| unreachable!())
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(1));
        r.waker().wake();
        let seen = r.wait(Some(Duration::from_micros(300)), |_, _| ()).unwrap();
        assert!(seen.woken);
    }

    /// Both waits report the same events: a sub-millisecond timeout (the
    /// `epoll_pwait2` path, or its fallback) and a whole one.
    #[test]
    fn sub_millisecond_and_whole_millisecond_waits_time_out_and_report_wakes() {
        let r = Registry::new().unwrap();
        for timeout in [Duration::from_micros(300), Duration::from_millis(1)] {
            let start = std::time::Instant::now();
            let mut seen = 0;
            r.wait(Some(timeout), |_, _| seen += 1).unwrap();
            assert_eq!(seen, 0);
            assert!(start.elapsed() >= timeout, "woke before the timeout");
            r.waker().wake();
            r.wait(Some(timeout), |_, _| seen += 1).unwrap();
            assert_eq!(seen, 0, "the wake eventfd is consumed, not reported");
        }
    }
}
