//! The oneloop conformance suite on the glib adapter, attached to a
//! thread's `MainContext` and owned. The specs and the host driver are the
//! suite's fixture `conformance/hosts/glib.rs`.

#[path = "../../../conformance/hosts/glib.rs"]
mod host;

fn main() {
    host::harness().run()
}
