//! oneloop on smol: async-io's reactor and an async-executor
//! `LocalExecutor`, the parts smol is made of.
//!
//! The same parts run async-std, which is **discontinued upstream** (1.13,
//! "use smol instead"): async-std was async-global-executor over async-io.
//! So this adapter serves **async-std users as well**: code written for
//! smol or async-std and code written against oneloop share one thread,
//! one reactor and one poll. (Before 0.1 this crate was `oneloop-async-std`
//! with `AsyncIoBackend`; see the changelog.)
//!
//! - **smol users**: build the loop with [`SmolBackend::new`] (owned: the
//!   loop runs its own `LocalExecutor` inside `async_io::block_on`), with
//!   [`SmolBackend::with_executor`] (owned, your executor's tasks run
//!   alongside), or [`SmolBackend::attach`] (attached to the
//!   `LocalExecutor` your program already runs). Depend on this crate with
//!   `default-features = false` and no async-std code is compiled.
//! - **async-std users**: [`SmolBackend::attach_async_std`] attaches the
//!   loop to async-std's runtime on this thread (feature `async-std`, on by
//!   default).
//!
//! Either way, inside oneloop tasks and callbacks the async-io world just
//! works: `async_io::Timer`, `smol::net`, `async_std::net`,
//! `async_std::task::sleep` are all async-io registrations driven by the same
//! reactor, on the loop's thread while the loop runs. And [`BlockingPool`]
//! gives `run_in_executor` the `blocking` pool behind `smol::unblock` and
//! `async_std::task::spawn_blocking`, so a program keeps one pool of
//! blocking threads.
//!
//! ```
//! use std::time::Duration;
//! use oneloop::Loop;
//! use oneloop_smol::SmolBackend;
//!
//! let lp = Loop::with_backend(SmolBackend::new()?)?;
//! let task = lp.spawn(async {
//!     // smol's TCP and timer futures, awaited in a oneloop task.
//!     let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     let (client, server) = futures_lite::future::zip(
//!         smol::net::TcpStream::connect(addr),
//!         listener.accept(),
//!     )
//!     .await;
//!     let (_client, _server) = (client?, server?.0);
//!     smol::Timer::after(Duration::from_millis(1)).await;
//!     Ok::<_, std::io::Error>(addr.port())
//! })?;
//! let port = lp.run_until_complete(task)???;
//! assert_ne!(port, 0);
//! lp.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it maps (HOSTS.md §2.3)
//!
//! | oneloop | async-io / async-executor |
//! |---|---|
//! | ready queue, `call_soon` | oneloop's own queue, drained by **one** driver task on the `LocalExecutor` |
//! | timers | oneloop's own timer queue, plus **one** `async_io::Timer` re-armed to the earliest deadline (sub-millisecond, never early) |
//! | `add_reader`/`add_writer` | the loop's [`Selector`](oneloop::native::Selector), a private level-triggered epoll set, registered with the reactor as **one** `Async` whatever the number of fds: an fd change is one `epoll_ctl` on it, and an fd's blocking mode is left alone; after a dispatch that ran fd callbacks the driver selects again itself, so async-io's oneshot registration never decides what is still ready |
//! | `call_soon_threadsafe` | one eventfd write into the selector: async-signal-safe, coalesced |
//! | `run_forever` | `async_io::block_on` over the executor's tasks, in FIFO order, with a zero-timeout reactor poll after every oneloop iteration: the reactor runs on the loop's thread, as in any `block_on` program |
//! | attached | the driver is a task on the host's executor; the loop counts as running until `close` |
//!
//! Executor tasks and oneloop iterations interleave: the driver runs one
//! oneloop iteration per poll and yields back to the executor, which runs
//! its other tasks (in FIFO order) before the next one.
//!
//! # Nested host loops
//!
//! A oneloop callback that blocks in a nested executor run (a "modal" loop,
//! `async_io::block_on(ex.run(..))` from inside a callback) suspends oneloop
//! dispatch until it returns: the driver task is the one running the
//! callback, so the executor cannot poll it again (the default of decision
//! D4). The executor's other tasks keep running.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod backend;
mod blocking;
mod driver;

pub use backend::{DriverFuture, SmolBackend, SmolBuilder};
pub use blocking::BlockingPool;
