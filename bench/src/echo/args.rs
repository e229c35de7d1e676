//! `--key value` command lines for the echo binaries (no parser crate for
//! three small tools).

use std::collections::HashMap;
use std::str::FromStr;

/// Parsed `--key value` pairs and bare `--flag`s.
#[derive(Debug, Default)]
pub struct Args(HashMap<String, Option<String>>);

impl Args {
    /// Parse this process's arguments.
    ///
    /// # Errors
    /// If an argument does not start with `--`.
    pub fn from_env() -> Result<Args, String> {
        Args::parse(std::env::args().skip(1))
    }

    /// Parse `args`: `--key value`, `--key=value`, or `--flag` (followed by
    /// another `--` argument or nothing).
    ///
    /// # Errors
    /// If an argument does not start with `--`.
    ///
    /// ```
    /// let args = oneloop_bench::echo::args::Args::parse(
    ///     ["--size", "1024", "--quiet", "--loop=tokio"].map(String::from),
    /// )?;
    /// assert_eq!(args.get::<usize>("size", 1)?, 1024);
    /// assert_eq!(args.get::<String>("loop", "native".into())?, "tokio");
    /// assert!(args.flag("quiet"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut args = args.into_iter().peekable();
        while let Some(a) = args.next() {
            let key = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument `{a}`"))?;
            if let Some((k, v)) = key.split_once('=') {
                map.insert(k.to_owned(), Some(v.to_owned()));
            } else {
                let value = args.next_if(|v| !v.starts_with("--"));
                map.insert(key.to_owned(), value);
            }
        }
        Ok(Args(map))
    }

    /// The value of `--key`, or `default` when absent.
    ///
    /// # Errors
    /// If the value does not parse, or `--key` has no value.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(key) {
            None => Ok(default),
            Some(None) => Err(format!("`--{key}` needs a value")),
            Some(Some(v)) => v.parse().map_err(|e| format!("`--{key} {v}`: {e}")),
        }
    }

    /// The comma-separated values of `--key`, or `default` when absent.
    ///
    /// # Errors
    /// If a value does not parse.
    pub fn list<T: FromStr>(&self, key: &str, default: Vec<T>) -> Result<Vec<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(key) {
            None => Ok(default),
            Some(None) => Err(format!("`--{key}` needs a value")),
            Some(Some(v)) => v
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse()
                        .map_err(|e| format!("`--{key}` `{x}`: {e}"))
                })
                .collect(),
        }
    }

    /// Whether the bare flag `--key` was given.
    pub fn flag(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}
