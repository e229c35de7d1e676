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

use std::sync::{Arc, RwLock};

use crate::context;
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;

/// The loop running on this thread (PO-01).
///
/// # Errors
/// [`ErrorKind::NotRunning`] outside a run (and after it returns).
///
/// # Examples
///
/// ```
/// let lp = oneloop::Loop::new()?;
/// assert!(oneloop::get_running_loop().is_err());
/// let inside = lp.run_until_complete(async { oneloop::get_running_loop() })??;
/// assert_eq!(inside, lp);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn get_running_loop() -> Result<Loop> {
    context::running_loop_inner()
        .map(Loop::from_inner)
        .ok_or_else(|| {
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
///
/// # Examples
///
/// ```
/// use oneloop::ErrorKind;
///
/// assert_eq!(oneloop::get_event_loop().unwrap_err().kind(), ErrorKind::NotRunning);
/// let lp = oneloop::new_event_loop()?;
/// oneloop::set_event_loop(Some(lp.clone()));
/// assert_eq!(oneloop::get_event_loop()?, lp); // library code finds it without a parameter
/// oneloop::set_event_loop(None);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn get_event_loop() -> Result<Loop> {
    if let Some(inner) = context::running_loop_inner() {
        return Ok(Loop::from_inner(inner));
    }
    context::current_loop().ok_or_else(|| {
        Error::new(
            ErrorKind::NotRunning,
            "no current event loop on this thread; call set_event_loop(Some(loop)) first",
        )
    })
}

/// Set (or clear, with `None`) this thread's current loop.
///
/// The loop set here is a strong handle: if it is the last one when the
/// thread exits, the thread-local's destructor closes the loop.
pub fn set_event_loop(lp: Option<Loop>) {
    context::set_current_loop(lp);
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
///
/// # Examples
///
/// An application that wants every loop its libraries create in debug
/// mode:
///
/// ```
/// use std::sync::Arc;
/// use oneloop::{EventLoopPolicy, Loop};
///
/// struct DebugLoops;
/// impl EventLoopPolicy for DebugLoops {
///     fn new_event_loop(&self) -> oneloop::Result<Loop> {
///         Loop::builder().debug(true).build() // or an adapter's loop
///     }
/// }
///
/// oneloop::set_event_loop_policy(Some(Arc::new(DebugLoops)));
/// assert!(oneloop::new_event_loop()?.debug());
/// oneloop::set_event_loop_policy(None); // back to the default
/// assert!(!oneloop::new_event_loop()?.debug());
/// # Ok::<(), oneloop::Error>(())
/// ```
pub trait EventLoopPolicy: Send + Sync + 'static {
    /// A new loop for the calling thread.
    ///
    /// # Errors
    /// Whatever building the loop fails with.
    fn new_event_loop(&self) -> Result<Loop>;
}

static POLICY: RwLock<Option<Arc<dyn EventLoopPolicy>>> = RwLock::new(None);

/// Replace the policy (`None` restores the default, the native loop).
///
/// The policy is process-wide; see [`EventLoopPolicy`] for an example.
pub fn set_event_loop_policy(policy: Option<Arc<dyn EventLoopPolicy>>) {
    *POLICY.write().unwrap_or_else(|e| e.into_inner()) = policy;
}
