//! Reliability checks of oneloop on every loop mode (issue 16): seeded
//! fuzzing of every transport, leak counts, a soak, and bad input.
//!
//! | module | what |
//! |---|---|
//! | [`modes`] | the nine loop modes, built as the conformance suite builds them |
//! | [`probe`] | open fds, threads and resident memory of the process |
//! | [`fuzz`] | seeded runs of TCP, Unix, UDP, pipe and subprocess transports |
//! | [`leaks`] | loops, timers and connections by the thousand: back to base |
//! | [`soak`] | mixed load for minutes, with faults and bad input on the way |
//! | [`bad_input`] | misuse that must give a clear error, never a panic or hang |
//!
//! The tests (`tests/`) run fixed seeds and short versions in `make test`;
//! the binaries `oneloop-fuzz` and `oneloop-soak` (`make fuzz`, `make
//! soak`) run long. `docs/reliability.md` says what each checks, with the
//! figures of the last soak.
#![deny(missing_docs)]

pub mod bad_input;
pub mod fuzz;
pub mod leaks;
pub mod modes;
pub mod probe;
pub mod soak;

/// The text of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned())
}
