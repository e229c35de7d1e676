//! The echo benchmark's server: `bench_echo_server --server oneloop-protocol|oneloop-streams|raw
//! --loop native|tokio|smol|glib|calloop [--port N]`. Prints `port <N>`, then
//! answers `cpu` on stdin with `cpu_ns <N>` (its process CPU time) and exits on
//! `quit` or the end of stdin (`oneloop_bench::echo::control`).

use oneloop_bench::echo::args::Args;
use oneloop_bench::echo::server::{self, LoopKind, Server};

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_echo_server: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env()?;
    let kind: Server = args.get("server", Server::Protocol)?;
    let lp: LoopKind = args.get("loop", LoopKind::Native)?;
    let port: u16 = args.get("port", 0)?;
    // Thousands of connections (`bench_echo_10k`) need more fds than the
    // usual soft limit of 1024.
    oneloop_bench::echo::c10k::raise_nofile();
    server::run(kind, lp, port)
}
