//! The smol adapter's specs and host driver (async-io + async-executor),
//! for the conformance suite: owned and attached, both on a `LocalExecutor` driven
//! with `async_io::block_on`, as a smol program drives its own.
//!
//! A fixture module of the conformance suite, compiled into the adapter's
//! `tests/conformance.rs` (`#[path]`), with the adapter's own dependencies.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::FutureExt;
use oneloop::Loop;
use oneloop_conformance::{AdapterSpec, Caps, Harness, HostDriver, Setup};
use oneloop_smol::SmolBackend;

/// The host of both modes: a `LocalExecutor` driven with `async_io::block_on`,
/// as a smol program drives its own.
struct ExecutorHost {
    ex: Rc<LocalExecutor<'static>>,
    /// The loop on this host: a nested run unwinds when it is stopped.
    lp: Loop,
    quit: Cell<bool>,
}

impl ExecutorHost {
    fn new(ex: Rc<LocalExecutor<'static>>, lp: &Loop) -> ExecutorHost {
        ExecutorHost {
            ex,
            lp: lp.clone(),
            quit: Cell::new(false),
        }
    }
}

impl HostDriver for ExecutorHost {
    fn iterate(&self, may_block: bool) -> bool {
        if self.quit.get() {
            return false;
        }
        if may_block {
            // Blocks in the reactor until a task is runnable, then runs it.
            async_io::block_on(self.ex.tick());
            true
        } else {
            // One zero-timeout reactor poll (block_on does one when its
            // future yields), then at most one task.
            async_io::block_on(futures_lite::future::yield_now());
            self.ex.try_tick()
        }
    }

    fn post(&self, f: Box<dyn FnOnce()>) {
        self.ex.spawn(async move { f() }).detach();
    }

    fn add_timeout(&self, after: Duration, f: Box<dyn FnOnce()>) {
        self.ex
            .spawn(async move {
                Timer::after(after).await;
                f()
            })
            .detach();
    }

    fn iterate_nested(&self, until: &dyn Fn() -> bool, limit: Duration) {
        // A modal loop: a nested `block_on` of the same executor, one task
        // at a time, re-checking `until` after each. Sound: async-executor's
        // state is shared through atomics and locks that are never held
        // while a task runs, and async-task never polls a running task (the
        // oneloop driver that called us) again before its poll returns.
        // A modal helper that knows oneloop also unwinds when the loop is
        // stopped from inside it (EM-04).
        let deadline = Instant::now() + limit;
        while !until() && !self.lp.is_stopping() && Instant::now() < deadline {
            async_io::block_on(self.ex.tick().or(async {
                Timer::at(deadline).await;
            }));
        }
    }

    fn quit(&self) {
        // An executor has no quit of its own: the host stops iterating, as a
        // smol program stops when it leaves `block_on`. In owned mode the
        // host is the loop's own run, so quitting it ends the run (EM-05).
        self.quit.set(true);
        if !self.lp.is_attached() {
            self.lp.stop();
        }
    }
}

fn owned() -> oneloop::Result<Setup> {
    let ex = Rc::new(LocalExecutor::new());
    let lp = Loop::with_backend(SmolBackend::with_executor(ex.clone())?)?;
    let host = ExecutorHost::new(ex, &lp);
    Ok(Setup::with_host(lp, host))
}

fn attached() -> oneloop::Result<Setup> {
    let ex = Rc::new(LocalExecutor::new());
    let lp = Loop::with_backend(SmolBackend::attach(&ex)?)?;
    let host = ExecutorHost::new(ex, &lp);
    Ok(Setup::with_host(lp, host))
}

const CAPS: Caps = Caps::ALL_BUT_HOST.union(Caps::HOST);

const OWNED: AdapterSpec = AdapterSpec {
    name: "smol (owned)",
    setup: owned,
    caps: CAPS,
    // async-io's timers are not rounded: the reactor sleeps until the
    // deadline with sub-millisecond precision and fires only when it passed.
    clock_resolution: Duration::from_millis(1),
    divergences: &[],
    main_thread: false,
};

const ATTACHED: AdapterSpec = AdapterSpec {
    name: "smol (attached)",
    setup: attached,
    // EM-04 and EM-05 are about runs, which an attached loop does not have.
    divergences: &[],
    ..OWNED
};

/// The suite on both modes of the smol adapter.
pub(crate) fn harness() -> Harness {
    Harness::new(OWNED).with(ATTACHED)
}
