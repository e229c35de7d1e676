//! Stopping a server the way users expect: Ctrl-C (or `kill`) closes the
//! listener, lets open connections finish, then the program exits.

use std::time::Duration;

use oneloop::{ErrorKind, Loop, LoopFuture, Result, Server};

/// The signals that ask a server to stop.
const SIGNALS: [i32; 2] = [libc::SIGINT, libc::SIGTERM];

/// SIGINT and SIGTERM as a loop future: the first one resolves
/// [`wait`](Interrupt::wait).
///
/// Installed for as long as this value lives. Dropping it, or the first
/// signal once `wait` returns, gives both signals back the disposition they
/// had before (the default, unless the program was started with them
/// ignored, as `nohup` and background jobs of scripts do), so a second
/// Ctrl-C during a slow shutdown kills the process as users expect.
///
/// ```no_run
/// let lp = oneloop::Loop::new()?;
/// let interrupt = oneloop_examples::Interrupt::install(&lp)?;
/// let sig = lp.run_until_complete(interrupt.wait())??; // until Ctrl-C
/// assert_eq!(sig, libc::SIGINT);
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug)]
pub struct Interrupt {
    lp: Loop,
    fired: LoopFuture<i32>,
}

impl Interrupt {
    /// Handle SIGINT and SIGTERM on `lp` from now on.
    ///
    /// # Errors
    /// As [`Loop::add_signal_handler`]: [`ErrorKind::Unsupported`] off the
    /// main thread or on a loop attached to a host loop,
    /// [`ErrorKind::InvalidState`] if another loop handles signals.
    pub fn install(lp: &Loop) -> Result<Interrupt> {
        let fired = lp.create_future::<i32>();
        let me = Interrupt {
            lp: lp.clone(),
            fired: fired.clone(),
        };
        for sig in SIGNALS {
            let fired = fired.clone();
            // A second signal before `wait` returns finds the future done.
            lp.add_signal_handler(sig, move || {
                let _ = fired.set_result(sig);
            })?;
        }
        Ok(me)
    }

    /// Wait for the first SIGINT or SIGTERM and return its number; the
    /// signals' default dispositions are back when this returns.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] if the loop closes first.
    ///
    /// # Cancel safety
    /// Cancel safe: a signal that arrives while nobody waits is kept for the
    /// next `wait`.
    pub async fn wait(&self) -> Result<i32> {
        let sig = self.fired.clone().await?;
        self.uninstall();
        Ok(sig)
    }

    fn uninstall(&self) {
        for sig in SIGNALS {
            let _ = self.lp.remove_signal_handler(sig);
        }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.uninstall();
    }
}

/// Wait until `server` is closed and all its connections are gone; if they
/// have not gone after `grace`, call `abort` (which should abort what is
/// left, dropping unsent data) and wait again.
///
/// Call it after [`Server::close`] and after asking the connections to
/// close: a peer that stops reading can keep a graceful close waiting
/// forever, `grace` bounds that.
///
/// # Errors
/// [`ErrorKind::Closed`] if the loop closes first.
///
/// # Cancel safety
/// Cancel safe: it only waits.
pub async fn drain(server: &Server, grace: Duration, abort: impl FnOnce()) -> Result<()> {
    match oneloop::timeout(grace, server.wait_closed()).await {
        Ok(done) => done,
        Err(e) if e.kind() == ErrorKind::TimedOut => {
            abort();
            server.wait_closed().await
        }
        Err(e) => Err(e),
    }
}
