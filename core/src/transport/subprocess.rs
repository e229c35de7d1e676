//! Subprocesses: [`SubprocessProtocol`], [`SubprocessTransport`] and the
//! factories `subprocess_exec` / `subprocess_shell` (SP-01…SP-07).
//!
//! # How it works
//!
//! The child is spawned with `std::process::Command`. Each piped stdio fd
//! becomes a pipe [`Transport`] whose small protocol forwards to the
//! subprocess protocol with the fd number. The exit is learnt from the OS,
//! never from pipe EOF (SP-06): a pidfd watched with
//! [`Loop::add_reader`] (Linux 5.3+), else a thread blocked in `waitpid`
//! (asyncio's `ThreadedChildWatcher`) that leaves the status and wakes a
//! pipe the loop watches the same way. Either way the loop holds the watch,
//! so a loop closing under the child is seen: the child is killed and its
//! state let go. `connection_lost` comes once the process has
//! exited and every pipe is closed, so output written just before the exit
//! still arrives (SP-07).
//!
//! The subprocess protocol has the same gate as stream protocols: never
//! called re-entrantly, a call arising meanwhile is delivered after.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::process::{Pid, Signal, WaitOptions};

use super::Transport;
use super::gate::{Gate, Invoked};
use super::pipe::pipe_transport;
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::{Loop, WeakLoop};
use crate::future::LoopFuture;
use crate::protocol::Protocol;

/// What a subprocess transport calls (SP-01): `connection_made` once;
/// `pipe_data_received(1 or 2, data)`*; `pipe_connection_lost` once per
/// pipe; `process_exited` once; `connection_lost` once after all of them.
/// The order of `process_exited` and `pipe_connection_lost` is not fixed.
///
/// Examples: [`SubprocessTransport`] (output, exit code),
/// [`Redirect`] (stdio settings), [`Loop::subprocess_exec`].
pub trait SubprocessProtocol: 'static {
    /// The child runs; its pipes are ready.
    fn connection_made(&mut self, transport: &SubprocessTransport) {
        let _ = transport;
    }
    /// The child wrote `data` to its stdout (`fd == 1`) or stderr (`2`).
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        let _ = (fd, data);
    }
    /// One of the child's pipes closed (`0`, `1` or `2`).
    fn pipe_connection_lost(&mut self, fd: i32, error: Option<Error>) {
        let _ = (fd, error);
    }
    /// The child exited; [`SubprocessTransport::returncode`] has the code.
    fn process_exited(&mut self) {}
    /// The child exited and every pipe closed; the last call.
    fn connection_lost(&mut self, error: Option<Error>) {
        let _ = error;
    }
    /// The child's stdin buffer went above its high-water mark.
    fn pause_writing(&mut self) {}
    /// The child's stdin buffer drained.
    fn resume_writing(&mut self) {}
}

/// Where a child's stdin, stdout or stderr goes.
///
/// # Examples
///
/// A shell command's stderr merged into its stdout (asyncio's
/// `stderr=STDOUT`), its stdin `/dev/null`:
///
/// ```
/// use oneloop::{Error, Loop, LoopFuture, Redirect, SubprocessProtocol, SubprocessStdio};
///
/// struct Output(Vec<u8>, LoopFuture<Vec<u8>>);
/// impl SubprocessProtocol for Output {
///     fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
///         assert_eq!(fd, 1); // there is no stderr pipe
///         self.0.extend_from_slice(data);
///     }
///     fn connection_lost(&mut self, _: Option<Error>) { let _ = self.1.set_result(std::mem::take(&mut self.0)); }
/// }
///
/// let lp = Loop::new()?;
/// let stdio = SubprocessStdio::new().stdin(Redirect::Null).stderr(Redirect::Stdout);
/// let output = lp.create_future();
/// let o = output.clone();
/// let child = lp.run_until_complete(lp.subprocess_shell(move || Output(Vec::new(), o), "echo out; echo err >&2", stdio))??;
/// assert!(child.pipe_transport(0).is_none() && child.pipe_transport(2).is_none());
/// assert_eq!(lp.run_until_complete(output)??, b"out\nerr\n");
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Redirect {
    /// A pipe to the loop, with a pipe transport (the default).
    #[default]
    Pipe,
    /// The parent's own fd.
    Inherit,
    /// `/dev/null`.
    Null,
    /// For stderr only: wherever stdout goes (asyncio's `STDOUT`).
    Stdout,
}

/// The stdio of a child ([`Loop::subprocess_exec`]): all pipes by default.
///
/// # Examples
///
/// See [`Redirect`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct SubprocessStdio {
    /// fd 0.
    pub stdin: Redirect,
    /// fd 1.
    pub stdout: Redirect,
    /// fd 2.
    pub stderr: Redirect,
}

impl SubprocessStdio {
    /// Pipes for all three.
    pub fn new() -> SubprocessStdio {
        SubprocessStdio::default()
    }
    /// Set stdin.
    pub fn stdin(mut self, r: Redirect) -> Self {
        self.stdin = r;
        self
    }
    /// Set stdout.
    pub fn stdout(mut self, r: Redirect) -> Self {
        self.stdout = r;
        self
    }
    /// Set stderr.
    pub fn stderr(mut self, r: Redirect) -> Self {
        self.stderr = r;
        self
    }
}

enum Note {
    Made,
    Data(i32, Vec<u8>),
    PipeLost(i32, Option<Error>),
    Exited,
    Pause,
    Resume,
    Lost,
}

/// How the loop learns the child's exit: an fd it watches either way, so
/// that the loop dropping the watch (closing under the child) is seen
/// ([`ExitWatch`]). `None` in [`ProcInner`] once the exit is known, and
/// before the watch is set up.
enum ExitFd {
    /// A pidfd (Linux 5.3+): readable once the child exited, then reaped
    /// without blocking. Signals sent through it cannot hit a recycled pid.
    Pidfd(OwnedFd),
    /// No pidfd: a thread blocked in `waitpid` reaps the child.
    Waiter(Arc<Waited>),
}

/// What a `waitpid` thread shares with the loop thread. The thread leaves
/// the status, then writes a byte to the pipe whose read end the loop
/// watches. The thread holds the read end too, so its write never meets a
/// closed pipe (no SIGPIPE), even after the loop let go.
struct Waited {
    status: Mutex<Option<i32>>,
    read: OwnedFd,
}

impl Waited {
    fn status(&self) -> Option<i32> {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct ProcInner {
    /// Weakly: the loop holds the transport, through the exit watch's
    /// reader callback and its pipes' callbacks.
    lp: WeakLoop,
    pid: u32,
    exit: RefCell<Option<ExitFd>>,
    returncode: Cell<Option<i32>>,
    pipes: RefCell<[Option<Transport>; 3]>,
    pipes_open: Cell<u8>,
    closing: Cell<bool>,
    lost_scheduled: Cell<bool>,
    /// The protocol, called only through here.
    gate: Gate<dyn SubprocessProtocol, Note>,
    exit_waiters: RefCell<Vec<LoopFuture<i32>>>,
    /// The loop closed under the child: everything was let go.
    released: Cell<bool>,
}

/// A running child process: its pid, return code, pipes and signals
/// (PEP 3156 §Subprocess Transports). Cheap to clone, `!Send`.
///
/// # Examples
///
/// Feed a child on its stdin and collect its stdout. The output is
/// complete at `connection_lost`, which comes once the child exited *and*
/// its pipes closed; the exit alone ([`wait`](SubprocessTransport::wait))
/// may come before the last output is read.
///
/// ```
/// use std::process::Command;
/// use oneloop::{Error, Loop, LoopFuture, SubprocessProtocol, SubprocessStdio};
///
/// struct Collect(Vec<u8>, LoopFuture<Vec<u8>>);
/// impl SubprocessProtocol for Collect {
///     fn pipe_data_received(&mut self, _fd: i32, data: &[u8]) { self.0.extend_from_slice(data); }
///     fn connection_lost(&mut self, _: Option<Error>) { let _ = self.1.set_result(std::mem::take(&mut self.0)); }
/// }
///
/// let lp = Loop::new()?;
/// let output = lp.create_future();
/// let o = output.clone();
/// let child = lp.run_until_complete(lp.subprocess_exec(move || Collect(Vec::new(), o), Command::new("cat"), SubprocessStdio::new()))??;
/// assert!(child.pid() > 0 && child.returncode().is_none());
///
/// let stdin = child.pipe_transport(0).unwrap();
/// stdin.write(b"through cat")?;
/// stdin.write_eof(); // cat exits at the end of its input
/// assert_eq!(lp.run_until_complete(output)??, b"through cat");
/// assert_eq!(child.returncode(), Some(0));
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Clone)]
pub struct SubprocessTransport(Rc<ProcInner>);

impl fmt::Debug for SubprocessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubprocessTransport")
            .field("pid", &self.0.pid)
            .field("returncode", &self.0.returncode.get())
            .finish()
    }
}

impl ProcInner {
    fn notify(self: &Rc<Self>, note: Note) {
        self.gate.notify(note, |note| self.deliver(note));
    }

    /// `pipe_data_received`, without copying when the gate is free.
    fn data(self: &Rc<Self>, fd: i32, data: &[u8]) {
        let called = self.gate.call(
            || self.invoke("pipe_data_received", |p| p.pipe_data_received(fd, data)),
            |note| self.deliver(note),
        );
        if !called {
            self.gate.queue(Note::Data(fd, data.to_vec()));
        }
    }

    fn deliver(self: &Rc<Self>, note: Note) {
        match note {
            Note::Made => {
                let t = SubprocessTransport(self.clone());
                self.invoke("connection_made", |p| p.connection_made(&t));
            }
            Note::Data(fd, d) => {
                self.invoke("pipe_data_received", |p| p.pipe_data_received(fd, &d))
            }
            Note::PipeLost(fd, e) => {
                self.invoke("pipe_connection_lost", |p| p.pipe_connection_lost(fd, e));
                self.pipes_open.set(self.pipes_open.get() - 1);
                self.try_finish();
            }
            Note::Exited => {
                self.invoke("process_exited", |p| p.process_exited());
                self.try_finish();
            }
            Note::Pause => self.invoke("pause_writing", |p| p.pause_writing()),
            Note::Resume => self.invoke("resume_writing", |p| p.resume_writing()),
            Note::Lost => {
                self.invoke("connection_lost", |p| p.connection_lost(None));
                let p = self.gate.take();
                drop(p);
                let pipes = std::mem::take(&mut *self.pipes.borrow_mut());
                drop(pipes);
            }
        }
    }

    /// Call the protocol; a panic closes the transport.
    fn invoke(self: &Rc<Self>, what: &'static str, f: impl FnOnce(&mut dyn SubprocessProtocol)) {
        if let Invoked::Panicked(payload) = self.gate.invoke(f) {
            self.gate.panicked(
                self.lp.upgrade().as_ref(),
                "subprocess protocol",
                what,
                "the subprocess transport was closed",
                payload,
            );
            if what != "connection_lost" {
                SubprocessTransport(self.clone()).close();
            }
        }
    }

    /// `connection_lost` once the child exited and every pipe closed.
    fn try_finish(self: &Rc<Self>) {
        if self.returncode.get().is_some()
            && self.pipes_open.get() == 0
            && !self.lost_scheduled.replace(true)
        {
            let me = self.clone();
            let queued = self
                .lp
                .get()
                .and_then(|lp| lp.call_soon(move || me.notify(Note::Lost)));
            if queued.is_err() {
                let p = self.gate.take();
                drop(p);
            }
        }
    }

    fn exited(self: &Rc<Self>, code: i32) {
        if self.returncode.get().is_some() {
            return;
        }
        self.returncode.set(Some(code));
        let exit = self.exit.borrow_mut().take();
        if let Some(lp) = self.lp.upgrade() {
            match &exit {
                Some(ExitFd::Pidfd(fd)) => {
                    lp.remove_reader(fd);
                }
                Some(ExitFd::Waiter(w)) => {
                    lp.remove_reader(&w.read);
                }
                None => {}
            }
        }
        drop(exit);
        let waiters = std::mem::take(&mut *self.exit_waiters.borrow_mut());
        for w in waiters {
            let _ = w.set_result(code);
        }
        self.notify(Note::Exited);
    }

    /// The loop closed (or was dropped) under the child, or setting it up
    /// failed: no callback will run again, so the exit can never be learnt.
    /// Kill the child if it still runs, as dropping an asyncio subprocess
    /// transport does, and make sure it is reaped (it dies at once, but
    /// `waitpid` blocks); then let go of the protocol (which may hold this
    /// state) and the pipes.
    fn release(self: &Rc<Self>) {
        if self.released.replace(true) {
            return;
        }
        if self.returncode.get().is_none() {
            let exit = self.exit.borrow_mut().take();
            match exit {
                Some(ExitFd::Pidfd(fd)) => {
                    let _ = pidfd::send_signal(fd.as_fd(), Signal::KILL);
                    drop(fd);
                    reap_in_background(self.pid);
                }
                // Its thread reaps it; once that thread left the status
                // the pid may be another process's.
                Some(ExitFd::Waiter(w)) => {
                    if w.status().is_none()
                        && let Some(pid) = Pid::from_raw(self.pid as i32)
                    {
                        let _ = rustix::process::kill_process(pid, Signal::KILL);
                    }
                }
                // No watch was set up: nothing waits for the child.
                None => {
                    if let Some(pid) = Pid::from_raw(self.pid as i32) {
                        let _ = rustix::process::kill_process(pid, Signal::KILL);
                    }
                    reap_in_background(self.pid);
                }
            }
        }
        let protocol = self.gate.take();
        drop(protocol);
        let pipes = std::mem::take(&mut *self.pipes.borrow_mut());
        drop(pipes);
        let waiters = std::mem::take(&mut *self.exit_waiters.borrow_mut());
        drop(waiters);
    }

    /// The exit watch turned readable: take the status its thread left,
    /// or reap through the pidfd without blocking.
    fn reap(self: &Rc<Self>) {
        let waited = match &*self.exit.borrow() {
            Some(ExitFd::Waiter(w)) => Some(w.status()),
            _ => None,
        };
        match waited {
            Some(Some(code)) => return self.exited(code),
            Some(None) => return,
            None => {}
        }
        let Some(pid) = Pid::from_raw(self.pid as i32) else {
            return;
        };
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => self.exited(code_of(status)),
            Ok(None) => {}
            // Reaped elsewhere (someone else waits for all children): the
            // code is lost; report it as unknown rather than hang.
            Err(_) => self.exited(255),
        }
    }
}

fn code_of(status: rustix::process::WaitStatus) -> i32 {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => -sig,
        (None, None) => 255,
    }
}

/// The protocol of one stdio pipe: forwards to the subprocess protocol.
struct PipeProto {
    fd: i32,
    proc: Weak<ProcInner>,
}

impl Protocol for PipeProto {
    fn data_received(&mut self, data: &[u8]) {
        if let Some(p) = self.proc.upgrade() {
            p.data(self.fd, data);
        }
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        if let Some(p) = self.proc.upgrade() {
            p.notify(Note::PipeLost(self.fd, error));
        }
    }
    fn pause_writing(&mut self) {
        if let Some(p) = self.proc.upgrade() {
            p.notify(Note::Pause);
        }
    }
    fn resume_writing(&mut self) {
        if let Some(p) = self.proc.upgrade() {
            p.notify(Note::Resume);
        }
    }
}

impl SubprocessTransport {
    /// The child's process id.
    #[doc(alias = "get_pid")]
    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    /// `None` while the child runs, then its exit code, or `-N` if signal
    /// `N` killed it (SP-02).
    #[doc(alias = "get_returncode")]
    pub fn returncode(&self) -> Option<i32> {
        self.0.returncode.get()
    }

    /// The transport of pipe `fd` (0: stdin, writable; 1, 2: readable), or
    /// `None` if that fd is not a pipe (SP-03, SP-05).
    #[doc(alias = "get_pipe_transport")]
    pub fn pipe_transport(&self, fd: i32) -> Option<Transport> {
        let i = usize::try_from(fd).ok().filter(|&i| i < 3)?;
        self.0.pipes.borrow()[i].clone()
    }

    /// Resolves with the return code when the child exits.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] if the loop closes first.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting; the child is still reaped
    /// when it exits.
    ///
    /// # Examples
    ///
    /// See [`kill`](SubprocessTransport::kill).
    pub fn wait(&self) -> impl StdFuture<Output = Result<i32>> + 'static {
        let code = self.0.returncode.get();
        let fut = self.0.lp.upgrade().map(|lp| lp.create_future::<i32>());
        if let Some(fut) = &fut {
            match code {
                Some(code) => {
                    let _ = fut.set_result(code);
                }
                None => self.0.exit_waiters.borrow_mut().push(fut.clone()),
            }
        }
        async move {
            match (fut, code) {
                (Some(fut), _) => fut.await,
                (None, Some(code)) => Ok(code),
                (None, None) => Err(Error::closed()),
            }
        }
    }

    /// Send signal `sig` to the child (SP-04). Ignored once it has exited,
    /// and once its loop closed under it (which killed it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for an unknown signal number;
    /// [`ErrorKind::Io`] if the OS refuses.
    pub fn send_signal(&self, sig: i32) -> Result<()> {
        let signal = Signal::from_named_raw(sig).ok_or_else(|| {
            Error::new(ErrorKind::InvalidArgument, format!("unknown signal {sig}"))
        })?;
        // After a release the child was killed and is reaped elsewhere:
        // its pid may be another process's already.
        if self.0.returncode.get().is_some() || self.0.released.get() {
            return Ok(());
        }
        match &*self.0.exit.borrow() {
            // A pidfd cannot hit a recycled pid.
            Some(ExitFd::Pidfd(fd)) => {
                return pidfd::send_signal(fd.as_fd(), signal)
                    .map_err(|e| std::io::Error::from(e).into());
            }
            // Reaped by its thread, not yet seen by the loop: it has exited
            // (and the pid may be another process's already).
            Some(ExitFd::Waiter(w)) if w.status().is_some() => return Ok(()),
            _ => {}
        }
        let pid = Pid::from_raw(self.0.pid as i32)
            .ok_or_else(|| Error::new(ErrorKind::InvalidState, "no such process"))?;
        rustix::process::kill_process(pid, signal).map_err(|e| std::io::Error::from(e).into())
    }

    /// SIGTERM.
    ///
    /// # Errors
    /// As [`send_signal`](SubprocessTransport::send_signal).
    pub fn terminate(&self) -> Result<()> {
        self.send_signal(Signal::TERM.as_raw())
    }

    /// SIGKILL.
    ///
    /// # Errors
    /// As [`send_signal`](SubprocessTransport::send_signal).
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::{Loop, SubprocessProtocol, SubprocessStdio};
    ///
    /// struct Quiet;
    /// impl SubprocessProtocol for Quiet {}
    ///
    /// let lp = Loop::new()?;
    /// let stuck = std::process::Command::new("cat"); // waits for input forever
    /// let child = lp.run_until_complete(lp.subprocess_exec(|| Quiet, stuck, SubprocessStdio::new()))??;
    /// child.kill()?;
    /// assert_eq!(lp.run_until_complete(child.wait())??, -9); // -N: killed by signal N
    /// assert_eq!(child.returncode(), Some(-9));
    /// child.kill()?; // ignored once it has exited
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.send_signal(Signal::KILL.as_raw())
    }

    /// Close the pipes and, if the child still runs, kill it (asyncio's
    /// behaviour). Harmless after the child exited (SP-03). Idempotent.
    pub fn close(&self) {
        if self.0.closing.replace(true) {
            return;
        }
        let pipes: Vec<Transport> = self.0.pipes.borrow().iter().flatten().cloned().collect();
        for p in pipes {
            p.close();
        }
        if self.0.returncode.get().is_none() {
            let _ = self.kill();
        }
    }

    /// Whether [`close`](SubprocessTransport::close) was called.
    pub fn is_closing(&self) -> bool {
        self.0.closing.get()
    }
}

fn stdio_for(r: Redirect, which: &str) -> Result<Stdio> {
    Ok(match r {
        Redirect::Pipe => Stdio::piped(),
        Redirect::Inherit => Stdio::inherit(),
        Redirect::Null => Stdio::null(),
        Redirect::Stdout => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("Redirect::Stdout is for stderr only, not {which}"),
            ));
        }
    })
}

impl Loop {
    /// Spawn `command` with `stdio` and run the protocol made by `factory`
    /// on it (SP-01). The future resolves after `connection_made`.
    ///
    /// The stdio settings of `command` are replaced by `stdio`.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the program cannot be started (no protocol is
    /// made then); [`ErrorKind::InvalidArgument`] for `Redirect::Stdout`
    /// on stdin or stdout; [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// Run a program and wait for its exit code (for its output, see
    /// [`SubprocessTransport`]):
    ///
    /// ```
    /// use oneloop::{ErrorKind, Loop, SubprocessProtocol, SubprocessStdio};
    ///
    /// struct Quiet;
    /// impl SubprocessProtocol for Quiet {}
    ///
    /// let lp = Loop::new()?;
    /// let mut cmd = std::process::Command::new("sh");
    /// cmd.args(["-c", "exit 3"]);
    /// let child = lp.run_until_complete(lp.subprocess_exec(|| Quiet, cmd, SubprocessStdio::new()))??;
    /// assert_eq!(lp.run_until_complete(child.wait())??, 3);
    ///
    /// let missing = std::process::Command::new("/nonexistent/program");
    /// let err = lp.run_until_complete(lp.subprocess_exec(|| Quiet, missing, SubprocessStdio::new()))?;
    /// assert_eq!(err.unwrap_err().kind(), ErrorKind::Io); // no protocol was made
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn subprocess_exec<P, F>(
        &self,
        factory: F,
        command: Command,
        stdio: SubprocessStdio,
    ) -> impl StdFuture<Output = Result<SubprocessTransport>> + 'static
    where
        P: SubprocessProtocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.clone();
        async move {
            let make = Box::new(move || Box::new(factory()) as Box<dyn SubprocessProtocol>);
            let t = spawn(&lp, command, stdio, make)?;
            let made = lp.create_future::<SubprocessTransport>();
            let m = made.clone();
            let t2 = t.clone();
            lp.call_soon(move || {
                let _ = m.set_result(t2);
            })?;
            made.await
        }
    }

    /// Run `cmd` with `/bin/sh -c` (asyncio's `subprocess_shell`); see
    /// [`subprocess_exec`](Loop::subprocess_exec).
    ///
    /// # Errors
    /// As [`subprocess_exec`](Loop::subprocess_exec).
    ///
    /// # Examples
    ///
    /// See [`Redirect`].
    pub fn subprocess_shell<P, F>(
        &self,
        factory: F,
        cmd: &str,
        stdio: SubprocessStdio,
    ) -> impl StdFuture<Output = Result<SubprocessTransport>> + 'static
    where
        P: SubprocessProtocol,
        F: FnOnce() -> P + 'static,
    {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(cmd);
        self.subprocess_exec(factory, command, stdio)
    }
}

fn spawn(
    lp: &Loop,
    mut command: Command,
    stdio: SubprocessStdio,
    make_protocol: Box<dyn FnOnce() -> Box<dyn SubprocessProtocol>>,
) -> Result<SubprocessTransport> {
    lp.check_open()?;
    command.stdin(stdio_for(stdio.stdin, "stdin")?);
    // stderr → stdout: one pipe (or the parent's stdout) for both.
    let mut merged_read: Option<OwnedFd> = None;
    if stdio.stderr == Redirect::Stdout {
        match stdio.stdout {
            Redirect::Pipe => {
                let (r, w) = std::io::pipe()?;
                let w2 = w.try_clone()?;
                command.stdout(Stdio::from(w)).stderr(Stdio::from(w2));
                merged_read = Some(r.into());
            }
            Redirect::Inherit => {
                let out = std::io::stdout().as_fd().try_clone_to_owned()?;
                command.stdout(Stdio::inherit()).stderr(Stdio::from(out));
            }
            Redirect::Null => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
            Redirect::Stdout => return Err(stdio_for(Redirect::Stdout, "stdout").unwrap_err()),
        }
    } else {
        command.stdout(stdio_for(stdio.stdout, "stdout")?);
        command.stderr(stdio_for(stdio.stderr, "stderr")?);
    }
    super::child::default_signals_in_child(&mut command);
    let mut child = command.spawn()?;
    // The merged pipe's write ends live on in `command`: drop it, or the
    // pipe never reaches EOF.
    drop(command);
    let pid = child.id();
    let stdin: Option<OwnedFd> = child.stdin.take().map(Into::into);
    let stdout: Option<OwnedFd> = merged_read.or_else(|| child.stdout.take().map(Into::into));
    let stderr: Option<OwnedFd> = child.stderr.take().map(Into::into);
    // `child` is not waited by std: we reap it ourselves below.
    drop(child);
    // Made only now: a program that cannot start makes no protocol.
    let protocol = make_protocol();
    let pidfd = Pid::from_raw(pid as i32).and_then(pidfd::open);
    let inner = Rc::new(ProcInner {
        lp: lp.downgrade(),
        pid,
        exit: RefCell::new(pidfd.map(ExitFd::Pidfd)),
        returncode: Cell::new(None),
        pipes: RefCell::new([None, None, None]),
        pipes_open: Cell::new(0),
        closing: Cell::new(false),
        lost_scheduled: Cell::new(false),
        gate: Gate::new(protocol),
        exit_waiters: RefCell::new(Vec::new()),
        released: Cell::new(false),
    });
    let set_up = (|| {
        let mut started = Vec::new();
        for (fd, end) in [(0, stdin), (1, stdout), (2, stderr)] {
            let Some(end) = end else { continue };
            let proto = Box::new(PipeProto {
                fd,
                proc: Rc::downgrade(&inner),
            });
            let t = pipe_transport(lp, end, fd != 0, proto, None)?;
            inner.pipes.borrow_mut()[fd as usize] = Some(Transport(t.clone()));
            inner.pipes_open.set(inner.pipes_open.get() + 1);
            started.push(t);
        }
        watch_exit(lp, &inner)?;
        let me = inner.clone();
        lp.call_soon(move || {
            me.notify(Note::Made);
            for t in started {
                let _ = t.start(None);
            }
        })?;
        Ok::<_, Error>(())
    })();
    if let Err(e) = set_up {
        // The child runs already: kill and reap it, or it is left behind.
        inner.release();
        return Err(e);
    }
    Ok(SubprocessTransport(inner))
}

/// The exit watch's hold on the child's state. The loop drops it when it
/// closes (or is dropped) before the child exited: the moment to kill and
/// reap the child and let go of its state, which nothing else would.
struct ExitWatch(Rc<ProcInner>);

impl Drop for ExitWatch {
    fn drop(&mut self) {
        let me = &self.0;
        // `exited` removes the watch itself, on a live loop.
        if me.lp.upgrade().is_none_or(|lp| lp.is_closed()) {
            me.release();
        }
    }
}

/// Wait for the (killed) child `pid` on a thread of its own.
fn reap_in_background(pid: u32) {
    let Some(p) = Pid::from_raw(pid as i32) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name(format!("oneloop-reap-{pid}"))
        .spawn(move || {
            let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
        });
    if spawned.is_err() {
        // No thread to spare: the child was sent SIGKILL and dies at once.
        let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
    }
}

fn watch_exit(lp: &Loop, inner: &Rc<ProcInner>) -> Result<()> {
    if let Some(ExitFd::Pidfd(fd)) = &*inner.exit.borrow() {
        let watch = ExitWatch(inner.clone());
        return lp.add_reader(fd, move || watch.0.reap());
    }
    // No pidfd (kernel before 5.3, other OSes): a thread blocks in waitpid
    // for this child, leaves the status and wakes the pipe. A byte, not
    // only the write end's close: a process forked meanwhile may hold a
    // copy of the write end.
    let pid = inner.pid;
    let (read, mut write) = std::io::pipe()?;
    let waited = Arc::new(Waited {
        status: Mutex::new(None),
        read: read.into(),
    });
    let theirs = waited.clone();
    std::thread::Builder::new()
        .name(format!("oneloop-waitpid-{pid}"))
        .spawn(move || {
            let code = Pid::from_raw(pid as i32)
                .and_then(|p| {
                    rustix::process::waitpid(Some(p), WaitOptions::empty())
                        .ok()
                        .flatten()
                })
                .map_or(255, |(_, st)| code_of(st));
            *theirs.status.lock().unwrap_or_else(PoisonError::into_inner) = Some(code);
            let _ = write.write_all(&[0]);
        })
        .map_err(Error::from)?;
    *inner.exit.borrow_mut() = Some(ExitFd::Waiter(waited.clone()));
    let watch = ExitWatch(inner.clone());
    lp.add_reader(&waited.read, move || watch.0.reap())
}

/// pidfds (Linux 5.3+): a child's exit as a readable fd, and signals that
/// cannot hit a recycled pid. Elsewhere there are none, and a thread waits
/// for each child instead (`watch_exit`); Linux builds take that path too
/// under `--cfg oneloop_polling`, which `make test` runs the suite with.
mod pidfd {
    use std::os::fd::{BorrowedFd, OwnedFd};

    use rustix::process::{Pid, Signal};

    /// A pidfd of `pid`, if the platform (and kernel) has them.
    #[cfg(all(any(target_os = "linux", target_os = "android"), not(oneloop_polling)))]
    pub(super) fn open(pid: Pid) -> Option<OwnedFd> {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    }

    #[cfg(any(not(any(target_os = "linux", target_os = "android")), oneloop_polling))]
    pub(super) fn open(_pid: Pid) -> Option<OwnedFd> {
        None
    }

    /// Send `signal` to the process of `fd`.
    #[cfg(all(any(target_os = "linux", target_os = "android"), not(oneloop_polling)))]
    pub(super) fn send_signal(fd: BorrowedFd<'_>, signal: Signal) -> rustix::io::Result<()> {
        rustix::process::pidfd_send_signal(fd, signal)
    }

    #[cfg(any(not(any(target_os = "linux", target_os = "android")), oneloop_polling))]
    pub(super) fn send_signal(_fd: BorrowedFd<'_>, _signal: Signal) -> rustix::io::Result<()> {
        // `open` never made one.
        Err(rustix::io::Errno::NOSYS)
    }
}
