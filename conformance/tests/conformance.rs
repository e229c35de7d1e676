//! The conformance suite on the default loop (`oneloop::Loop::new()`).

fn main() {
    oneloop_conformance::Harness::new(oneloop_conformance::native_spec()).run()
}
