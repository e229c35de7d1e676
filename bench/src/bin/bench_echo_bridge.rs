//! The tokio bridge's echo benchmark (issue 13): the same tokio `TcpStream`
//! echo client on a plain tokio current-thread runtime and inside oneloop
//! tasks on bridged loops (`oneloop_tokio::enable`), against one raw tokio
//! `bench_echo_server` process pinned to CPU 0; this process (the client)
//! pins itself to CPU 1 and reports its own process CPU per request (every
//! thread: the bridge's helper thread too) and the ratio to the tokio row.
//!
//! ```text
//! bench_echo_bridge [--hosts tokio,default,glib] [--sizes 1024] [--connections 1,16]
//!                   [--rounds 5] [--secs 2] [--warmup 0.5] [--requests N] [--no-pin]
//! ```
//!
//! `--requests N` runs a fixed N requests per connection and no warm-up (for
//! instruction counts under callgrind); `--hosts` also takes `calloop`.

use std::path::PathBuf;
use std::process::Command;

use oneloop_bench::echo::args::Args;
use oneloop_bench::echo::bridge::{self, BridgeConfig, Host, Workload};
use oneloop_bench::echo::control::ServerProcess;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_echo_bridge: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env()?;
    let bin_dir: PathBuf = std::env::current_exe()?
        .parent()
        .ok_or("no directory for this executable")?
        .to_owned();
    let hosts: Vec<Host> = args.list("hosts", bridge::Host::default_rows())?;
    if let Some(h) = hosts.iter().find(|h| !h.supported()) {
        return Err(format!("the `{h}` row is not in this build").into());
    }
    if !hosts.contains(&Host::Tokio) {
        return Err("`--hosts` must include `tokio`, the reference row".into());
    }
    let sizes: Vec<usize> = args.list("sizes", vec![1024])?;
    let connections: Vec<usize> = args.list("connections", vec![1, 16])?;
    let mut workloads = Vec::new();
    for &size in &sizes {
        for &connections in &connections {
            workloads.push(Workload { connections, size });
        }
    }
    let requests: u64 = args.get("requests", 0)?;
    let config = BridgeConfig {
        hosts,
        workloads,
        rounds: args.get("rounds", 5)?,
        secs: args.get("secs", 2.0)?,
        warmup: args.get("warmup", 0.5)?,
        requests: (requests > 0).then_some(requests),
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let taskset = which("taskset");
    let pin = !args.flag("no-pin") && cpus >= 2 && taskset.is_some();
    if !args.flag("no-pin") && !pin {
        eprintln!("bench_echo_bridge: not pinning (needs `taskset` and 2 CPUs; have {cpus})");
    }
    let server_bin = bin_dir.join("bench_echo_server");
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&server_bin);
        c
    } else {
        Command::new(&server_bin)
    };
    cmd.args(["--server", "raw", "--loop", "tokio"]);
    let mut server = ServerProcess::start(cmd)?;
    if pin {
        // Before any client thread exists: the bridge's threads inherit it.
        bridge::pin_to(1)?;
    }
    eprintln!(
        "bench_echo_bridge: {} rows × {} workloads × {} rounds, server raw/tokio{}",
        config.hosts.len(),
        config.workloads.len(),
        config.rounds,
        if pin {
            " on CPU 0, client on CPU 1"
        } else {
            ", unpinned"
        }
    );
    let results = bridge::run(&config, &mut server)?;
    server.quit()?;
    bridge::print(&config, &results);
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.is_file())
}
