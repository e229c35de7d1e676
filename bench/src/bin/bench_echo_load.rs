//! The echo benchmark's load generator: `bench_echo_load --port N [--host 127.0.0.1]
//! [--connections 10] [--size 1024] [--secs 2 | --requests N] [--warmup 0]`. Strict
//! request/response, for a time or for a number of requests in all; prints
//! one line `requests .. elapsed_ns .. p50_ns .. p99_ns ..` for the measured
//! part; exits non-zero if any reply is wrong.

use std::net::IpAddr;
use std::time::Duration;

use oneloop_bench::echo::args::Args;
use oneloop_bench::echo::load::{self, LoadConfig};

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_echo_load: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::from_env()?;
    let host: IpAddr = args.get("host", IpAddr::from([127, 0, 0, 1]))?;
    let port: u16 = args.get("port", 0)?;
    if port == 0 {
        return Err("`--port` is required".into());
    }
    let mut config = LoadConfig {
        addr: (host, port).into(),
        connections: args.get("connections", 10)?,
        size: args.get("size", 1024)?,
        duration: Duration::from_secs_f64(args.get("warmup", 0.0)?),
        requests: None,
    };
    if !config.duration.is_zero() {
        load::run(&config)?;
    }
    config.duration = Duration::from_secs_f64(args.get("secs", 2.0)?);
    config.requests = args
        .get::<u64>("requests", 0)
        .map(|n| (n > 0).then_some(n))?;
    let report = load::run(&config)?;
    println!("{}", report.to_line());
    Ok(())
}
