//! The oneloop conformance suite on the async-io adapter, owned and attached.
//! The specs and the host driver are the suite's fixture
//! `conformance/hosts/async_std.rs`.
//!
//! Run with `cargo test -p oneloop-async-std --test conformance`; filter
//! with the usual test arguments (`-- "(attached)::TM-"`).

#[path = "../../../conformance/hosts/async_std.rs"]
mod host;

fn main() {
    host::harness().run()
}
