//! The exception handler (PEP 3156 §Exceptions) and the panic policy (D3).
//!
//! A panic in a callback, task step or fd callback is caught at the callback
//! boundary. With [`PanicPolicy::Report`] (the default) it goes to the
//! exception handler with an [`ExceptionContext`] and the loop keeps running
//! (ER-01). With [`PanicPolicy::Propagate`] the run stops after the
//! panicking callback and the panic resumes out of `run_forever` /
//! `run_until_complete`, the analogue of asyncio's `BaseException`; the loop
//! stays open and can run again (ER-04). An error *value* of a future or task
//! is never a panic.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::rc::Rc;

use crate::error::{Error, ErrorKind};
use crate::event_loop::Loop;
use crate::scheduler::Failed;

/// What happens to a panic caught at the callback boundary (D3).
///
/// # Examples
///
/// With `Propagate` a panic stops the run and unwinds out of it, like an
/// uncaught panic in plain Rust; the loop stays open and can run again:
///
/// ```
/// use std::panic::{AssertUnwindSafe, catch_unwind};
/// use oneloop::{Loop, PanicPolicy};
///
/// let lp = Loop::builder().panic_policy(PanicPolicy::Propagate).build()?;
/// lp.call_soon(|| panic!("bug"))?;
/// lp.call_soon(|| println!("left queued for the next run"))?;
/// let unwound = catch_unwind(AssertUnwindSafe(|| lp.run_forever()));
/// assert!(unwound.is_err());
/// assert!(!lp.is_closed() && !lp.is_running());
///
/// lp.set_panic_policy(PanicPolicy::Report); // report to the exception handler instead
/// lp.call_soon(|| panic!("reported, the loop carries on"))?;
/// lp.call_soon({ let lp = lp.clone(); move || lp.stop() })?;
/// lp.run_forever()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Report it to the exception handler and keep running (asyncio's
    /// handling of an ordinary `Exception`).
    #[default]
    Report,
    /// Stop the run after the panicking callback and resume the panic out of
    /// `run_*` (asyncio's handling of `BaseException`). The loop stays open.
    Propagate,
}

/// What the exception handler is told: a message, and as far as known the
/// error, the panic message and where the failing callback was scheduled.
///
/// # Examples
///
/// ```
/// use oneloop::{ExceptionContext, Error, ErrorKind};
///
/// let ctx = ExceptionContext::new("protocol failed")
///     .with_error(Error::from_kind(ErrorKind::InvalidState));
/// assert_eq!(ctx.message(), "protocol failed");
/// assert_eq!(ctx.error().map(|e| e.kind()), Some(ErrorKind::InvalidState));
/// ```
#[derive(Debug, Clone)]
pub struct ExceptionContext {
    message: String,
    error: Option<Error>,
    panic: Option<String>,
    location: Option<&'static Location<'static>>,
}

impl ExceptionContext {
    /// A context with a message.
    pub fn new(message: impl Into<String>) -> ExceptionContext {
        ExceptionContext {
            message: message.into(),
            error: None,
            panic: None,
            location: None,
        }
    }

    /// Attach the error that occurred.
    pub fn with_error(mut self, error: Error) -> Self {
        self.error = Some(error);
        self
    }

    /// Attach the panic message of a caught panic.
    pub fn with_panic(mut self, message: impl Into<String>) -> Self {
        self.panic = Some(message.into());
        self
    }

    /// Attach where the failing callback or task was scheduled.
    pub fn with_location(mut self, location: &'static Location<'static>) -> Self {
        self.location = Some(location);
        self
    }

    /// What happened.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error, if one was attached.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The panic message, if this reports a caught panic.
    pub fn panic_message(&self) -> Option<&str> {
        self.panic.as_deref()
    }

    /// Where the failing callback or task was scheduled.
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.location
    }
}

impl fmt::Display for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(p) = &self.panic {
            write!(f, ": panicked: {p}")?;
        }
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        if let Some(l) = self.location {
            write!(f, " (scheduled at {l})")?;
        }
        Ok(())
    }
}

/// The message of a panic payload, as far as it is a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        return "non-string panic payload".to_owned();
    };
    match runtime_hint(&msg) {
        Some(hint) => format!("{msg} ({hint})"),
        None => msg,
    }
}

/// The fix for a library that panicked because its runtime's context is
/// missing on this thread: the panic texts of tokio 1.x (no reactor, no
/// `LocalSet`), which bridges can supply.
fn runtime_hint(msg: &str) -> Option<&'static str> {
    let tokio = msg.contains("context of a Tokio 1.x runtime")
        || msg.contains("called from outside of a `task::LocalSet`")
        || msg.contains("A Tokio 1.x context was found, but");
    tokio.then_some(
        "this loop has no tokio context: call `oneloop_tokio::enable(&lp)` once to run tokio libraries on it",
    )
}

pub(crate) fn log_context(lp: &Loop, ctx: &ExceptionContext) {
    tracing::error!(target: "oneloop", "unhandled exception in event loop ({}): {ctx}", lp.backend_name());
}

/// The user's handler: `Fn(&Loop, &ExceptionContext)`.
pub(crate) type HandlerFn = Rc<dyn Fn(&Loop, &ExceptionContext)>;

/// The exception-handling state of a loop.
pub(crate) struct ExceptionHandler {
    /// The custom handler; `None` is the default (log).
    handler: RefCell<Option<HandlerFn>>,
    /// See [`PanicPolicy`].
    policy: Cell<PanicPolicy>,
    /// A panic to resume when the run returns (`Propagate`).
    pending: RefCell<Option<Box<dyn Any + Send>>>,
}

impl ExceptionHandler {
    pub(crate) fn new(policy: PanicPolicy) -> ExceptionHandler {
        ExceptionHandler {
            handler: RefCell::new(None),
            policy: Cell::new(policy),
            pending: RefCell::new(None),
        }
    }

    pub(crate) fn set(&self, handler: Option<HandlerFn>) {
        *self.handler.borrow_mut() = handler;
    }

    pub(crate) fn is_custom(&self) -> bool {
        self.handler.borrow().is_some()
    }

    pub(crate) fn policy(&self) -> PanicPolicy {
        self.policy.get()
    }

    pub(crate) fn set_policy(&self, policy: PanicPolicy) {
        self.policy.set(policy);
    }

    /// Route `ctx` through the current handler; a handler that panics is
    /// caught and logged (ER-03).
    pub(crate) fn call(&self, lp: &Loop, ctx: &ExceptionContext) {
        let handler = self.handler.borrow().clone();
        let outcome = match handler {
            Some(h) => catch_unwind(AssertUnwindSafe(|| h(lp, ctx))),
            None => {
                log_context(lp, ctx);
                Ok(())
            }
        };
        if let Err(payload) = outcome {
            tracing::error!(
                target: "oneloop",
                "the exception handler panicked ({}) while handling: {ctx}",
                panic_message(&*payload)
            );
        }
    }

    /// A callback panicked. Returns true when the run must stop
    /// (`Propagate`, in an owned run); the payload is then kept to be
    /// resumed when the run returns. Otherwise the panic is reported.
    pub(crate) fn callback_panicked(&self, lp: &Loop, failed: Failed, owned_run: bool) -> bool {
        if self.policy.get() == PanicPolicy::Propagate && owned_run {
            let mut pending = self.pending.borrow_mut();
            if pending.is_none() {
                *pending = Some(failed.payload);
            }
            return true;
        }
        let message = panic_message(&*failed.payload);
        let ctx = ExceptionContext::new(format!("{} panicked", failed.what))
            .with_panic(message.clone())
            .with_error(Error::new(ErrorKind::Panicked, message))
            .with_location(failed.location);
        self.call(lp, &ctx);
        false
    }

    /// Resume a panic kept by `Propagate`, once the run has returned.
    pub(crate) fn resume_pending_panic(&self) {
        let pending = self.pending.borrow_mut().take();
        if let Some(payload) = pending {
            resume_unwind(payload);
        }
    }
}
