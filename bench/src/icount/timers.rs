//! A timer scheduled and fired: [`PER_ROUND`] timers whose deadline has
//! already come ([`PAST`] ago), then the iteration that fires them, per
//! timer. A due deadline makes the count independent of the clock: the
//! iteration moves every such timer to the ready queue whatever time it
//! reads, so no round ever waits. The hosts' own timers on the same rounds:
//! a tokio task per `sleep_until`, an async-io task per `Timer::at`, a glib
//! `timeout_add_local_once(0)` source per timer, a calloop
//! `Timer::immediate()` source per timer; the floor is a `BinaryHeap` of
//! boxed callbacks ([`TimerHeap`]).

use std::time::{Duration, Instant};

use super::{Case, Run, WARMUP_ROUNDS, case, loops, measure, new_loop};
use crate::floor::TimerHeap;
use crate::workload::{self, add};

const WORKLOAD: &str = "timer";
/// Timers per round.
pub const PER_ROUND: u64 = 100;
const ROUNDS: u64 = 20;
/// How long ago the deadlines were: tokio rounds a deadline up to its next
/// millisecond tick, so a deadline of "now" may still be a millisecond
/// away; two milliseconds ago is due on every host.
pub const PAST: Duration = Duration::from_millis(2);

/// The cases of this workload in this build.
pub fn cases() -> Vec<Case> {
    let c = |variant: &str, run| {
        case(
            WORKLOAD,
            variant,
            ROUNDS * PER_ROUND,
            true,
            Run::InProcess(run),
        )
    };
    let mut v = vec![c("floor", floor)];
    for (variant, _) in loops() {
        v.push(c(variant, oneloop));
    }
    #[cfg(feature = "tokio")]
    v.push(c("tokio", hosts::tokio));
    #[cfg(feature = "smol")]
    v.push(c("smol", hosts::smol));
    #[cfg(feature = "glib")]
    v.push(c("glib", hosts::glib));
    #[cfg(feature = "calloop")]
    v.push(c("calloop", hosts::calloop));
    v
}

/// Run `round` as a measured case whose every round must fire every timer.
fn checked(case: &Case, mut round: impl FnMut()) {
    measure(case, WARMUP_ROUNDS, ROUNDS, || {
        let before = workload::ran();
        round();
        assert_eq!(workload::ran() - before, PER_ROUND, "a timer did not fire");
    });
}

fn floor(case: &Case) {
    let mut heap = TimerHeap::new().expect("poller");
    checked(case, || {
        let due = Instant::now() - PAST;
        for i in 0..PER_ROUND {
            heap.push(due, move || add(i));
        }
        heap.run().expect("run");
    });
}

fn oneloop(case: &Case) {
    let lp = new_loop(case.variant());
    checked(case, || {
        let due = lp.time() - PAST;
        for i in 0..PER_ROUND {
            let _ = lp.call_at(due, move || add(i)).expect("call_at");
        }
        // One iteration: it moves the due timers to the ready queue and
        // runs them (LC-05: `stop` first makes `run_forever` one iteration).
        lp.stop();
        lp.run_forever().expect("run_forever");
    });
}

#[cfg(any(
    feature = "tokio",
    feature = "smol",
    feature = "glib",
    feature = "calloop"
))]
mod hosts {
    #[cfg(feature = "smol")]
    use std::time::Instant;

    #[cfg(any(feature = "tokio", feature = "smol"))]
    use super::PAST;
    use super::{Case, PER_ROUND, add, checked};

    #[cfg(feature = "tokio")]
    pub(super) fn tokio(case: &Case) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        checked(case, || {
            let local = tokio::task::LocalSet::new();
            let due = tokio::time::Instant::now() - PAST;
            for i in 0..PER_ROUND {
                local.spawn_local(async move {
                    tokio::time::sleep_until(due).await;
                    add(i);
                });
            }
            rt.block_on(local);
        });
    }

    #[cfg(feature = "smol")]
    pub(super) fn smol(case: &Case) {
        let ex = async_executor::LocalExecutor::new();
        checked(case, || {
            let due = Instant::now() - PAST;
            let tasks: Vec<_> = (0..PER_ROUND)
                .map(|i| {
                    ex.spawn(async move {
                        async_io::Timer::at(due).await;
                        add(i);
                    })
                })
                .collect();
            async_io::block_on(ex.run(futures::future::join_all(tasks)));
        });
    }

    #[cfg(feature = "glib")]
    pub(super) fn glib(case: &Case) {
        let ctx = glib::MainContext::default();
        let _owner = ctx.acquire().expect("acquire the default context");
        checked(case, || {
            let start = crate::workload::ran();
            for i in 0..PER_ROUND {
                glib::timeout_add_local_once(std::time::Duration::ZERO, move || add(i));
            }
            while crate::workload::ran() - start < PER_ROUND {
                ctx.iteration(true);
            }
        });
    }

    #[cfg(feature = "calloop")]
    pub(super) fn calloop(case: &Case) {
        use calloop::timer::{TimeoutAction, Timer};

        let mut ev: calloop::EventLoop<'static, ()> =
            calloop::EventLoop::try_new().expect("event loop");
        let handle = ev.handle();
        checked(case, || {
            let start = crate::workload::ran();
            for i in 0..PER_ROUND {
                handle
                    .insert_source(Timer::immediate(), move |_, _, _| {
                        add(i);
                        TimeoutAction::Drop
                    })
                    .expect("insert timer");
            }
            while crate::workload::ran() - start < PER_ROUND {
                ev.dispatch(None, &mut ()).expect("dispatch");
            }
        });
    }
}
