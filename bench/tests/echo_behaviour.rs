//! Smoke runs of the echo benchmark's binaries, so the tool cannot rot:
//! every server this build has answers a short load run with correct
//! replies (the load generator compares every byte), reports its CPU time
//! and exits when told; the driver runs a tiny matrix end to end. Nothing
//! here is timed: the only assertions are on correctness and completion.

use std::process::Command;
use std::time::Duration;

use oneloop_bench::echo::control::ServerProcess;
use oneloop_bench::echo::load::{self, LoadConfig, ParsedReport};
use oneloop_bench::echo::matrix::Cell;
use oneloop_bench::echo::server::{LoopKind, Server, supported};
use oneloop_bench::watchdog::Watchdog;

fn start(server: Server, kind: LoopKind) -> ServerProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench_echo_server"));
    cmd.args(["--server", &server.to_string(), "--loop", &kind.to_string()]);
    ServerProcess::start(cmd).unwrap_or_else(|e| panic!("{server} on {kind}: {e}"))
}

#[test]
fn every_server_echoes_every_size_and_reports_its_cpu() {
    let _guard = Watchdog::arm("echo smoke", Duration::from_secs(60));
    let mut ran = Vec::new();
    for server in Server::ALL {
        for kind in LoopKind::ALL {
            if !supported(server, kind) {
                continue;
            }
            let mut process = start(server, kind);
            let before = process.cpu().expect("cpu before");
            for size in [1, 1024, 100 * 1024] {
                let report = load::run(&LoadConfig {
                    addr: ([127, 0, 0, 1], process.port()).into(),
                    connections: 3,
                    size,
                    duration: Duration::from_millis(60),
                    requests: None,
                })
                .unwrap_or_else(|e| panic!("{server} on {kind}, {size} B: {e}"));
                // Every connection completes at least one request, however
                // slowly it connected (`load::run` guarantees it).
                assert!(
                    report.requests >= 3,
                    "{server} on {kind}, {size} B: {report:?}"
                );
                let line = report.to_line();
                let parsed = ParsedReport::parse(&line).expect("the report parses back");
                assert_eq!(parsed.requests, report.requests);
                assert!(parsed.p50 <= parsed.p99);
            }
            let after = process.cpu().expect("cpu after");
            assert!(after > before, "{server} on {kind}: serving cost no CPU?");
            let last = process.quit().expect("the server exits cleanly");
            assert!(last >= after);
            ran.push(format!("{server}/{kind}"));
        }
    }
    // The default build has every adapter: protocols and streams on 5
    // loops, 4 raw echoes, the bare-epoll floor.
    if cfg!(all(
        feature = "tokio",
        feature = "smol",
        feature = "glib",
        feature = "calloop"
    )) {
        assert_eq!(ran.len(), 15, "{ran:?}");
    }
}

/// The compositor-shaped server (oneloop attached to the server's own
/// calloop event loop), which the perf gate counts, echoes too.
#[test]
#[cfg(feature = "calloop")]
fn the_attached_calloop_server_echoes() {
    let _guard = Watchdog::arm("attached echo", Duration::from_secs(60));
    for server in [Server::Protocol, Server::Streams] {
        let mut process = start(server, LoopKind::CalloopAttached);
        let report = load::run(&LoadConfig {
            addr: ([127, 0, 0, 1], process.port()).into(),
            connections: 3,
            size: 16 * 1024,
            duration: Duration::from_millis(60),
            requests: None,
        })
        .unwrap_or_else(|e| panic!("{server} on calloop-attached: {e}"));
        assert!(report.requests >= 3, "{server}: {report:?}");
        assert!(process.cpu().expect("cpu") > Duration::ZERO);
        process.quit().expect("the server exits cleanly");
    }
}

#[test]
fn a_server_exits_when_its_driver_goes_away() {
    let _guard = Watchdog::arm("echo exit", Duration::from_secs(30));
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench_echo_server"))
        .args(["--server", "oneloop-protocol", "--loop", "native"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // stdin is at its end from the start: the server must not linger.
    assert!(child.wait().expect("wait").success());
}

#[test]
fn unknown_or_unavailable_combinations_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench_echo_server"))
        .args(["--server", "raw", "--loop", "native"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not available"));
    let out = Command::new(env!("CARGO_BIN_EXE_bench_echo_server"))
        .args(["--loop", "nope"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown loop"));
}

#[test]
fn the_driver_runs_a_tiny_matrix_and_prints_the_ratios() {
    let _guard = Watchdog::arm("echo matrix", Duration::from_secs(60));
    let out = Command::new(env!("CARGO_BIN_EXE_bench_echo_matrix"))
        .args([
            "--cells",
            "floor/native,protocol/native,streams/native,raw/tokio",
        ])
        .args(["--rounds", "2", "--secs", "0.05", "--warmup", "0.02"])
        .args(["--sizes", "1024", "--connections", "2", "--no-pin"])
        .output()
        .expect("run bench_echo_matrix");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "| 1 KiB | protocol/native |",
        "| 1 KiB | raw/tokio |",
        "| 1 KiB | floor/native |",
        "ratio\techo_cpu_per_req\tprotocol/native÷floor/native\t1024\t",
        "ratio\techo_req_s\tprotocol/native÷raw/tokio\t1024\t",
        "ratio\techo_cpu_per_req\tprotocol/native÷raw/tokio\t1024\t",
        "ratio\techo_req_s\tstreams/native÷protocol/native\t1024\t",
    ] {
        assert!(stdout.contains(needle), "no `{needle}` in:\n{stdout}");
    }
}

#[test]
fn cells_parse_and_print_alike() {
    for cell in Cell::default_matrix(true) {
        let back: Cell = cell.to_string().parse().expect("parses");
        assert_eq!(back, cell);
    }
    assert!("protocol".parse::<Cell>().is_err());
    assert!("raw/nope".parse::<Cell>().is_err());
}

/// `smol` is the name; the names it had before 0.1 stay accepted.
#[test]
fn the_smol_loop_keeps_its_old_names_as_aliases() {
    assert_eq!(LoopKind::Smol.to_string(), "smol");
    for name in ["smol", "async-std", "async-io"] {
        assert_eq!(name.parse::<LoopKind>(), Ok(LoopKind::Smol), "{name}");
    }
}

#[test]
#[cfg(all(feature = "tokio", feature = "glib", feature = "calloop"))]
fn the_bridge_benchmark_runs_every_row_and_prints_the_ratios() {
    let _guard = Watchdog::arm("bridge echo", Duration::from_secs(60));
    let out = Command::new(env!("CARGO_BIN_EXE_bench_echo_bridge"))
        .args(["--hosts", "tokio,default,glib,calloop"])
        .args(["--rounds", "2", "--requests", "50"])
        .args(["--sizes", "1024", "--connections", "1,3", "--no-pin"])
        .output()
        .expect("run bench_echo_bridge");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "| 1 KiB, 1 connection | tokio |",
        "| 1 KiB, 3 connections | glib+bridge |",
        "ratio\tbridge_echo_cpu_per_req\tdefault+bridge÷tokio\tc1/1024\t",
        "ratio\tbridge_echo_cpu_per_req\tglib+bridge÷tokio\tc3/1024\t",
        "ratio\tbridge_echo_req_s\tcalloop+bridge÷tokio\tc3/1024\t",
    ] {
        assert!(stdout.contains(needle), "no `{needle}` in:\n{stdout}");
    }
}

#[test]
fn the_bridge_benchmark_needs_its_reference_row() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench_echo_bridge"))
        .args(["--hosts", "default", "--no-pin"])
        .output()
        .expect("run bench_echo_bridge");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reference row"));
}

#[test]
fn the_many_connections_cell_runs_every_loop_and_judges_the_adapters() {
    let _guard = Watchdog::arm("c10k", Duration::from_secs(120));
    let out = Command::new(env!("CARGO_BIN_EXE_bench_echo_10k"))
        .args([
            "--connections",
            "300",
            "--size",
            "4096",
            "--in-flight",
            "16",
        ])
        .args(["--rounds", "2", "--no-pin", "--stall-secs", "20"])
        .output()
        .expect("run bench_echo_10k");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| protocol/native |"), "{stdout}");
    assert!(stdout.contains("| floor/native |"), "{stdout}");
    assert!(
        stdout.contains("ratio\tc10k_connect_cpu\tfloor/native÷protocol/native\t300\t"),
        "{stdout}"
    );
    for kind in LoopKind::ALL {
        if kind == LoopKind::Native || !supported(Server::Protocol, kind) {
            continue;
        }
        // Timing is not asserted: each adapter has its row and a verdict.
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| protocol/{kind} |")))
            .unwrap_or_else(|| panic!("no row for {kind} in:\n{stdout}"));
        assert!(
            row.ends_with(" met |") || row.ends_with(" **missed** |"),
            "{row}"
        );
    }
}

#[test]
fn the_many_connections_cell_says_when_the_fd_limit_is_too_low() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench_echo_10k"))
        .args(["--connections", "100000000", "--rounds", "1", "--no-pin"])
        .output()
        .expect("run bench_echo_10k");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RLIMIT_NOFILE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
