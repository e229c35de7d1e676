//! [`Options`]: the command line the example binaries share.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use crate::loops::LoopKind;

/// Why the command line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// `--help` or `-h`: print the usage and exit successfully.
    Help,
    /// A mistake, with what to tell the user.
    Invalid(String),
}

impl CliError {
    /// Report on stderr (stdout for `--help`) and give the exit code: 0 for
    /// help, 2 for a usage error (as most Unix tools do).
    pub fn report(&self, usage: &str) -> ExitCode {
        match self {
            CliError::Help => {
                println!("{usage}");
                ExitCode::SUCCESS
            }
            CliError::Invalid(msg) => {
                eprintln!("error: {msg}\n\n{usage}");
                ExitCode::from(2)
            }
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help => f.write_str("help requested"),
            CliError::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for CliError {}

/// `--loop NAME`, `--host HOST` and `--port PORT`, plus whatever options a
/// binary adds of its own.
///
/// Options are `--name value` or `--name=value`; there are no positional
/// arguments.
///
/// ```
/// use oneloop_examples::{LoopKind, Options};
///
/// let args = ["--loop", "glib", "--port=0", "--max-backlog", "4096"].map(String::from);
/// let mut backlog = 65536;
/// let opts = Options::parse(args, 7000, |name, value| match name {
///     "--max-backlog" => {
///         backlog = Options::number(name, value)?;
///         Ok(true)
///     }
///     _ => Ok(false),
/// })?;
/// assert_eq!(opts.loop_kind, LoopKind::Glib);
/// assert_eq!((opts.host.as_str(), opts.port), ("127.0.0.1", 0));
/// assert_eq!(backlog, 4096);
/// # Ok::<(), oneloop_examples::CliError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--loop`: the loop to run on (default `native`).
    pub loop_kind: LoopKind,
    /// `--host`: the address to listen on or connect to (default `127.0.0.1`).
    pub host: String,
    /// `--port`: the TCP port; 0 lets the system pick one (servers only).
    pub port: u16,
}

impl Options {
    /// Parse `args` (without the program name). `extra(name, value)` sees
    /// each option first and returns `Ok(true)` if it took it.
    ///
    /// # Errors
    /// [`CliError::Help`] for `--help`/`-h`; [`CliError::Invalid`] for an
    /// unknown option, a missing or bad value, or what `extra` rejected.
    pub fn parse<I, F>(args: I, default_port: u16, mut extra: F) -> Result<Options, CliError>
    where
        I: IntoIterator<Item = String>,
        F: FnMut(&str, &str) -> Result<bool, CliError>,
    {
        let mut opts = Options {
            loop_kind: LoopKind::Native,
            host: "127.0.0.1".to_owned(),
            port: default_port,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(CliError::Help);
            }
            if !arg.starts_with("--") {
                return Err(CliError::Invalid(format!("unexpected argument {arg:?}")));
            }
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => {
                    let value = args
                        .next()
                        .ok_or_else(|| CliError::Invalid(format!("{arg} needs a value")))?;
                    (arg, value)
                }
            };
            if extra(&name, &value)? {
                continue;
            }
            match name.as_str() {
                "--loop" => {
                    opts.loop_kind = value
                        .parse()
                        .map_err(|e: oneloop::Error| CliError::Invalid(e.to_string()))?;
                }
                "--host" => opts.host = value,
                "--port" => opts.port = Options::number(&name, &value)?,
                _ => return Err(CliError::Invalid(format!("unknown option {name}"))),
            }
        }
        Ok(opts)
    }

    /// Parse the number `value` of option `name`.
    ///
    /// # Errors
    /// [`CliError::Invalid`] naming the option if `value` is not a number of
    /// type `T`.
    pub fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, CliError> {
        value
            .parse()
            .map_err(|_| CliError::Invalid(format!("{name}: {value:?} is not a valid number")))
    }

    /// Parse the duration `value`, in seconds (fractions allowed), of
    /// option `name`.
    ///
    /// # Errors
    /// [`CliError::Invalid`] naming the option if `value` is not a
    /// non-negative number of seconds.
    pub fn seconds(name: &str, value: &str) -> Result<Duration, CliError> {
        let bad = || CliError::Invalid(format!("{name}: {value:?} is not a number of seconds"));
        let secs: f64 = value.parse().map_err(|_| bad())?;
        Duration::try_from_secs_f64(secs).map_err(|_| bad())
    }

    /// `host:port`, the address to listen on or connect to.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
