//! oneloop on tokio: a `oneloop::Loop` whose host is a tokio current-thread
//! runtime, either one it owns or the `LocalSet`/`LocalRuntime` a tokio
//! program already runs, side by side with tokio-native code on one thread.
//!
//! # Owned: oneloop runs the runtime
//!
//! ```
//! use std::time::Duration;
//!
//! let lp = oneloop_tokio::new_loop()?;
//! lp.call_soon(|| println!("a oneloop callback"))?;
//! let task = lp.spawn(async {
//!     // tokio-native futures work inside oneloop tasks on this loop
//!     tokio::time::sleep(Duration::from_millis(2)).await;
//!     let (tx, rx) = tokio::sync::oneshot::channel();
//!     tokio::task::spawn_local(async move { tx.send(7).unwrap() });
//!     rx.await.unwrap()
//! })?;
//! assert_eq!(lp.run_until_complete(task)??, 7);
//! lp.close()?;
//! # Ok::<(), oneloop::Error>(())
//! ```
//!
//! # The bridge: tokio libraries on any other loop
//!
//! On a loop of another host (glib, calloop, smol, the default loop),
//! [`enable`] makes tokio's types work inside its tasks and callbacks; see
//! the [`bridge`] module for how, and what closing the loop stops.
//!
//! ```
//! let lp = oneloop::Loop::new()?; // no tokio in this loop
//! oneloop_tokio::enable(&lp)?;
//! let task = lp.spawn(async { tokio::time::sleep(std::time::Duration::from_millis(1)).await })?;
//! lp.run_until_complete(task)??;
//! lp.close()?;
//! # Ok::<(), oneloop::Error>(())
//! ```
//!
//! # Attached: a tokio program runs oneloop
//!
//! Inside a running `LocalSet` (or `LocalRuntime`), [`attach`] inserts one
//! driver task and returns at once. The loop counts as running until it is
//! closed; `run_forever`/`run_until_complete` answer
//! [`AlreadyRunning`](oneloop::ErrorKind::AlreadyRunning) instead of nesting.
//!
//! ```
//! use std::time::Duration;
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let local = tokio::task::LocalSet::new();
//! local.block_on(&rt, async {
//!     let lp = oneloop_tokio::attach()?;
//!     let err = lp.run_forever().unwrap_err();
//!     assert_eq!(err.kind(), oneloop::ErrorKind::AlreadyRunning);
//!     // a framework written against oneloop, awaited from tokio code
//!     let task = lp.spawn(async {
//!         oneloop::sleep(Duration::from_millis(1)).await?;
//!         Ok::<_, oneloop::Error>("done")
//!     })?;
//!     assert_eq!(task.await??, "done");
//!     lp.close()?; // detaches; the LocalSet keeps running
//!     tokio::task::yield_now().await;
//!     Ok::<(), oneloop::Error>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it maps onto tokio
//!
//! | oneloop | tokio |
//! |---|---|
//! | ready queue, timers, fd registry | oneloop's scheduler, drained by **one** driver: a local task when attached; owned, the future each `run_*` turn blocks on (no task scheduling per iteration), which polls the owned `LocalSet` only when one of its tasks was woken |
//! | `call_later`/`call_at` | one `Sleep`, reset to the earliest deadline; the wheel rounds up to 1 ms, so timers are never early and at most ~1 ms late ([`clock_resolution`](oneloop::Loop::clock_resolution) = 1 ms) |
//! | `add_reader`/`add_writer` | the loop's [`Selector`](oneloop::native::Selector), a private level-triggered epoll set, registered with tokio as **one** `AsyncFd` however many fds it holds (no fd of the user's is ever registered with tokio, and none is duplicated); an fd change is one `epoll_ctl` on it; level-triggered by selecting again after every iteration that reported fds |
//! | `call_soon_threadsafe` | an eventfd in the selector: one `write(2)`, async-signal-safe, coalesced |
//! | fairness | the driver runs one batch per poll, then yields as a tokio task awaiting `yield_now()` does |
//! | level-triggered fds on tokio's edge-triggered reactor | after an iteration whose select reported fds, the driver selects again at once: what is still ready is reported for the next iteration, and when nothing is, tokio's flag is cleared, so one event per wake-up costs one tokio turn |
//! | `run_in_executor` | oneloop's pool by default; [`BlockingExecutor`] puts it on tokio's `spawn_blocking` pool |
//! | `run_until_complete`'s future | polled between turns with the runtime and the `LocalSet` entered, so it may await tokio futures directly |
//! | panics in callbacks | caught by oneloop (exception handler or `PanicPolicy`), never tokio's task-panic path |
//!
//! # Known limits
//!
//! - An owned loop cannot run inside another tokio runtime's async context
//!   (tokio forbids blocking there): use [`attach`] in that case.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod backend;
pub mod bridge;
mod driver;
mod executor;
mod fd;
mod sched;
mod stats;
mod turn;

pub use backend::{TokioBackend, TokioBuilder, attach, new_loop};
pub use bridge::{enable, is_enabled};
pub use executor::BlockingExecutor;
pub use stats::DriverStats;
