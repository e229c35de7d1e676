//! The oneloop conformance suite on guest mode, hosted by the plainest
//! host: the check's thread with a queue, whose only hook is "push this
//! job". The spec and the host driver are the suite's fixture
//! `conformance/hosts/guest.rs`.
//!
//! Run with `cargo test -p oneloop-guest --test conformance`.

#[path = "../../../conformance/hosts/guest.rs"]
mod host;

fn main() {
    host::harness().run()
}
