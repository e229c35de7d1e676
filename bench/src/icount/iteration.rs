//! One loop iteration as idle registrations grow (the performance plan's
//! "loop iteration cost flat as idle registered fds / pending timers grow",
//! issue 17 item 6): a loop holding N readers on eventfds that never become
//! readable and N timers an hour away, N = 10 … 1e4, on every loop; per
//! iteration (`call_soon_detached(stop)` and the `run_forever` that runs
//! it: one poll of the OS with a zero timeout, the timer queue's look at
//! its next deadline, one callback). Instruction counts see what the loop
//! does in user space per iteration, such as a scan of its fds; what the
//! kernel does with them (`poll` over N fds is O(N) there) the timed table
//! of the `iteration` bench shows. Not gated: a table.

use std::os::fd::OwnedFd;
use std::time::Duration;

use super::{Case, Run, case, loops, measure};

/// The sizes of the table.
pub const SIZES: [usize; 5] = [10, 100, 1_000, 5_000, 10_000];

/// Iterations counted at `n`: fewer as `n` grows (a loop whose iteration
/// is O(N) or worse would take minutes under callgrind otherwise; the
/// count per iteration is exact at any number of rounds).
fn rounds(n: usize) -> u64 {
    (20_000 / n as u64).clamp(2, 200)
}

/// The cases of this table in this build: `iteration_<N>/<loop>`, but
/// those that need more fds than this process may open.
pub fn cases() -> Vec<Case> {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    let mut v = Vec::new();
    for n in SIZES {
        for (variant, _) in loops() {
            if (n + 256) as u64 > hard {
                continue;
            }
            v.push(case(
                &format!("iteration_{n}"),
                variant,
                rounds(n),
                false,
                Run::InProcess(run),
            ));
        }
    }
    v
}

/// N of a case name `iteration_<N>/…`.
fn size_of(case: &Case) -> usize {
    case.workload()
        .strip_prefix("iteration_")
        .and_then(|n| n.parse().ok())
        .expect("iteration_<N>")
}

/// A loop with `n` idle readers and `n` far timers; the fds it watches.
pub fn loaded_loop(lp: &oneloop::Loop, n: usize) -> Vec<OwnedFd> {
    raise_fd_limit();
    let mut fds = Vec::with_capacity(n);
    for _ in 0..n {
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
            .expect("eventfd (is the fd limit below 1e4?)");
        lp.add_reader(&fd, || unreachable!("an idle eventfd became readable"))
            .expect("add_reader");
        fds.push(fd);
        lp.call_later(Duration::from_secs(3600), || {
            unreachable!("a far timer fired")
        })
        .expect("call_later");
    }
    fds
}

/// Raise the fd limit to [`FD_LIMIT`] (1e4 eventfds need it where the soft
/// limit is 1024, and the tokio adapter holds a duplicate of each watched
/// fd): both limits if this process may (root), else the soft one to the
/// hard one.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let want = Some(FD_LIMIT);
    if lim.current >= want {
        return;
    }
    let raised = Rlimit {
        current: want,
        maximum: lim.maximum.max(want),
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        // Best effort: the eventfd that fails says why.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
}

/// The fd limit the iteration cases ask for.
pub const FD_LIMIT: u64 = 65_536;

fn run(case: &Case) {
    let lp = super::new_loop(case.variant());
    let n = size_of(case);
    let fds = loaded_loop(&lp, n);
    // Ten iterations of warm-up: a tokio adapter that registers each fd
    // with tokio gets the initial readiness edges of all N fds, 1 024 per
    // turn, in its first turns.
    let warmup = 10;
    measure(case, warmup, rounds(n), || {
        let lp2 = lp.clone();
        lp.call_soon_detached(move || lp2.stop())
            .expect("call_soon_detached");
        lp.run_forever().expect("run_forever");
    });
    assert_eq!(lp.stats().fds, n);
    assert_eq!(lp.stats().timers, n);
    lp.close().expect("close");
    drop(fds);
}
