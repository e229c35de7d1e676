//! The oneloop conformance suite on the smol adapter, owned and attached.
//! The specs and the host driver are the suite's fixture
//! `conformance/hosts/smol.rs`.
//!
//! Run with `cargo test -p oneloop-smol --test conformance`; filter
//! with the usual test arguments (`-- "(attached)::TM-"`).

#[path = "../../../conformance/hosts/smol.rs"]
mod host;

fn main() {
    host::harness().run()
}
