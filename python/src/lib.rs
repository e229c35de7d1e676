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
//! | [`Handle`] | what `call_soon` returns: made and run in Rust |
//! | [`LoopBase`] | the Python loop's base class: `call_soon`, `create_future`, `get_debug` as methods of the type |
//! | [`Remote`] | the thread-safe half: `call_soon_threadsafe` from any thread |
//! | [`RustStream`] | oneloop's stream transport (sockets, pipes) under an asyncio transport |
//! | `socket_methods` | the socket transport's data-path methods as C methods of its Python class |
//! | [`RustDatagram`] | oneloop's UDP transport under an asyncio datagram transport |
//! | `signals` | `add_signal_handler` on oneloop's signal handling, the handles visible to Python's collector |
//! | `registry` | the Python objects of live transports, visible to Python's collector |
//! | `bytes_like` | `bytes`/`bytearray`/`memoryview` as byte slices, and `get_buffer()`'s buffer |
//! | `gil` | the GIL held once per batch of callbacks, released while the host waits |
//! | [`embed`] | for a Rust program embedding Python: an asyncio loop on the program's own `Loop` |
//! | `hosts` | host name (`"default"`, `"tokio"`, …) to a new owned loop |
//! | `context` | a callback's `contextvars.Context`, copied and entered through CPython's C API |
//! | `clock` | asyncio's float seconds to and from the loop's `Instant`s |
//! | `pending` | the queued asyncio handles, visible to Python's collector |
//! | `vectorcall` | a one-argument call of a bound method without a tuple (CPython's vectorcall) |
//! | `thread_bound` | `!Send` state in objects any thread may free |
//! | `errors` | oneloop errors as Python exceptions; `BaseException` escaping a run |

mod bytes_like;
mod clock;
mod context;
mod datagram;
pub mod embed;
mod errors;
mod gil;
mod handle;
mod hosts;
mod loop_base;
mod pending;
mod registry;
pub(crate) mod rust_loop;
mod signals;
mod socket_methods;
mod stream;
mod thread_bound;
mod vectorcall;

use pyo3::prelude::*;

pub use datagram::RustDatagram;
pub use handle::Handle;
pub use loop_base::LoopBase;
pub use rust_loop::{Remote, RustLoop, Timer};
pub use stream::RustStream;

/// The extension module.
#[pymodule]
fn _oneloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RustLoop>()?;
    m.add_class::<Timer>()?;
    m.add_class::<Remote>()?;
    m.add_class::<RustStream>()?;
    m.add_class::<RustDatagram>()?;
    m.add_class::<Handle>()?;
    m.add_class::<LoopBase>()?;
    loop_base::install_methods(&m.py().get_type::<LoopBase>())?;
    m.add_function(wrap_pyfunction!(socket_methods::install_socket_methods, m)?)?;
    m.add("HOSTS", hosts::available())?;
    // Benchmarks refuse a debug build (maturin builds one without --release).
    m.add(
        "BUILD_PROFILE",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    Ok(())
}
