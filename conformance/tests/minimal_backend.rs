//! The example backend of `docs/writing-an-adapter.md` passes the suite,
//! run through the `suite!` macro (one `#[test]` per check).

#[path = "../examples/minimal_backend/backend.rs"]
mod backend;

oneloop_conformance::suite!(backend::spec());
