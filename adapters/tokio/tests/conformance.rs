//! The oneloop conformance suite on the tokio adapter, in both modes: owned
//! (oneloop runs the runtime) and attached (a tokio `LocalSet` runs oneloop).
//! The specs and the host driver are the suite's fixture
//! `conformance/hosts/tokio.rs`.

#[path = "../../../conformance/hosts/tokio.rs"]
mod host;

fn main() {
    host::harness().run()
}
