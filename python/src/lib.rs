//! `oneloop._oneloop`: the Rust half of the `oneloop` Python package.
//!
//! The Python package (`python/oneloop/`) defines the asyncio event loop;
//! this module gives it a oneloop [`Loop`](oneloop::Loop) to run on. What
//! crosses the boundary is deliberately small: asyncio's own `Handle` and
//! `TimerHandle` objects go in, and oneloop calls their `_run()` when they
//! are due, when their fd is ready, or when another thread asked.
//!
//! | item | what |
//! |---|---|
//! | [`RustLoop`] | a oneloop `Loop` on one host: callbacks, timers, fds, run/stop/close |
//! | [`Timer`] | the oneloop timer behind an asyncio `TimerHandle`, to cancel it |
//! | [`Remote`] | the thread-safe half: `call_soon_threadsafe` from any thread |
//! | `hosts` | host name (`"default"`, `"tokio"`, …) to a new owned loop |
//! | `clock` | asyncio's float seconds to and from the loop's `Instant`s |
//! | `pending` | the queued asyncio handles, visible to Python's collector |
//! | `thread_bound` | `!Send` state in objects any thread may free |
//! | `errors` | oneloop errors as Python exceptions; `BaseException` escaping a run |

mod clock;
mod errors;
mod hosts;
mod pending;
mod rust_loop;
mod thread_bound;

use pyo3::prelude::*;

pub use rust_loop::{Remote, RustLoop, Timer};

/// The extension module.
#[pymodule]
fn _oneloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RustLoop>()?;
    m.add_class::<Timer>()?;
    m.add_class::<Remote>()?;
    m.add("HOSTS", hosts::available())?;
    Ok(())
}
