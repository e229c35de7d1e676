//! What an adapter declares: [`AdapterSpec`], its [`Caps`], its [`Divergence`]s
//! and the [`HostDriver`] hooks of an embedded loop.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::time::Duration;

use oneloop::Loop;

/// What an adapter declares to the suite: one spec per mode (for example
/// `"tokio (owned)"` and `"tokio (attached)"`).
///
/// ```
/// use std::time::Duration;
/// use oneloop_conformance::{AdapterSpec, Caps, Setup};
///
/// fn setup() -> oneloop::Result<Setup> {
///     Ok(Setup::new(oneloop::Loop::new()?))
/// }
///
/// let spec = AdapterSpec {
///     name: "my-loop",
///     setup,
///     caps: Caps::FD | Caps::THREADS | Caps::EXECUTOR,
///     clock_resolution: Duration::from_millis(1),
///     divergences: &[],
///     main_thread: false,
/// };
/// assert!(spec.caps.contains(Caps::FD));
/// ```
#[derive(Clone)]
pub struct AdapterSpec {
    /// The column title of the report, and the first part of every trial name.
    pub name: &'static str,
    /// Builds a fresh loop (and its host, if any) on the calling thread;
    /// called once per check, on the thread that runs the check.
    pub setup: fn() -> oneloop::Result<Setup>,
    /// What the adapter can do beyond the core (which every adapter has).
    pub caps: Caps,
    /// How late the host may fire a timer by its own rounding (TM-03);
    /// timers are never early.
    pub clock_resolution: Duration,
    /// Reviewed divergences from SHOULD items (a MUST can never be listed).
    pub divergences: &'static [Divergence],
    /// The checks must run on the process's main thread (one at a time).
    pub main_thread: bool,
}

impl fmt::Debug for AdapterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterSpec")
            .field("name", &self.name)
            .field("caps", &self.caps)
            .field("clock_resolution", &self.clock_resolution)
            .field("divergences", &self.divergences)
            .field("main_thread", &self.main_thread)
            .finish()
    }
}

impl AdapterSpec {
    /// The divergence listed for `id`, if any.
    pub fn divergence(&self, id: &str) -> Option<&'static Divergence> {
        self.divergences.iter().find(|d| d.id == id)
    }
}

/// A fresh loop, and the host that drives it when it is embedded.
pub struct Setup {
    /// The loop under test.
    pub lp: Loop,
    /// The host hooks: required when `lp` is attached, and for the `EM` checks.
    pub host: Option<Box<dyn HostDriver>>,
}

impl Setup {
    /// A setup without host hooks (an owned loop).
    pub fn new(lp: Loop) -> Setup {
        Setup { lp, host: None }
    }

    /// A setup whose host the suite can drive and poke.
    pub fn with_host(lp: Loop, host: impl HostDriver + 'static) -> Setup {
        Setup {
            lp,
            host: Some(Box::new(host)),
        }
    }
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setup")
            .field("lp", &self.lp)
            .field("host", &self.host.is_some())
            .finish()
    }
}

/// A reviewed divergence from a SHOULD guarantee, with the reason.
///
/// The check still runs, as an *expected failure*: if it starts passing, the
/// trial fails with "divergence no longer needed", so the list stays current.
/// Listing a MUST fails that trial: a MUST can never be waived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divergence {
    /// The guarantee's ID, e.g. `"TH-03"`.
    pub id: &'static str,
    /// Why the adapter cannot or does not keep it (a link helps reviewers).
    pub reason: &'static str,
}

/// The capabilities an adapter declares, beyond the core that every adapter
/// has (lifecycle, callbacks, timers, futures, tasks, errors, policy).
///
/// ```
/// use oneloop_conformance::Caps;
///
/// let caps = Caps::FD | Caps::THREADS;
/// assert!(caps.contains(Caps::FD));
/// assert!(!caps.contains(Caps::FD | Caps::HOST));
/// assert_eq!(caps.to_string(), "fd, threads");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Caps(u32);

impl Caps {
    /// No capability beyond the core.
    pub const NONE: Caps = Caps(0);
    /// fd readiness: `add_reader`/`add_writer` (the `FD` group).
    pub const FD: Caps = Caps(1 << 0);
    /// Another thread can wake the loop: `call_soon_threadsafe` (the `TH` group).
    pub const THREADS: Caps = Caps(1 << 1);
    /// `run_in_executor` (the `EX` group).
    pub const EXECUTOR: Caps = Caps(1 << 2);
    /// `add_signal_handler` (the `SG` group).
    pub const SIGNALS: Caps = Caps(1 << 3);
    /// Embedded in a host loop the suite can drive through [`HostDriver`]
    /// (the `EM` group).
    pub const HOST: Caps = Caps(1 << 4);
    /// TCP transports (the `TP` and `FC` groups).
    pub const TCP: Caps = Caps(1 << 5);
    /// UDP endpoints (the `UD` group).
    pub const UDP: Caps = Caps(1 << 6);
    /// Unix sockets (the `UX` group).
    pub const UNIX: Caps = Caps(1 << 7);
    /// Pipe transports (the `PI` group).
    pub const PIPES: Caps = Caps(1 << 8);
    /// Subprocesses (the `SP` group).
    pub const SUBPROCESS: Caps = Caps(1 << 9);
    /// Guest mode (EM-09): the loop waits for I/O on a helper thread and
    /// dispatches on the host thread through the host's run-soon hook; its
    /// [`HostDriver`] gives a [`GuestDriver`].
    pub const GUEST: Caps = Caps(1 << 10);

    /// Every capability but [`HOST`](Caps::HOST): what an adapter that has
    /// fd watching, threads, the executor, signals and every transport
    /// declares (the default loop, and each adapter of this workspace before
    /// it adds `HOST` for an embedded mode).
    pub const ALL_BUT_HOST: Caps = Caps::FD
        .union(Caps::THREADS)
        .union(Caps::EXECUTOR)
        .union(Caps::SIGNALS)
        .union(Caps::TCP)
        .union(Caps::UDP)
        .union(Caps::UNIX)
        .union(Caps::PIPES)
        .union(Caps::SUBPROCESS);

    /// Each capability with its name, as reports print them.
    pub(crate) const NAMES: [(Caps, &'static str); 11] = [
        (Caps::FD, "fd"),
        (Caps::THREADS, "threads"),
        (Caps::EXECUTOR, "executor"),
        (Caps::SIGNALS, "signals"),
        (Caps::HOST, "host"),
        (Caps::TCP, "tcp"),
        (Caps::UDP, "udp"),
        (Caps::UNIX, "unix"),
        (Caps::PIPES, "pipes"),
        (Caps::SUBPROCESS, "subprocess"),
        (Caps::GUEST, "guest"),
    ];

    /// Both sets (usable in `const` items, unlike `|`).
    pub const fn union(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }

    /// Whether every capability of `other` is in `self`.
    pub const fn contains(self, other: Caps) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities of `self` that `other` lacks.
    pub const fn missing_from(self, other: Caps) -> Caps {
        Caps(self.0 & !other.0)
    }

    /// The lower-case names of the capabilities in the set.
    pub fn names(self) -> Vec<&'static str> {
        Caps::NAMES
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl BitOr for Caps {
    type Output = Caps;
    fn bitor(self, rhs: Caps) -> Caps {
        self.union(rhs)
    }
}

impl BitOrAssign for Caps {
    fn bitor_assign(&mut self, rhs: Caps) {
        *self = self.union(rhs);
    }
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("core");
        }
        f.write_str(&self.names().join(", "))
    }
}

impl fmt::Debug for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Caps({self})")
    }
}

/// The host hooks of an embedded loop, all called on the loop's thread.
///
/// Required for attached setups (the suite drives an attached loop by
/// iterating its host) and for the `EM` (embedding) checks.
pub trait HostDriver {
    /// One iteration of the host loop; blocks for events when `may_block`.
    /// Returns whether anything was dispatched.
    fn iterate(&self, may_block: bool) -> bool;
    /// Schedule a host-native callback to run soon (`g_idle_add`-like),
    /// outside any oneloop callback.
    fn post(&self, f: Box<dyn FnOnce()>);
    /// Schedule a host-native timer.
    fn add_timeout(&self, after: Duration, f: Box<dyn FnOnce()>);
    /// Run a nested host loop (a modal dialog) until `until()` is true or
    /// `limit` elapsed.
    fn iterate_nested(&self, until: &dyn Fn() -> bool, limit: Duration);
    /// Ask the host to quit (as a GUI app does when its last window closes).
    fn quit(&self);
    /// A guest-mode adapter's way to start guest runs on this host
    /// ([`Caps::GUEST`], EM-09); `None` (the default) for other hosts.
    fn guest(&self) -> Option<&dyn GuestDriver> {
        None
    }
}

/// The main future of a guest run the suite starts: given the run's loop.
pub type GuestMain =
    Box<dyn FnOnce(Loop) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>;

/// How a guest-mode adapter starts a guest run on the host of a
/// [`HostDriver`] (EM-09), for the suite.
pub trait GuestDriver {
    /// Start a guest run on this thread's host: `main`'s future is the
    /// run's main task; `done` is called, on the host thread, once the run
    /// has finished and been cleaned up. Returns the run's loop.
    ///
    /// # Errors
    /// What the adapter's guest-mode start fails with: it must refuse
    /// (`AlreadyRunning`) while another loop runs on this thread.
    fn start_run(&self, main: GuestMain, done: Box<dyn FnOnce(GuestEnd)>) -> oneloop::Result<Loop>;
}

/// What a guest run's done callback saw, as the adapter reports it.
#[derive(Debug)]
pub struct GuestEnd {
    /// The main future's outcome (or why the run ended without it).
    pub outcome: oneloop::Result<()>,
    /// At the time of the callback, the run's loop was closed and every
    /// helper thread of the run had been joined.
    pub cleaned_up: bool,
}
