//! The oneloop conformance suite on the calloop adapter, owned and attached
//! to a compositor-shaped host loop. The specs and the host driver are the
//! suite's fixture `conformance/hosts/calloop.rs`.
//!
//! Run with `cargo test -p oneloop-calloop --test conformance`.

#[path = "../../../conformance/hosts/calloop.rs"]
mod host;

fn main() {
    host::harness().run()
}
