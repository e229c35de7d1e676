//! `TK`: tasks — the scheduler runs on every loop, never inline, never
//! nested (PEP 3156 §Tasks, §The Scheduler, §Mutual Exclusion).

use std::cell::Cell;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use oneloop::ErrorKind;

use super::{trace, yield_now};
use crate::Env;

/// TK-01 (MUST): the task scheduler is written only against the public loop
/// interface and runs tasks to completion on this loop (PEP 3156's "litmus
/// test for conforming implementations").
pub fn task_runs_on_every_loop(env: &Env) {
    let lp = env.lp();
    let fut = lp.create_future::<u32>();
    lp.call_soon({
        let fut = fut.clone();
        move || fut.set_result(40).unwrap()
    })
    .unwrap();
    let thread = std::thread::current().id();
    let task = lp
        .spawn({
            let lp = lp.clone();
            async move {
                assert_eq!(
                    std::thread::current().id(),
                    thread,
                    "a task ran off the loop thread"
                );
                let running = oneloop::get_running_loop().expect("get_running_loop in a task");
                assert!(running == lp, "get_running_loop in a task is another loop");
                oneloop::sleep(Duration::from_millis(2)).await?;
                yield_now().await;
                let v = fut.await?;
                Ok::<_, oneloop::Error>(v + 2)
            }
        })
        .unwrap();
    assert_eq!(env.run_until(task).expect("task").expect("task body"), 42);
}

/// TK-02 (MUST): `spawn` (PEP `create_task`) does not run the body inside
/// the call; the first step is queued with `call_soon`.
pub fn spawn_does_not_run_body_inline(env: &Env) {
    let lp = env.lp();
    let t = trace();
    lp.call_soon(super::push(&t, "queued before the task"))
        .unwrap();
    let task = lp
        .spawn({
            let t = t.clone();
            async move { t.borrow_mut().push("task body") }
        })
        .unwrap();
    assert!(
        t.borrow().is_empty(),
        "spawn ran the task body inside the call"
    );
    env.run_until(task).unwrap();
    assert_eq!(
        *t.borrow(),
        ["queued before the task", "task body"],
        "the first step must be queued FIFO"
    );
}

/// TK-03 (MUST): a task is a future: its result or error mirrors what the
/// coroutine returned or raised (a panic becomes `Panicked`), and
/// done-callbacks work.
pub fn task_is_a_future(env: &Env) {
    let lp = env.lp();
    let ok = lp.spawn(async { 5u32 }).unwrap();
    let seen = Rc::new(Cell::new(None));
    ok.add_done_callback({
        let seen = seen.clone();
        move |f| seen.set(Some(f.result().ok()))
    });
    env.run_until_true(|| ok.done());
    env.run_briefly();
    assert_eq!(ok.result().map_err(|e| e.kind()), Ok(5), "a task's result");
    assert_eq!(seen.get(), Some(Some(5)), "a task's done-callback");
    assert!(matches!(ok.exception(), Ok(None)));

    // Awaiting a clone of the task's future observes the output and leaves
    // it in place; awaiting the task itself moves it out (no Clone needed).
    let t = lp.spawn(async { String::from("out") }).unwrap();
    assert_eq!(
        env.run_until(t.as_future().clone()).map_err(|e| e.kind()),
        Ok("out".to_owned()),
        "awaiting the task's future"
    );
    assert_eq!(
        t.result().map_err(|e| e.kind()),
        Ok("out".to_owned()),
        "awaiting a clone of the task's future took its output"
    );
    assert_eq!(
        env.run_until(t).map_err(|e| e.kind()),
        Ok("out".to_owned()),
        "awaiting the task"
    );

    let failing = lp
        .spawn(async {
            if std::hint::black_box(true) {
                panic!("deliberate task panic (TK-03)");
            }
            0u32
        })
        .unwrap();
    env.run_until_true(|| failing.done());
    let reports = env.take_reports();
    assert_eq!(
        reports.len(),
        1,
        "a panicking task step is reported once: {reports:?}"
    );
    assert_eq!(
        failing.result().map_err(|e| e.kind()),
        Err(ErrorKind::Panicked),
        "a panicked task's result"
    );
    assert!(!failing.cancelled());
}

thread_local! {
    /// The task step running on this thread, if any (TK-04).
    static IN_STEP: Cell<Option<u32>> = const { Cell::new(None) };
    static NESTED: Cell<u32> = const { Cell::new(0) };
}

/// Wraps a future so that each poll (one task step) records whether
/// another step was already running.
struct StepProbe<F> {
    id: u32,
    inner: Pin<Box<F>>,
}

impl<F: StdFuture> StdFuture for StepProbe<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if IN_STEP.with(|s| s.get()).is_some() {
            NESTED.with(|n| n.set(n.get() + 1));
        }
        let prev = IN_STEP.with(|s| s.replace(Some(self.id)));
        let out = self.inner.as_mut().poll(cx);
        IN_STEP.with(|s| s.set(prev));
        out
    }
}

/// TK-04 (MUST): task steps never nest: no task is resumed while any task
/// is mid-step on the loop, even when a step wakes another task, completes
/// the future it awaits, or iterates the host loop.
pub fn task_steps_never_nest(env: &Env) {
    NESTED.with(|n| n.set(0));
    let lp = env.lp();
    let ping = lp.create_future::<()>();
    let pong = lp.create_future::<()>();
    let host = env.shared_host();
    let a = lp
        .spawn(StepProbe {
            id: 1,
            inner: Box::pin({
                let (ping, pong) = (ping.clone(), pong.clone());
                async move {
                    // Completing `ping` wakes B from inside this step.
                    ping.set_result(()).unwrap();
                    if let Some(h) = &host {
                        h.iterate(false);
                    }
                    yield_now().await;
                    pong.await.unwrap();
                }
            }),
        })
        .unwrap();
    let b = lp
        .spawn(StepProbe {
            id: 2,
            inner: Box::pin({
                let (ping, pong) = (ping.clone(), pong.clone());
                async move {
                    ping.await.unwrap();
                    pong.set_result(()).unwrap();
                    oneloop::sleep(Duration::from_millis(1)).await.unwrap();
                }
            }),
        })
        .unwrap();
    let c = lp
        .spawn(StepProbe {
            id: 3,
            inner: Box::pin(async {
                for _ in 0..5 {
                    yield_now().await;
                }
            }),
        })
        .unwrap();
    env.run_until(async {
        a.await.unwrap();
        b.await.unwrap();
        c.await.unwrap();
    });
    assert_eq!(
        NESTED.with(|n| n.get()),
        0,
        "a task step started inside another task's step"
    );
}

/// TK-05 (SHOULD): `current_task()` returns the running task inside a task
/// and none inside a plain callback; `all_tasks()` lists only this loop's
/// pending tasks.
pub fn current_task_and_all_tasks(env: &Env) {
    let lp = env.lp();
    let inside = Rc::new(Cell::new(None));
    let gate = lp.create_future::<()>();
    let t1 = lp
        .spawn({
            let (lp, inside, gate) = (lp.clone(), inside.clone(), gate.clone());
            async move {
                inside.set(lp.current_task().map(|t| t.id()));
                gate.await.unwrap();
            }
        })
        .unwrap();
    let t2 = lp
        .spawn({
            let gate = gate.clone();
            async move { gate.await.unwrap() }
        })
        .unwrap();
    let in_callback = Rc::new(Cell::new(Some(0)));
    lp.call_soon({
        let (lp, in_callback) = (lp.clone(), in_callback.clone());
        move || in_callback.set(lp.current_task().map(|t| t.id()))
    })
    .unwrap();
    env.run_briefly();
    env.run_briefly();
    assert_eq!(inside.get(), Some(t1.id()), "current_task() inside a task");
    assert_eq!(
        in_callback.get(),
        None,
        "current_task() inside a plain callback"
    );
    assert_eq!(
        lp.current_task().map(|t| t.id()),
        None,
        "current_task() outside the loop"
    );
    let mut ids: Vec<u64> = lp.all_tasks().iter().map(|t| t.id()).collect();
    ids.sort();
    let mut want = vec![t1.id(), t2.id()];
    want.sort();
    assert_eq!(ids, want, "all_tasks() while both are pending");
    // A task of another loop is not this loop's. An adapter whose loops are
    // one per host context cannot make a second one of its own while this
    // one is open (EM-10): then the other loop is the default one, which
    // is just as foreign to this loop.
    let other = env
        .new_setup()
        .or_else(|_| oneloop::Loop::new().map(crate::Setup::new));
    let other = other.expect("a second loop (the adapter's, or the default one)");
    let foreign = other.lp.spawn(async {}).expect("spawn on a second loop");
    assert!(
        !lp.all_tasks().iter().any(|t| t.id() == foreign.id()),
        "all_tasks() lists another loop's task"
    );
    drop(foreign);
    other.lp.close().expect("close the second loop");
    gate.set_result(()).unwrap();
    env.run_until(async {
        t1.await.unwrap();
        t2.await.unwrap();
    });
    assert!(
        lp.all_tasks().is_empty(),
        "all_tasks() lists finished tasks"
    );
}
