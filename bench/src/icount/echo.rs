//! One echo request: the echo matrix's own servers (`bench_echo_server`,
//! [`crate::echo::server`]) under callgrind, counted from outside
//! with `callgrind_control` ([`count_server`](crate::echo::instructions::count_server)):
//! a blocking client sends [`SIZE`] bytes and reads them back, one request
//! in flight, [`WARMUP`] requests before the counters are zeroed and
//! [`REQUESTS`] counted; per request, every thread of the server process.
//!
//! Variants: `floor` (the bare-epoll server), `native` and `on-<host>`
//! (oneloop's protocol echo on the default loop and each adapter, owned;
//! and `on-calloop-attached`, attached to the server's own calloop event
//! loop), `streams-native` and `streams-on-<host>` (oneloop's streams
//! echo), and `<host>` (the host's own echo, `raw` in the matrix).
//!
//! With one request in flight each request is one wake-up of the server:
//! the client writes the whole request (on loopback it is in the server's
//! socket buffer when `write` returns), reads the reply, and waits until
//! the server sleeps in its loop again before the next. The smol variants
//! (`on-smol`, `streams-on-smol`, `smol`) are not gated: async-io's own
//! driver thread makes their count depend on timing (see `cases`).

use super::{Case, Run, case, loops};
use crate::echo::server::{self, LoopKind, Server};

/// The request size.
pub const SIZE: usize = 1024;
const WORKLOAD: &str = "echo_1k";
/// Requests before the counters are zeroed.
pub const WARMUP: u64 = 100;
/// Requests counted.
pub const REQUESTS: u64 = 500;

/// The cases of this workload in this build.
pub fn cases() -> Vec<Case> {
    let c = |variant: &str| {
        let (server, kind) = server_of(variant);
        // async-io's driver thread wakes on timeouts of its own (50 µs to
        // 10 ms, while `block_on` runs) and polls the reactor when the
        // main thread has not: who does which work depends on timing, and
        // the count moves by up to 10 % between runs. Counted, not gated.
        let gated = kind != LoopKind::Smol;
        case(
            WORKLOAD,
            variant,
            REQUESTS,
            gated,
            Run::EchoServer(server, kind),
        )
    };
    let mut v = vec![c("floor")];
    for (variant, _) in loops() {
        v.push(c(variant));
    }
    for (variant, _) in loops() {
        v.push(c(&format!("streams-{variant}")));
    }
    // The loop's own cost, without the transport layer: table only.
    for (variant, _) in loops() {
        let mut case = c(&format!("callbacks-{variant}"));
        case.gated = false;
        v.push(case);
    }
    // calloop attached, a compositor's shape (the host runs the event
    // loop), beside the owned loop that `loops()` has.
    if server::supported(Server::Protocol, LoopKind::CalloopAttached) {
        v.push(c("on-calloop-attached"));
        v.push(c("streams-on-calloop-attached"));
    }
    for host in HOSTS {
        if server::supported(Server::Raw, host_kind(host)) {
            v.push(c(host));
        }
    }
    v
}

/// The hosts with a raw echo, by variant name.
const HOSTS: [&str; 4] = ["tokio", "smol", "glib", "calloop"];

fn host_kind(host: &str) -> LoopKind {
    match host {
        "tokio" => LoopKind::Tokio,
        "smol" => LoopKind::Smol,
        "glib" => LoopKind::Glib,
        "calloop" => LoopKind::Calloop,
        "calloop-attached" => LoopKind::CalloopAttached,
        _ => LoopKind::Native,
    }
}

/// The server of a variant.
fn server_of(variant: &str) -> (Server, LoopKind) {
    let (server, rest) = if let Some(rest) = variant.strip_prefix("streams-") {
        (Server::Streams, rest)
    } else if let Some(rest) = variant.strip_prefix("callbacks-") {
        (Server::Callbacks, rest)
    } else {
        (Server::Protocol, variant)
    };
    match rest {
        "floor" => (Server::Floor, LoopKind::Native),
        "native" => (server, LoopKind::Native),
        _ => match rest.strip_prefix("on-") {
            Some(host) => (server, host_kind(host)),
            None => (Server::Raw, host_kind(rest)),
        },
    }
}
