//! The TCP echo benchmark of the performance plan (the vmbench method): a
//! server process on one core, a load-generator process on the other,
//! strict request/response over N connections, and the server's own CPU
//! time per request, the figure that separates loops on this machine.
//!
//! | module | what |
//! |---|---|
//! | [`server`] | the servers: oneloop protocols and streams on each loop, and each host's own raw echo |
//! | [`floor`] | the bare-epoll echo server: the floor every loop is measured against |
//! | [`load`] | the load generator: N blocking connections, latencies, checked replies |
//! | [`bridge`] | the tokio bridge's cost: one tokio echo client on a tokio runtime and on bridged oneloop loops (binary `bench_echo_bridge`) |
//! | [`control`] | the server's stdin/stdout control protocol (port, CPU time, quit) |
//! | [`matrix`] | the driver: cells, interleaved timed rounds, targets, tables |
//! | [`instructions`] | the driver's callgrind pass: user-space instructions per request |
//! | [`c10k`] | 10 000 concurrent connections: connect time and server CPU on every loop (binary `bench_echo_10k`) |
//!
//! The binaries `bench_echo_server`, `bench_echo_load` and `bench_echo_matrix` (the driver
//! that runs every cell in interleaved rounds and prints same-round ratios)
//! are thin wrappers over these modules; `docs/benchmarks.md` has the
//! commands and the results.

pub mod args;
pub mod bridge;
pub mod c10k;
pub mod control;
pub mod floor;
pub mod instructions;
pub mod load;
pub mod matrix;
mod raw;
pub mod server;
