//! One small, standard event-loop interface for Rust: PEP 3156 (the design
//! behind Python's asyncio), with a scheduler that owns ordering and a
//! default loop on the OS poller.
//!
//! Frameworks program against [`Loop`]; adapters put it on the loops people
//! already run (tokio, smol or async-std, glib, calloop) by implementing the
//! small [`Backend`](backend::Backend) trait; the `oneloop-conformance` crate
//! proves each adapter keeps the guarantees.
//!
//! ```
//! use std::time::Duration;
//! use oneloop::Loop;
//!
//! let lp = Loop::new()?;
//! lp.call_soon(|| println!("first"))?;
//! lp.call_later(Duration::from_millis(1), || println!("1 ms later"))?;
//! let task = lp.spawn(async {
//!     oneloop::sleep(Duration::from_millis(2)).await?;
//!     Ok::<_, oneloop::Error>("from a task")
//! })?;
//! task.add_done_callback({ let lp = lp.clone(); move |_| lp.stop() });
//! lp.run_forever()?; // until the task's done-callback stops it
//! assert_eq!(task.result()??, "from a task");
//! lp.close()?;
//! # Ok::<(), oneloop::Error>(())
//! ```
//!
//! # Map of the crate
//!
//! | module | what |
//! |---|---|
//! | [`Loop`], [`LoopBuilder`] | the handle and every PEP operation |
//! | [`backend`] | the trait adapters implement, and its contract |
//! | [`Handle`], [`TimerHandle`] | cancel a scheduled callback |
//! | [`LoopFuture`] | the PEP future (asyncio's `Future`); done-callbacks via `call_soon` |
//! | [`Task`] | runs any std future on a loop; cancellation |
//! | [`sleep`], [`timeout`] | std futures on the loop's timers |
//! | [`RemoteLoop`], [`RemoteTimer`] | the `Send + Sync` handle for other threads, and its timers |
//! | [`defer_wakes`] | one wake per loop for a burst of cross-thread posts |
//! | [`Loop::run_in_executor`], [`Executor`] | blocking work on a pool |
//! | [`get_running_loop`] and friends | the per-thread current loop |
//! | [`ExceptionContext`], [`PanicPolicy`] | errors and panics in callbacks |
//! | [`Loop::add_reader`], [`Loop::readable`] | fd readiness: level-triggered callbacks, one-shot futures |
//! | [`RunContext`] | an ambient context entered around every batch (what bridges install) |
//! | [`Error`], [`ErrorKind`] | one error type with a `kind()` |
//! | [`Protocol`], [`Transport`], [`transport`] | PEP 3156 stream protocols and transports |
//! | [`Loop::create_connection`], [`Loop::create_server`], [`Server`] | TCP and Unix connections and servers |
//! | [`Loop::create_datagram_endpoint`], [`DatagramProtocol`] | UDP endpoints |
//! | [`Loop::open_connection`], [`Stream`], [`StreamReader`], [`StreamWriter`] | streams: `futures::io` readers and writers |
//! | [`Loop::connect_read_pipe`], [`Loop::connect_write_pipe`] | pipes as transports |
//! | [`Loop::subprocess_exec`], [`SubprocessProtocol`] | child processes |
//! | [`Loop::add_signal_handler`] | Unix signals as loop callbacks |
//! | [`native::NativeBackend`], [`native::Selector`] | the default loop, and its OS poller for other backends to embed |
//!
//! # Cargo features
//!
//! All on by default; without them the crate is the loop alone (callbacks,
//! timers, fds, tasks, other threads, the executor), which is all an adapter
//! needs.
//!
//! | feature | adds |
//! |---|---|
//! | `net` | TCP, Unix and UDP: connections, servers, datagram endpoints, streams ([`Stream`]) |
//! | `process` | child processes and pipes as transports |
//! | `signal` | Unix signal handlers ([`Loop::add_signal_handler`]) |
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod backend;
mod context;
mod defer;
mod error;
mod event_loop;
mod exception;
mod executor;
mod fault;
mod fork;
mod future;
mod handle;
pub mod native;
#[cfg(feature = "net")]
mod net;
mod policy;
#[cfg(any(feature = "net", feature = "process"))]
mod protocol;
mod readiness;
mod remote;
mod run_context;
mod scheduler;
#[cfg(feature = "signal")]
mod signal;
#[cfg(feature = "net")]
mod streams;
mod task;
mod time;
#[cfg(any(feature = "net", feature = "process"))]
pub mod transport;

pub use defer::{DeferredWakes, defer_wakes};
pub use error::{Error, ErrorKind, Result};
pub use event_loop::{DEFAULT_TIMER_SLACK, Loop, LoopBuilder, LoopStats};
pub use exception::{ExceptionContext, PanicPolicy};
pub use executor::{DefaultExecutor, Executor};
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub use fault::Fault;
pub use future::{CallbackId, LoopFuture, Take};
pub use handle::{Handle, TimerHandle};
#[cfg(feature = "net")]
pub use net::ConnectOptions;
#[cfg(feature = "net")]
pub use net::server::{Server, ServerOptions};
#[cfg(feature = "net")]
pub use net::udp::DatagramOptions;
pub use policy::{
    EventLoopPolicy, get_event_loop, get_running_loop, new_event_loop, set_event_loop,
    set_event_loop_policy,
};
#[cfg(any(feature = "net", feature = "process"))]
pub use protocol::Protocol;
pub use readiness::Ready;
pub use remote::{RemoteLoop, RemoteTask, RemoteTimer};
pub use run_context::RunContext;
#[cfg(feature = "net")]
pub use streams::{Stream, StreamReader, StreamWriter};
pub use task::Task;
pub use task::state::TaskRef;
pub use time::{Sleep, Timeout, sleep, sleep_until, timeout};
#[cfg(feature = "process")]
pub use transport::subprocess::{
    Redirect, SubprocessProtocol, SubprocessStdio, SubprocessTransport,
};
#[cfg(feature = "net")]
pub use transport::{DatagramProtocol, DatagramTransport};
#[cfg(any(feature = "net", feature = "process"))]
pub use transport::{SocketAddress, Transport};
