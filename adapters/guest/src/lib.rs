//! oneloop in guest mode: a loop hosted by any event loop that can run a
//! closure on its thread soon (winit, a toolkit's invoke-on-main-thread),
//! its I/O wait on a helper thread.
//!
//! Some hosts offer no fd API at all, only a thread-safe "run this soon on
//! my thread" hook: winit's `EventLoopProxy`, a GUI toolkit's
//! invoke-on-main-thread call, another language's loop. Guest mode (Trio's
//! name, also asyncio's since 3.16) runs a oneloop loop on such a host:
//!
//! - the **I/O wait** (the watched fds, the next timer deadline, wakes
//!   from other threads) runs on a helper thread, `oneloop-guest-io`;
//! - **every callback, task step and timer runs on the host thread**,
//!   posted there through the host's hook ([`Host`]) as a [`Job`];
//! - only one thread touches the loop's state: the helper thread touches
//!   only its poller, and after reporting ready fds it waits until their
//!   callbacks ran before it polls again.
//!
//! Nothing polls on a clock: an idle guest has its helper thread asleep in
//! the kernel and posts nothing.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::sync::{Arc, Mutex};
//!
//! // The host: a queue this thread drains. A GUI loop would post the job
//! // as a user event and run it from its event handler.
//! let queue = Arc::new(Mutex::new(VecDeque::<oneloop_guest::Job>::new()));
//! let q = queue.clone();
//! let lp = oneloop_guest::new_loop(move |job| q.lock().unwrap().push_back(job))?;
//!
//! // oneloop work, from host code on this thread: no channel needed.
//! let (tx, rx) = std::os::unix::net::UnixStream::pair()?;
//! rx.set_nonblocking(true)?;
//! let got = lp.create_future::<usize>();
//! let g = got.clone();
//! let fd = rx.try_clone()?;
//! lp.add_reader(&fd, move || {
//!     let mut buf = [0; 16];
//!     let n = std::io::Read::read(&mut &rx, &mut buf).unwrap_or(0);
//!     let _ = g.set_result(n);
//! })?;
//! std::thread::spawn(move || std::io::Write::write_all(&mut &tx, b"ping"));
//!
//! while !got.done() {
//!     let job = queue.lock().unwrap().pop_front();
//!     match job {
//!         Some(job) => job.run(), // the reader runs here, on this thread
//!         None => std::thread::yield_now(),
//!     }
//! }
//! assert_eq!(got.result()?, 4);
//! lp.remove_reader(&fd);
//! lp.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What differs from an owned or attached loop
//!
//! - The loop is attached: it counts as running from creation to close,
//!   `run_forever`/`run_until_complete` answer `AlreadyRunning`, and it is
//!   the host thread's running loop, so one host thread has one guest.
//! - [`Loop::stop`](oneloop::Loop::stop) cannot stop a host the loop does
//!   not run: it is reported to the loop's exception handler as
//!   `Unsupported`, and the loop goes on. A guest ends when its loop closes;
//!   [`start_guest_run`] closes it when its main future completes.
//! - Signals belong to the host (SG-07): `add_signal_handler` answers
//!   `Unsupported`.
//! - Every host job costs a cross-thread hop when the loop was idle (the
//!   I/O thread wakes, the host thread runs the job); work queued while
//!   the loop is busy goes straight to the host's queue.
//!
//! # Map of the crate
//!
//! | item | what |
//! |---|---|
//! | [`Host`], [`Job`] | the host's hook, and what it runs |
//! | [`new_loop`], [`new_loop_with`] | a loop in guest mode, ended by `close()` |
//! | [`start_guest_run`], [`GuestRun`] | a main future run to completion, then `done` |
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod backend;
mod host;
mod io;
mod registry;
mod run;

pub use backend::{new_loop, new_loop_with};
pub use host::{Host, Job};
pub use run::{GuestRun, start_guest_run};
