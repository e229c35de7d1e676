//! [`LoopKind`]: the loops an example can run on, by their `--loop` name.

use std::fmt;
use std::str::FromStr;

use oneloop::{Error, ErrorKind, Loop, Result};

/// One of the loops oneloop runs on, as the examples' `--loop` names it.
///
/// ```
/// use oneloop_examples::LoopKind;
///
/// let kind: LoopKind = "calloop".parse()?;
/// let lp = kind.build()?;
/// assert_eq!(lp.run_until_complete(async { 6 * 7 })?, 42);
/// lp.close()?;
/// # Ok::<(), oneloop::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoopKind {
    /// The default loop, on `polling` ([`Loop::new`]).
    Native,
    /// A tokio current-thread runtime (`oneloop_tokio::new_loop`).
    Tokio,
    /// smol's engine, async-io's reactor and async-executor
    /// (`oneloop_smol::SmolBackend::new`); `async-std` and `async_std` are
    /// accepted as aliases (async-std runs on the same engine).
    Smol,
    /// A GLib main context (`oneloop_glib::new_loop`).
    Glib,
    /// A calloop `EventLoop` (`oneloop_calloop::new_loop`).
    Calloop,
}

impl LoopKind {
    /// Every loop, in the order the usage text lists them.
    pub const ALL: [LoopKind; 5] = [
        LoopKind::Native,
        LoopKind::Tokio,
        LoopKind::Smol,
        LoopKind::Glib,
        LoopKind::Calloop,
    ];

    /// The `--loop` name: `native`, `tokio`, `smol`, `glib`, `calloop`.
    pub fn name(self) -> &'static str {
        match self {
            LoopKind::Native => "native",
            LoopKind::Tokio => "tokio",
            LoopKind::Smol => "smol",
            LoopKind::Glib => "glib",
            LoopKind::Calloop => "calloop",
        }
    }

    /// A new owned loop of this kind, on the calling thread: `run_forever`
    /// and `run_until_complete` drive its host.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] if the host cannot be set up (out of fds, say).
    pub fn build(self) -> Result<Loop> {
        match self {
            LoopKind::Native => Loop::new(),
            LoopKind::Tokio => oneloop_tokio::new_loop(),
            LoopKind::Smol => Loop::with_backend(oneloop_smol::SmolBackend::new()?),
            LoopKind::Glib => oneloop_glib::new_loop(),
            LoopKind::Calloop => oneloop_calloop::new_loop(),
        }
    }
}

impl fmt::Display for LoopKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LoopKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<LoopKind> {
        match name {
            "native" | "default" => Ok(LoopKind::Native),
            "tokio" => Ok(LoopKind::Tokio),
            "async-std" | "async_std" | "smol" => Ok(LoopKind::Smol),
            "glib" | "gtk" => Ok(LoopKind::Glib),
            "calloop" => Ok(LoopKind::Calloop),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "unknown loop {name:?}: expected one of native, tokio, smol, glib, calloop"
                ),
            )),
        }
    }
}

/// A new owned loop named as on the command line (`native`, `tokio`,
/// `smol`, `glib`, `calloop`).
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] for an unknown name; otherwise as
/// [`LoopKind::build`].
///
/// ```
/// let lp = oneloop_examples::pick_loop("tokio")?;
/// assert_eq!(lp.run_until_complete(async { "same code, any loop" })?, "same code, any loop");
/// lp.close()?;
///
/// let err = oneloop_examples::pick_loop("uvloop").unwrap_err();
/// assert_eq!(err.kind(), oneloop::ErrorKind::InvalidArgument);
/// # Ok::<(), oneloop::Error>(())
/// ```
pub fn pick_loop(name: &str) -> Result<Loop> {
    name.parse::<LoopKind>()?.build()
}
