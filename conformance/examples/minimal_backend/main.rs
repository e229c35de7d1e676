//! A minimal oneloop backend (a condition variable as the host loop), run
//! through the whole conformance suite: the walk-through of
//! `docs/writing-an-adapter.md`.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p oneloop-conformance --example minimal_backend
//! ```
//!
//! It prints one line per check (fd checks are ignored, with the reason: the
//! backend does not watch fds) and exits non-zero if a check fails.

mod backend;

fn main() {
    oneloop_conformance::Harness::new(backend::spec()).run()
}
