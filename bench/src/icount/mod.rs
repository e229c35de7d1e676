//! Instruction counts under callgrind: the deterministic figures of the
//! benchmarks, and the perf gate of `make test`.
//!
//! This machine's timings drift by 10–30 % from one minute to the next;
//! the number of user-space instructions a workload executes does not.
//! Each *case* is one workload on one loop (or on a host's own primitive,
//! or on the plain-Rust floor), run by `bench_icount case <name>` under
//! `valgrind --tool=callgrind`:
//!
//! 1. the case builds its loop and runs `warm-up` rounds of its workload,
//!    so lazy initialisation, first allocations and caches of the
//!    allocator are out of the way;
//! 2. it zeroes callgrind's counters ([`crate::callgrind::zero_stats`]),
//!    runs `rounds` rounds, and dumps the counters
//!    ([`crate::callgrind::dump_stats_at`]);
//! 3. the runner ([`runner`]) adds up the dumps of the threads that
//!    measured and divides by the number of operations: instructions per
//!    operation.
//!
//! Client requests act on the calling thread only: a case counts the
//! thread that measures (the loop's), and a helper thread whose work is
//! part of the operation (the cross-thread case's producer) zeroes and
//! dumps its own counters around the same rounds. The echo cases are the
//! exception: they run the echo matrix's server binary under callgrind and
//! count it from outside, every thread of the server process, with
//! `callgrind_control` ([`crate::echo::instructions`]).
//!
//! What makes a count repeatable (same binary, same inputs, same count):
//! no timing decides what the measured region does. Timers are due when
//! scheduled, so an iteration fires them whatever the clock says; the
//! cross-thread case sequences its producer thread over a pipe, so each
//! round's posts are all queued before the loop looks; the echo cases have
//! one request in flight and send the next only once the server sleeps in
//! its loop's wait again, so each request is one wake-up of the server.
//! The runner starts each case with an empty environment but for `PATH`,
//! so the environment's size cannot move the stack. What remains is the
//! random keys of std's `HashMap`s (a collision costs a probe more): a few
//! instructions per operation at most, far inside the gate's 10 % (repeated
//! runs agree within 1 %). The smol echo cases are the exception, not
//! gated: see [`echo`].
//!
//! | module | what |
//! |---|---|
//! | [`callbacks`] | `call_soon` batches, and each host's own deferred call |
//! | [`timers`] | a timer scheduled due and fired, and each host's own timer |
//! | [`threadsafe`] | `call_soon_threadsafe` from another thread, and each host's channel |
//! | [`echo`] | one echo request, protocol and streams, every loop and host, the bare-epoll floor |
//! | [`iteration`] | one loop iteration with N idle fds and N far timers (not gated: a table) |
//! | [`runner`] | runs cases under callgrind, reads the dumps, compares with the recorded counts |

pub mod callbacks;
pub mod echo;
pub mod iteration;
pub mod runner;
pub mod threadsafe;
pub mod timers;

use std::ffi::CString;

use crate::callgrind;

/// How a case runs.
#[derive(Debug, Clone, Copy)]
pub enum Run {
    /// In a `bench_icount case <name>` process, whose threads dump their
    /// own counters under the case's name ([`measure`]); the runner adds
    /// up every thread that did.
    InProcess(fn(&Case)),
    /// The echo matrix's server `bench_echo_server --server <server> --loop
    /// <kind>`, counted from outside at [`echo::SIZE`] bytes per request.
    EchoServer(crate::echo::server::Server, crate::echo::server::LoopKind),
}

/// One measured workload on one loop.
#[derive(Debug, Clone)]
pub struct Case {
    /// `workload/variant`, e.g. `call_soon/native` or `echo_protocol_1k/tokio`.
    pub name: String,
    /// Operations in the measured region (rounds × operations per round).
    pub ops: u64,
    /// Whether the perf gate checks it (else it only feeds a table).
    pub gated: bool,
    /// The workload.
    pub run: Run,
}

impl Case {
    /// The workload part of the name (`call_soon`).
    pub fn workload(&self) -> &str {
        self.name.split_once('/').map_or(&self.name, |(w, _)| w)
    }

    /// The variant part of the name (`native`, `on-tokio`, `tokio`, `floor`).
    pub fn variant(&self) -> &str {
        self.name.split_once('/').map_or("", |(_, v)| v)
    }
}

/// Rounds of warm-up before the counters are zeroed.
pub const WARMUP_ROUNDS: u64 = 3;

/// Run `warmup` rounds, zero this thread's counters, run `rounds` rounds
/// and dump them under the case's name. Natively (not under callgrind) the
/// same rounds run and nothing is counted, which the smoke test uses.
pub fn measure(case: &Case, warmup: u64, rounds: u64, mut round: impl FnMut()) {
    for _ in 0..warmup {
        round();
    }
    callgrind::zero_stats();
    for _ in 0..rounds {
        round();
    }
    dump(case);
}

/// Dump the calling thread's counters under the case's name.
pub fn dump(case: &Case) {
    let reason = CString::new(case.name.as_str()).expect("case names have no NUL");
    callgrind::dump_stats_at(&reason);
}

/// Every case this build has, gated ones first, in table order.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(callbacks::cases());
    v.extend(timers::cases());
    v.extend(threadsafe::cases());
    v.extend(echo::cases());
    v.extend(iteration::cases());
    v
}

/// The case named `name`.
pub fn find(name: &str) -> Option<Case> {
    cases().into_iter().find(|c| c.name == name)
}

/// Builds a oneloop loop.
pub type MakeLoop = fn() -> oneloop::Result<oneloop::Loop>;

/// The oneloop loops of this build, as `(variant, constructor)`: `native`
/// (the default loop) and `on-<host>` for each adapter.
pub fn loops() -> Vec<(&'static str, MakeLoop)> {
    let mut v: Vec<(&'static str, MakeLoop)> = vec![("native", oneloop::Loop::new)];
    #[cfg(feature = "tokio")]
    v.push(("on-tokio", oneloop_tokio::new_loop));
    #[cfg(feature = "smol")]
    v.push(("on-smol", || {
        oneloop::Loop::with_backend(oneloop_smol::SmolBackend::new()?)
    }));
    #[cfg(feature = "glib")]
    v.push(("on-glib", oneloop_glib::new_loop));
    #[cfg(feature = "calloop")]
    v.push(("on-calloop", oneloop_calloop::new_loop));
    v
}

/// A oneloop loop for the case variant `variant` (`native`, `on-tokio`, …).
///
/// # Panics
/// If the variant is not a loop of this build or the loop cannot be built.
pub fn new_loop(variant: &str) -> oneloop::Loop {
    let (_, make) = loops()
        .into_iter()
        .find(|(v, _)| *v == variant)
        .unwrap_or_else(|| panic!("no loop `{variant}` in this build"));
    make().expect("build the loop")
}

/// A case of `workload` on `variant`.
fn case(workload: &str, variant: &str, ops: u64, gated: bool, run: Run) -> Case {
    Case {
        name: format!("{workload}/{variant}"),
        ops,
        gated,
        run,
    }
}
