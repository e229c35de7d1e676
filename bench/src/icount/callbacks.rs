//! `call_soon`: a batch of [`BATCH`] callbacks queued, then one iteration
//! runs them ([`workload::call_soon_batch`]), per callback. The hosts' own
//! deferred calls on the same batch: tokio `spawn_local` (a `LocalSet`
//! run by `block_on`), async-executor `LocalExecutor::spawn` (ticked until
//! idle), glib `idle_add_local_once` (iterated until idle), calloop
//! `insert_idle` (one dispatch); the floor is a `VecDeque` of boxed
//! closures ([`Queue`]).

use super::{Case, Run, WARMUP_ROUNDS, case, loops, measure, new_loop};
use crate::floor::Queue;
use crate::workload::{self, BATCH, add};

const WORKLOAD: &str = "call_soon";
const ROUNDS: u64 = 10;

/// The cases of this workload in this build.
pub fn cases() -> Vec<Case> {
    let c = |variant: &str, run| case(WORKLOAD, variant, ROUNDS * BATCH, true, Run::InProcess(run));
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

/// Run `round` as a measured case whose every round must run the whole batch.
fn checked(case: &Case, mut round: impl FnMut()) {
    measure(case, WARMUP_ROUNDS, ROUNDS, || {
        let before = workload::ran();
        round();
        assert_eq!(workload::ran() - before, BATCH, "a callback was lost");
    });
}

fn floor(case: &Case) {
    let mut q = Queue::default();
    checked(case, || {
        for i in 0..BATCH {
            q.push(move || add(i));
        }
        q.run_all();
    });
}

fn oneloop(case: &Case) {
    let lp = new_loop(case.variant());
    checked(case, || workload::call_soon_batch(&lp, BATCH));
}

#[cfg(any(
    feature = "tokio",
    feature = "smol",
    feature = "glib",
    feature = "calloop"
))]
mod hosts {
    use super::{BATCH, Case, add, checked};

    #[cfg(feature = "tokio")]
    pub(super) fn tokio(case: &Case) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        checked(case, || {
            let local = tokio::task::LocalSet::new();
            for i in 0..BATCH {
                local.spawn_local(async move { add(i) });
            }
            rt.block_on(local);
        });
    }

    #[cfg(feature = "smol")]
    pub(super) fn smol(case: &Case) {
        let ex = async_executor::LocalExecutor::new();
        checked(case, || {
            for i in 0..BATCH {
                ex.spawn(async move { add(i) }).detach();
            }
            while ex.try_tick() {}
        });
    }

    #[cfg(feature = "glib")]
    pub(super) fn glib(case: &Case) {
        // `idle_add_local_once` attaches to the global default context.
        let ctx = glib::MainContext::default();
        let _owner = ctx.acquire().expect("acquire the default context");
        checked(case, || {
            for i in 0..BATCH {
                glib::idle_add_local_once(move || add(i));
            }
            while ctx.iteration(false) {}
        });
    }

    #[cfg(feature = "calloop")]
    pub(super) fn calloop(case: &Case) {
        let mut ev: calloop::EventLoop<'static, ()> =
            calloop::EventLoop::try_new().expect("event loop");
        let handle = ev.handle();
        checked(case, || {
            for i in 0..BATCH {
                handle.insert_idle(move |_| add(i));
            }
            ev.dispatch(Some(std::time::Duration::ZERO), &mut ())
                .expect("dispatch");
        });
    }
}
