//! `connect_read_pipe` / `connect_write_pipe`: pipes (and character devices,
//! PTYs) as stream transports (PI-01…PI-03).

use std::future::Future as StdFuture;
use std::os::fd::OwnedFd;

use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::Loop;
use crate::protocol::Protocol;
use crate::transport::{StreamInner, Transport};

impl Loop {
    /// Read from the pipe `pipe` with the protocol made by `factory`:
    /// `connection_made`, `data_received`*, `eof_received` when the write end
    /// closes, then `connection_lost` (PI-01). The returned [`Transport`]
    /// reads only: `write` answers [`ErrorKind::Unsupported`].
    ///
    /// The fd is made non-blocking (which the other holders of a shared fd,
    /// such as an inherited stdin, also see).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a regular file or directory, which
    /// cannot be watched; [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::{Loop, Protocol};
    /// use std::{cell::RefCell, io::Write, rc::Rc};
    ///
    /// struct Collect(Rc<RefCell<Vec<u8>>>);
    /// impl Protocol for Collect {
    ///     fn data_received(&mut self, d: &[u8]) { self.0.borrow_mut().extend_from_slice(d); }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let (r, w) = std::io::pipe()?;
    /// let got = Rc::new(RefCell::new(Vec::new()));
    /// let g = got.clone();
    /// let t = lp.run_until_complete(lp.connect_read_pipe(move || Collect(g), r))??;
    /// std::thread::spawn(move || { let mut w = w; w.write_all(b"through a pipe").unwrap(); });
    /// while !t.is_closing() {
    ///     lp.run_until_complete(oneloop::sleep(std::time::Duration::from_millis(1)))??;
    /// }
    /// assert_eq!(*got.borrow(), b"through a pipe");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_read_pipe<P, F>(
        &self,
        factory: F,
        pipe: impl Into<OwnedFd>,
    ) -> impl StdFuture<Output = Result<Transport>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
    {
        self.connect_pipe(
            Box::new(move || Box::new(factory()) as _),
            pipe.into(),
            true,
        )
    }

    /// Write to the pipe `pipe` with the protocol made by `factory`: only
    /// `connection_made`, `connection_lost` and the flow-control calls reach
    /// it (PI-02). When the read end closes the protocol gets
    /// `connection_lost` without having to write (PI-03). `write_eof` closes
    /// the pipe after the buffered data.
    ///
    /// The process must ignore SIGPIPE (Rust binaries do by default), or a
    /// write to a pipe whose reader is gone kills it.
    ///
    /// # Errors
    /// As [`connect_read_pipe`](Loop::connect_read_pipe).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use oneloop::{Error, Loop, LoopFuture, Protocol};
    ///
    /// struct Lost(LoopFuture<()>);
    /// impl Protocol for Lost {
    ///     fn connection_lost(&mut self, _: Option<Error>) { let _ = self.0.set_result(()); }
    /// }
    ///
    /// let lp = Loop::new()?;
    /// let (mut r, w) = std::io::pipe()?;
    /// let lost = lp.create_future();
    /// let l = lost.clone();
    /// let t = lp.run_until_complete(lp.connect_write_pipe(move || Lost(l), w))??;
    /// t.write(b"down the pipe")?;
    /// t.write_eof(); // on a pipe: close it once the buffer is sent
    /// lp.run_until_complete(lost)??;
    /// let mut got = String::new();
    /// r.read_to_string(&mut got)?; // ends: the write end is closed
    /// assert_eq!(got, "down the pipe");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_write_pipe<P, F>(
        &self,
        factory: F,
        pipe: impl Into<OwnedFd>,
    ) -> impl StdFuture<Output = Result<Transport>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
    {
        self.connect_pipe(
            Box::new(move || Box::new(factory()) as _),
            pipe.into(),
            false,
        )
    }

    fn connect_pipe(
        &self,
        factory: Box<dyn FnOnce() -> Box<dyn Protocol>>,
        fd: OwnedFd,
        readable: bool,
    ) -> impl StdFuture<Output = Result<Transport>> + 'static {
        let lp = self.clone();
        async move {
            let inner = pipe_transport(&lp, fd, readable, factory(), None)?;
            let made = lp.create_future::<Transport>();
            inner.start(Some(made.clone()))?;
            made.await
        }
    }
}

/// A started-later pipe transport over `fd`, checked and made non-blocking.
pub(crate) fn pipe_transport(
    lp: &Loop,
    fd: OwnedFd,
    readable: bool,
    protocol: Box<dyn Protocol>,
    on_lost: Option<Box<dyn FnOnce()>>,
) -> Result<std::rc::Rc<StreamInner>> {
    let st = rustix::fs::fstat(&fd).map_err(std::io::Error::from)?;
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Fifo
        | rustix::fs::FileType::Socket
        | rustix::fs::FileType::CharacterDevice => {}
        other => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("a pipe transport needs a pipe, socket or character device, not {other:?}"),
            ));
        }
    }
    rustix::io::ioctl_fionbio(&fd, true).map_err(std::io::Error::from)?;
    Ok(StreamInner::new_pipe(lp, fd, readable, protocol, on_lost))
}
