//! [`Loop::readable`] and [`Loop::writable`]: wait once for an fd's
//! readiness, in the style of tokio's `AsyncFd` and async-io's `Async`.

use std::fmt;
use std::future::Future as StdFuture;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Result;
use crate::event_loop::{Loop, WeakLoop};
use crate::future::LoopFuture;

impl Loop {
    /// Wait until `fd` is readable: a one-shot [`add_reader`](Loop::add_reader).
    ///
    /// Level-triggered, like everything fd-related in oneloop (FD-01): if
    /// the fd is readable already, the future completes at the next
    /// iteration, so a read loop is "read until `WouldBlock`, then await
    /// `readable`", and awaiting it again without reading completes again.
    /// The wait takes the fd's reader slot: do not combine it with an
    /// [`add_reader`](Loop::add_reader) callback on the same fd. Dropping
    /// the future unfinished stops watching.
    ///
    /// # Errors
    /// As [`add_reader`](Loop::add_reader), from the first poll;
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) if the task
    /// awaiting it is cancelled or the loop closes.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future only stops watching; no readiness
    /// is consumed, since it is level-triggered.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let (mut a, mut b) = std::os::unix::net::UnixStream::pair()?;
    /// b.set_nonblocking(true)?;
    /// std::thread::spawn(move || a.write_all(b"x"));
    /// let got = lp.run_until_complete(async {
    ///     let lp = oneloop::get_running_loop()?;
    ///     let mut buf = [0; 1];
    ///     loop {
    ///         match b.read(&mut buf) {
    ///             Ok(n) => return Ok::<_, oneloop::Error>(buf[..n].to_vec()),
    ///             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
    ///             Err(e) => return Err(e.into()),
    ///         }
    ///         lp.readable(std::os::fd::AsFd::as_fd(&b)).await?;
    ///     }
    /// })??;
    /// assert_eq!(got, b"x");
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn readable<'fd>(&self, fd: BorrowedFd<'fd>) -> Ready<'fd> {
        Ready::new(self, fd, true)
    }

    /// Wait until `fd` is writable: a one-shot [`add_writer`](Loop::add_writer).
    /// See [`readable`](Loop::readable).
    ///
    /// # Errors
    /// As [`readable`](Loop::readable).
    ///
    /// # Cancel safety
    /// As [`readable`](Loop::readable).
    ///
    /// # Examples
    ///
    /// Write to a socket whose buffer is full, once the peer made room:
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::{fd::AsFd, unix::net::UnixStream};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let (mut ours, mut theirs) = UnixStream::pair()?;
    /// ours.set_nonblocking(true)?;
    /// let chunk = [0u8; 4096];
    /// while ours.write(&chunk).is_ok() {} // fill the socket buffer up to `WouldBlock`
    /// std::thread::spawn(move || {
    ///     let mut sink = [0u8; 4096];
    ///     while theirs.read(&mut sink).is_ok_and(|n| n > 0) {} // the peer drains it
    /// });
    /// lp.run_until_complete(lp.writable(ours.as_fd()))??;
    /// assert!(ours.write(&chunk)? > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn writable<'fd>(&self, fd: BorrowedFd<'fd>) -> Ready<'fd> {
        Ready::new(self, fd, false)
    }
}

/// The future of [`Loop::readable`] and [`Loop::writable`] (examples there):
/// `Ok(())` once the fd is ready. Dropping it unfinished stops watching.
#[must_use = "futures do nothing unless awaited"]
pub struct Ready<'fd> {
    lp: WeakLoop,
    fd: BorrowedFd<'fd>,
    readable: bool,
    /// Set while watching.
    done: Option<LoopFuture<()>>,
}

impl fmt::Debug for Ready<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready")
            .field("fd", &self.fd.as_raw_fd())
            .field("readable", &self.readable)
            .field("watching", &self.done.is_some())
            .finish()
    }
}

impl<'fd> Ready<'fd> {
    fn new(lp: &Loop, fd: BorrowedFd<'fd>, readable: bool) -> Ready<'fd> {
        Ready {
            lp: lp.downgrade(),
            fd,
            readable,
            done: None,
        }
    }

    fn watch(&mut self) -> Result<LoopFuture<()>> {
        let lp = self.lp.get()?;
        let done = lp.create_future::<()>();
        let (set, weak, raw, readable) = (
            done.clone(),
            self.lp.clone(),
            self.fd.as_raw_fd(),
            self.readable,
        );
        let on_ready = move || {
            let _ = set.set_result(());
            // One shot: stop watching from inside the callback, so a
            // level-triggered fd does not run it again before the waiter.
            if let Some(lp) = weak.upgrade() {
                lp.inner.remove_fd(raw, readable);
            }
        };
        if readable {
            lp.add_reader(self.fd, on_ready)?;
        } else {
            lp.add_writer(self.fd, on_ready)?;
        }
        Ok(done)
    }

    fn unwatch(&mut self) {
        let Some(done) = self.done.take() else { return };
        // Set by the callback, which stopped watching already (and the fd
        // may be watched anew by now): nothing to undo.
        let fired = done.done() && !done.cancelled();
        if !fired && let Some(lp) = self.lp.upgrade() {
            lp.inner.remove_fd(self.fd.as_raw_fd(), self.readable);
        }
    }
}

impl StdFuture for Ready<'_> {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        if this.done.is_none() {
            match this.watch() {
                Ok(done) => this.done = Some(done),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let done = this.done.as_mut().expect("set above");
        let out = std::task::ready!(Pin::new(done).poll(cx));
        this.unwatch();
        Poll::Ready(out)
    }
}

impl Drop for Ready<'_> {
    fn drop(&mut self) {
        self.unwatch();
    }
}
