//! Benchmarks of oneloop against the host loops and the plain-Rust floor.
