//! [`HyperIo`]: hyper's `Read`/`Write` over futures-io.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::io::{AsyncBufRead, AsyncWrite};
use hyper::rt::ReadBufCursor;

/// A [`oneloop::Stream`] (or any `futures::io::AsyncBufRead + AsyncWrite`)
/// as hyper's [`Read`](hyper::rt::Read) and [`Write`](hyper::rt::Write).
///
/// Reading copies from the stream's buffer into hyper's with
/// [`ReadBufCursor::put_slice`]: one copy, as a `read(2)` into hyper's
/// buffer would make, and no `unsafe`. A plain `AsyncRead` can be wrapped
/// in `futures::io::BufReader` first. `poll_shutdown` is the stream's
/// `poll_close` (for a oneloop stream: the EOF is queued behind the
/// buffered bytes, and it returns once they have all been sent).
///
/// # Examples
///
/// See the [crate docs](crate#a-server-and-a-client) (HTTP/1) and
/// [`LoopExecutor`](crate::LoopExecutor) (HTTP/2).
#[derive(Debug)]
pub struct HyperIo<T> {
    inner: T,
}

impl<T> HyperIo<T> {
    /// Wrap `inner`.
    pub fn new(inner: T) -> HyperIo<T> {
        HyperIo { inner }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream inside, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwrap the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncBufRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = Pin::new(&mut self.get_mut().inner);
        let available = ready!(inner.as_mut().poll_fill_buf(cx))?;
        // Empty means end of stream: hyper reads it as EOF.
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        inner.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
