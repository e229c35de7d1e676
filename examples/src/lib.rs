//! Examples of oneloop: the same protocol code on every loop.
//!
//! The binaries are the examples; this library is the little they share.
//! Each binary takes `--loop native|tokio|smol|glib|calloop` and runs
//! the very same [`Protocol`](oneloop::Protocol) or stream code on the loop
//! named, because every adapter yields the same [`oneloop::Loop`].
//!
//! | binary | shows |
//! |---|---|
//! | `echo_server` | a PEP 3156 protocol ([`Protocol`](oneloop::Protocol) / [`Transport`](oneloop::Transport)) with flow control |
//! | `echo_client` | the streams API: `futures::io` reader and writer halves |
//! | `chat_server` | a line-based chat room: shared state, broadcast, slow clients dropped |
//! | `gtk_dashboard` | oneloop inside a GTK application's main loop |
//!
//! ```text
//! cargo run -p oneloop-examples --bin echo_server -- --loop glib --port 7000
//! nc 127.0.0.1 7000
//! ```
//!
//! # Map of the crate
//!
//! | item | what |
//! |---|---|
//! | [`LoopKind`], [`pick_loop`] | a loop by its `--loop` name |
//! | [`Options`], [`CliError`] | the command line the binaries share |
//! | [`Interrupt`], [`drain`] | stop on Ctrl-C, let connections finish |

mod cli;
mod loops;
mod shutdown;

pub use cli::{CliError, Options};
pub use loops::{LoopKind, pick_loop};
pub use shutdown::{Interrupt, drain};
