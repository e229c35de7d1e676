//! [`LoopExecutor`]: hyper's background futures as loop tasks.

use std::future::Future;

use oneloop::{Loop, Task};

/// hyper's [`Executor`](hyper::rt::Executor) on a oneloop loop: each future
/// hyper hands over (an http2 stream, a client connection's background
/// work) becomes a task of the loop and runs on its thread. The futures
/// need not be `Send`.
///
/// A future handed over after the loop closed is dropped (hyper then sees
/// its connection end) and a warning is logged: the loop runs nothing any
/// more. Closing the loop drops every task it still has, so nothing hyper
/// started outlives it.
///
/// # Examples
///
/// HTTP/2, which needs an executor on both sides, over a socket pair:
///
/// ```
/// use std::convert::Infallible;
/// use http_body_util::{BodyExt, Empty, Full};
/// use hyper::body::Bytes;
/// use oneloop_hyper::{HyperIo, LoopExecutor};
///
/// let lp = oneloop::Loop::new()?;
/// let body = lp.run_until_complete(async {
///     let exec = LoopExecutor::new(&lp);
///     let (a, b) = std::os::unix::net::UnixStream::pair()?;
///     let server_io = HyperIo::new(lp.adopt_stream(a).await?);
///     let client_io = HyperIo::new(lp.adopt_stream(b).await?);
///
///     let service = hyper::service::service_fn(|_req| async {
///         Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("over h2"))))
///     });
///     let server = hyper::server::conn::http2::Builder::new(exec.clone()).serve_connection(server_io, service);
///     exec.spawn(server)?;
///
///     let (mut sender, conn) = hyper::client::conn::http2::handshake(exec.clone(), client_io).await?;
///     exec.spawn(conn)?;
///     let request = hyper::Request::get("/").body(Empty::<Bytes>::new())?;
///     let response = sender.send_request(request).await?;
///     Ok::<_, Box<dyn std::error::Error>>(response.into_body().collect().await?.to_bytes())
/// })??;
/// assert_eq!(body, "over h2");
/// lp.close()?; // drops the connections' tasks
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LoopExecutor {
    lp: Loop,
}

impl LoopExecutor {
    /// An executor that spawns on `lp`.
    pub fn new(lp: &Loop) -> LoopExecutor {
        LoopExecutor { lp: lp.clone() }
    }

    /// The loop it spawns on.
    pub fn get_loop(&self) -> &Loop {
        &self.lp
    }

    /// Spawn `fut` on the loop, as `Loop::spawn`: for serving a connection.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](oneloop::ErrorKind::Closed) once the loop is
    /// closed.
    pub fn spawn<F>(&self, fut: F) -> oneloop::Result<Task<F::Output>>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.lp.spawn(fut)
    }
}

impl<F> hyper::rt::Executor<F> for LoopExecutor
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        // The task is detached: dropping its handle does not cancel it.
        if let Err(e) = self.lp.spawn(async move {
            fut.await;
        }) {
            tracing::warn!(target: "oneloop_hyper", "hyper's future was dropped: {e}");
        }
    }
}
