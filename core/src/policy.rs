//! The per-thread current loop and the replaceable event-loop policy
//! (PEP 3156 §Event Loop Policy; PO-01…PO-04).
//!
//! Two thread-local slots, as in asyncio:
//! - the **running** loop, set while a loop runs on this thread (and for
//!   the whole life of an attached loop), read by [`get_running_loop`];
//! - the **current** loop, set with [`set_event_loop`], read by
//!   [`get_event_loop`].
//!
//! Nothing here is needed to make or run a loop: `Loop::new()` and
//! `Loop::with_backend` never consult the policy, so tests can build a fresh
//! loop each without touching process-global state (PO-04).

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::{Arc, RwLock};

use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::{Loop, LoopInner};

thread_local! {
    /// The loop running on this thread.
    static RUNNING: RefCell<Option<Weak<LoopInner>>> = const { RefCell::new(None) };
    /// The loop set with `set_event_loop`.
    static CURRENT: RefCell<Option<Loop>> = const { RefCell::new(None) };
    /// Every open loop made on this thread, by id: lets a `RemoteLoop` used
    /// on its own loop's thread push straight into the ready queue (TH-03).
    static LOCAL: RefCell<Vec<(u64, Weak<LoopInner>)>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn running_loop_inner() -> Option<Rc<LoopInner>> {
    RUNNING.with(|r| r.borrow().as_ref().and_then(Weak::upgrade))
}

pub(crate) fn set_running(inner: Option<&LoopInner>) {
    RUNNING.with(|r| *r.borrow_mut() = inner.map(|i| i.weak.clone()));
}

pub(crate) fn running_is(inner: &LoopInner) -> bool {
    RUNNING.with(|r| {
        r.borrow()
            .as_ref()
            .is_some_and(|w| Weak::ptr_eq(w, &inner.weak))
    })
}

/// Marks `inner` as the running loop for a dispatch, restoring the previous
/// value afterwards (a dispatch driven by a host while no run is active).
pub(crate) struct RunningScope {
    previous: Option<Option<Weak<LoopInner>>>,
}

impl RunningScope {
    pub(crate) fn enter(inner: &Rc<LoopInner>) -> RunningScope {
        if running_is(inner) {
            return RunningScope { previous: None };
        }
        let previous = RUNNING.with(|r| r.borrow_mut().replace(Rc::downgrade(inner)));
        RunningScope {
            previous: Some(previous),
        }
    }
}

impl Drop for RunningScope {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            RUNNING.with(|r| *r.borrow_mut() = previous);
        }
    }
}

pub(crate) fn register_local(inner: &Rc<LoopInner>) {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        l.retain(|(_, w)| w.strong_count() > 0);
        l.push((inner.shared.id, Rc::downgrade(inner)));
    });
}

pub(crate) fn unregister_local(id: u64) {
    // `try_with`: a loop may be closed from a thread-local destructor.
    let _ = LOCAL.try_with(|l| l.borrow_mut().retain(|(i, _)| *i != id));
}

pub(crate) fn local_loop(id: u64) -> Option<Rc<LoopInner>> {
    LOCAL
        .try_with(|l| {
            l.borrow()
                .iter()
                .find(|(i, _)| *i == id)
                .and_then(|(_, w)| w.upgrade())
        })
        .ok()
        .flatten()
}

/// The loop running on this thread (PO-01).
///
/// # Errors
/// [`ErrorKind::NotRunning`] outside a run (and after it returns).
///
/// ```
/// let lp = oneloop::Loop::new()?;
/// assert!(oneloop::get_running_loop().is_err());
/// let inside = lp.run_until_complete(async { oneloop::get_running_loop() })??;
/// assert_eq!(inside, lp);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn get_running_loop() -> Result<Loop> {
    running_loop_inner().map(Loop::from_inner).ok_or_else(|| {
        Error::new(
            ErrorKind::NotRunning,
            "no event loop is running on this thread",
        )
    })
}

/// The running loop if there is one, else the loop set with
/// [`set_event_loop`] on this thread (PO-02: never an empty value).
///
/// # Errors
/// [`ErrorKind::NotRunning`] when neither exists; call [`set_event_loop`]
/// or create one with [`new_event_loop`].
pub fn get_event_loop() -> Result<Loop> {
    if let Some(inner) = running_loop_inner() {
        return Ok(Loop::from_inner(inner));
    }
    CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        Error::new(
            ErrorKind::NotRunning,
            "no current event loop on this thread; call set_event_loop(Some(loop)) first",
        )
    })
}

/// Set (or clear, with `None`) this thread's current loop.
pub fn set_event_loop(lp: Option<Loop>) {
    CURRENT.with(|c| *c.borrow_mut() = lp);
}

/// A new loop from the current policy (by default the native loop).
///
/// # Errors
/// Whatever the policy fails with.
pub fn new_event_loop() -> Result<Loop> {
    let policy = POLICY.read().unwrap_or_else(|e| e.into_inner()).clone();
    match policy {
        Some(p) => p.new_event_loop(),
        None => Loop::new(),
    }
}

/// Makes the loops [`new_event_loop`] returns (PEP 3156's event-loop
/// policy, reduced to the one decision it still carries).
pub trait EventLoopPolicy: Send + Sync + 'static {
    /// A new loop for the calling thread.
    ///
    /// # Errors
    /// Whatever building the loop fails with.
    fn new_event_loop(&self) -> Result<Loop>;
}

static POLICY: RwLock<Option<Arc<dyn EventLoopPolicy>>> = RwLock::new(None);

/// Replace the policy (`None` restores the default, the native loop).
pub fn set_event_loop_policy(policy: Option<Arc<dyn EventLoopPolicy>>) {
    *POLICY.write().unwrap_or_else(|e| e.into_inner()) = policy;
}
