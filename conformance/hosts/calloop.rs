//! The calloop adapter's specs and host driver, for the conformance suite:
//! owned, and attached to a compositor-shaped `EventLoop<'static, Host>`
//! owned by [`CalloopHost`], which the suite iterates through
//! [`HostDriver`].
//!
//! A fixture module of the conformance suite, compiled into the adapter's
//! `tests/conformance.rs` (`#[path]`), with the adapter's own dependencies.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::time::{Duration, Instant};

use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, LoopHandle, LoopSignal};
use oneloop_conformance::{AdapterSpec, Caps, Harness, HostDriver, Setup};

/// The host's data: what a compositor would keep in its state, here only
/// what the driver needs to report whether an iteration dispatched.
#[derive(Debug, Default)]
struct Host {
    /// Host-native callbacks run (posted and timers).
    native_calls: u64,
}

/// A host loop the suite can drive: the compositor's `EventLoop` and data.
struct CalloopHost {
    event_loop: RefCell<EventLoop<'static, Host>>,
    handle: LoopHandle<'static, Host>,
    signal: LoopSignal,
    data: RefCell<Host>,
    quit: Cell<bool>,
    lp: oneloop::Loop,
}

impl fmt::Debug for CalloopHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalloopHost")
            .field("quit", &self.quit.get())
            .finish()
    }
}

impl CalloopHost {
    /// One `EventLoop::dispatch`; `None` when the host is already
    /// dispatching further up the stack (calloop cannot nest).
    fn dispatch(&self, timeout: Option<Duration>) -> Option<bool> {
        let mut event_loop = self.event_loop.try_borrow_mut().ok()?;
        let mut data = self.data.try_borrow_mut().ok()?;
        let native_before = data.native_calls;
        let queued_before = self.lp.stats();
        event_loop
            .dispatch(timeout, &mut data)
            .expect("calloop dispatch failed");
        // Host callbacks ran, or oneloop's queues moved (its dispatch runs
        // inside this host iteration).
        Some(data.native_calls != native_before || self.lp.stats() != queued_before)
    }
}

impl HostDriver for CalloopHost {
    fn iterate(&self, may_block: bool) -> bool {
        let timeout = if may_block {
            None
        } else {
            Some(Duration::ZERO)
        };
        self.dispatch(timeout).unwrap_or(false)
    }

    fn post(&self, f: Box<dyn FnOnce()>) {
        // An idle runs after the next poll, and does not shorten it: wake
        // the poll so that it runs now (HOSTS.md §2.5).
        self.handle.insert_idle(move |host: &mut Host| {
            host.native_calls += 1;
            f();
        });
        self.signal.wakeup();
    }

    fn add_timeout(&self, after: Duration, f: Box<dyn FnOnce()>) {
        let mut f = Some(f);
        self.handle
            .insert_source(Timer::from_duration(after), move |_, _, host: &mut Host| {
                host.native_calls += 1;
                if let Some(f) = f.take() {
                    f();
                }
                TimeoutAction::Drop
            })
            .expect("insert a calloop timer");
    }

    /// calloop has no nested loops: `dispatch` takes `&mut EventLoop`, which
    /// the host holds while any callback (oneloop's included) runs. Called
    /// from inside a callback, this can only wait, blocking the thread as a
    /// modal call that does not pump events would, until `until()` or
    /// `limit`; called from outside, it dispatches until then.
    fn iterate_nested(&self, until: &dyn Fn() -> bool, limit: Duration) {
        let start = Instant::now();
        while !until() && start.elapsed() < limit {
            let left = limit.saturating_sub(start.elapsed());
            if self
                .dispatch(Some(left.min(Duration::from_millis(10))))
                .is_none()
            {
                // Inside a callback: only wait, for `until()` or the limit.
                oneloop_conformance::support::wait_until(start + limit, until);
            }
        }
    }

    fn quit(&self) {
        // What `EventLoop::run` obeys; the suite drives `dispatch` itself,
        // so the host simply stops being iterated by its owner.
        self.quit.set(true);
        self.signal.stop();
        self.signal.wakeup();
    }
}

fn owned() -> oneloop::Result<Setup> {
    Ok(Setup::new(oneloop_calloop::new_loop()?))
}

fn attached() -> oneloop::Result<Setup> {
    let event_loop: EventLoop<'static, Host> =
        EventLoop::try_new().map_err(std::io::Error::from)?;
    let handle = event_loop.handle();
    let lp = oneloop_calloop::attach(handle.clone())?;
    let host = CalloopHost {
        signal: event_loop.get_signal(),
        event_loop: RefCell::new(event_loop),
        handle,
        data: RefCell::new(Host::default()),
        quit: Cell::new(false),
        lp: lp.clone(),
    };
    Ok(Setup::with_host(lp, host))
}

const CAPS: Caps = Caps::ALL_BUT_HOST;

/// The suite on both modes of the calloop adapter.
pub(crate) fn harness() -> Harness {
    // What the backend declares (a timerfd on Linux: no rounding of its own).
    let resolution = oneloop_calloop::new_loop()
        .expect("a calloop loop")
        .clock_resolution();
    Harness::new(AdapterSpec {
        name: "calloop (owned)",
        setup: owned,
        caps: CAPS,
        clock_resolution: resolution,
        divergences: &[],
        main_thread: false,
    })
    .with(AdapterSpec {
        name: "calloop (attached)",
        setup: attached,
        caps: CAPS.union(Caps::HOST),
        clock_resolution: resolution,
        divergences: &[],
        main_thread: false,
    })
}
