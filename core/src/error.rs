//! The one error type of the interface, with a [`kind()`](Error::kind) that
//! generic code can match on.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What went wrong, in a form generic code can act on.
///
/// The variants map the exceptions PEP 3156 and asyncio raise to typed kinds:
/// `RuntimeError("Event loop is closed")` is [`Closed`](ErrorKind::Closed),
/// `RuntimeError("This event loop is already running")` is
/// [`AlreadyRunning`](ErrorKind::AlreadyRunning), `InvalidStateError` is
/// [`InvalidState`](ErrorKind::InvalidState), `NotImplementedError` is
/// [`Unsupported`](ErrorKind::Unsupported), and so on.
///
/// The enum is `#[non_exhaustive]`: match the kinds you handle and keep a
/// catch-all arm.
///
/// # Examples
///
/// Generic code decides what to do from the kind alone:
///
/// ```
/// use std::time::Duration;
/// use oneloop::{Error, ErrorKind, Loop};
///
/// /// Whether trying again later can help.
/// fn retryable(e: &Error) -> bool {
///     match e.kind() {
///         ErrorKind::TimedOut => true,
///         ErrorKind::Io => e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused),
///         _ => false,
///     }
/// }
///
/// let lp = Loop::new()?;
/// let file = std::fs::File::open(std::env::current_exe()?)?;
/// let err = lp.add_reader(&file, || ()).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidArgument); // a regular file is always "ready"
/// assert!(!retryable(&err));
///
/// let slow = oneloop::timeout(Duration::from_millis(1), oneloop::sleep(Duration::from_secs(60)));
/// let err = lp.run_until_complete(slow)?.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::TimedOut);
/// assert!(retryable(&err));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The loop was closed; nothing can be scheduled on it any more (D10).
    Closed,
    /// The loop is already running (a nested `run_*`, or a loop attached to a
    /// host that runs it), or another loop runs on this thread.
    AlreadyRunning,
    /// The operation needs a running loop and none is running.
    NotRunning,
    /// `stop()` was called before the future given to `run_until_complete`
    /// completed (D5); the future stays pending.
    Stopped,
    /// The object is in the wrong state for the call (a result set twice, the
    /// result of a pending future asked for).
    InvalidState,
    /// An argument is out of range or of the wrong kind (a future of another
    /// loop, a regular file given to `add_reader`, low > high water marks).
    InvalidArgument,
    /// The backend does not have this capability (fd watching on a host that
    /// has none, signals on a non-main thread).
    Unsupported,
    /// The operation or the task was cancelled.
    Cancelled,
    /// A [`timeout`](crate::timeout) expired.
    TimedOut,
    /// A callback or task panicked; the panic was caught at the callback
    /// boundary and reported to the exception handler (D3).
    Panicked,
    /// An operating-system error; [`Error::io_error`] gives it back.
    Io,
}

impl ErrorKind {
    /// A short lower-case description of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Closed => "event loop is closed",
            ErrorKind::AlreadyRunning => "event loop is already running",
            ErrorKind::NotRunning => "no running event loop",
            ErrorKind::Stopped => "event loop stopped before the future completed",
            ErrorKind::InvalidState => "invalid state",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Unsupported => "not supported by this event loop",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Panicked => "panicked",
            ErrorKind::Io => "I/O error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible oneloop operation.
///
/// Cheap to clone (the message and the OS error are shared), so that a
/// future's error can be observed by several awaiters, as in asyncio.
///
/// A `Cancelled` error that a task's await returns is the task's
/// cancellation itself: if the task lets *that value* escape (returns it,
/// for example with `?`), the task ends cancelled (see
/// [`Task`](crate::Task), *Cancellation*). A clone is only a copy of the
/// news: logging or storing a clone never changes how the task ends.
///
/// # Examples
///
/// ```
/// use oneloop::{Error, ErrorKind};
///
/// let e = Error::new(ErrorKind::InvalidArgument, "low water mark above high");
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert_eq!(e.to_string(), "invalid argument: low water mark above high");
/// ```
pub struct Error(Box<Repr>);

/// What an [`Error`] holds, behind one pointer: an `Error` is a word, so a
/// `Result<()>` is returned in a register and a `Result<Handle>` in two,
/// not through memory (errors are rare; every call on the hot path
/// returns a `Result`).
struct Repr {
    /// The kind generic code matches on.
    kind: ErrorKind,
    /// What happened, for a human; empty when the kind says it all.
    message: Arc<str>,
    /// The OS error behind an [`ErrorKind::Io`], kept whole.
    source: Option<Arc<io::Error>>,
    /// Only on the `Cancelled` error an await delivered to a task: counts
    /// it among that task's delivered cancellations still alive. Not
    /// cloned: a clone is not the cancellation.
    delivered: Option<Delivered>,
}

impl Clone for Error {
    fn clone(&self) -> Error {
        Error(Box::new(Repr {
            kind: self.0.kind,
            message: self.0.message.clone(),
            source: self.0.source.clone(),
            delivered: None,
        }))
    }
}

/// Marks one delivered cancellation as alive until it is dropped: the
/// task's count goes up on creation and down on drop. A task whose body
/// completes while one of its delivered cancellations is still alive let it
/// escape into its output (or stored the value itself somewhere), and ends
/// cancelled.
pub(crate) struct Delivered(Arc<AtomicUsize>);

impl Delivered {
    pub(crate) fn new(alive: &Arc<AtomicUsize>) -> Delivered {
        alive.fetch_add(1, Ordering::AcqRel);
        Delivered(alive.clone())
    }
}

impl Drop for Delivered {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Error {
    /// An error of `kind` with a message saying what happened.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Box::new(Repr {
            kind,
            message: Arc::from(message.into()),
            source: None,
            delivered: None,
        }))
    }

    /// An error of `kind` with no further message.
    pub fn from_kind(kind: ErrorKind) -> Error {
        Error(Box::new(Repr {
            kind,
            message: Arc::from(""),
            source: None,
            delivered: None,
        }))
    }

    /// The kind of error, for generic code to act on.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The message given when the error was made (may be empty).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The OS error behind an [`ErrorKind::Io`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::{Error, ErrorKind};
    ///
    /// let e = Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
    /// assert_eq!(e.kind(), ErrorKind::Io);
    /// assert_eq!(e.io_error().map(|io| io.kind()), Some(std::io::ErrorKind::NotFound));
    /// assert!(Error::from_kind(ErrorKind::Closed).io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&io::Error> {
        self.0.source.as_deref()
    }

    /// Whether this is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        self.0.kind == ErrorKind::Cancelled
    }

    pub(crate) fn closed() -> Error {
        Error::from_kind(ErrorKind::Closed)
    }

    pub(crate) fn cancelled() -> Error {
        Error::from_kind(ErrorKind::Cancelled)
    }

    /// Make this the delivered cancellation `d` counts.
    pub(crate) fn set_delivered(&mut self, d: Delivered) {
        self.0.delivered = Some(d);
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        let mut d = f.debug_struct("Error");
        d.field("kind", &e.kind);
        if !e.message.is_empty() {
            d.field("message", &&*e.message);
        }
        if let Some(source) = &e.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        match (&e.source, e.message.is_empty()) {
            (Some(source), true) => write!(f, "{}: {source}", e.kind),
            (Some(source), false) => write!(f, "{}: {}: {source}", e.kind, e.message),
            (None, true) => write!(f, "{}", e.kind),
            (None, false) => write!(f, "{}: {}", e.kind, e.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|e| e as _)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error(Box::new(Repr {
            kind: ErrorKind::Io,
            message: Arc::from(""),
            source: Some(Arc::new(e)),
            delivered: None,
        }))
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error::from_kind(kind)
    }
}

/// The result type of oneloop operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Results on the hot path come back in registers (see [`Repr`]): a
    /// field added to `Error` itself would send them through memory again.
    #[test]
    fn an_error_is_one_word_and_results_stay_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<Error>(), size_of::<usize>());
        assert_eq!(size_of::<Result<()>>(), size_of::<usize>());
        assert_eq!(size_of::<Result<crate::Handle>>(), 2 * size_of::<usize>());
    }
}
