//! `CB`: callbacks — FIFO, never inline, never overlapping, cancellable
//! (PEP 3156 §Basic Callbacks, §Mutual Exclusion of Callbacks, §Handles).

use std::cell::Cell;
use std::marker::PhantomData;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::thread::ThreadId;
use std::time::Duration;

use oneloop::{Handle, Loop, LoopFuture, RemoteLoop, Task, TimerHandle};

use super::{push, trace};

use crate::spec::Caps;
use crate::{Env, Log};

/// CB-01 (MUST): `call_soon` callbacks run in the order they were
/// registered (FIFO), each exactly once.
pub fn call_soon_runs_fifo_once(env: &Env) {
    let lp = env.lp();
    let t = trace();
    for i in 0..100 {
        lp.call_soon(push(&t, i)).unwrap();
    }
    env.run_briefly();
    env.run_briefly();
    assert_eq!(
        *t.borrow(),
        (0..100).collect::<Vec<_>>(),
        "call_soon callbacks out of FIFO order, lost or repeated"
    );
}

/// CB-02 (MUST): `call_soon` never runs the callback inside the call; it
/// runs after `call_soon` returns, once control is back in the loop.
pub fn call_soon_never_runs_inside_call(env: &Env) {
    let lp = env.lp();
    let t = trace();
    lp.call_soon(push(&t, "from outside")).unwrap();
    assert!(
        t.borrow().is_empty(),
        "call_soon ran the callback inside the call"
    );
    lp.call_soon({
        let lp = lp.clone();
        let t = t.clone();
        move || {
            t.borrow_mut().push("outer start");
            lp.call_soon(push(&t, "inner")).unwrap();
            t.borrow_mut().push("outer end");
        }
    })
    .unwrap();
    env.run_briefly();
    env.run_briefly();
    assert_eq!(
        *t.borrow(),
        ["from outside", "outer start", "outer end", "inner"],
        "a callback queued from a callback must run after it returns"
    );
}

thread_local! {
    /// The callback running on this thread, if any (CB-03).
    static BUSY: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// Overlaps seen, and the kinds of callback that ran (CB-03).
    static SEEN: std::cell::RefCell<(Vec<String>, Vec<&'static str>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` as one callback of kind `what`, recording an overlap if another
/// callback is running on this thread. Thread-local, so that a `Send`
/// closure (a threadsafe callback) can take part.
fn exclusive(what: &'static str, f: impl FnOnce()) {
    if let Some(other) = BUSY.with(|b| b.get()) {
        SEEN.with(|s| {
            s.borrow_mut()
                .0
                .push(format!("{what} started while {other} was running"))
        });
    }
    BUSY.with(|b| b.set(Some(what)));
    f();
    BUSY.with(|b| b.set(None));
    SEEN.with(|s| s.borrow_mut().1.push(what));
}

/// CB-03 (MUST): callbacks never overlap: no callback of any kind (soon,
/// timer, threadsafe, fd, future-done, task step) starts while another runs,
/// even if the running callback iterates the host loop.
pub fn callbacks_never_overlap(env: &Env) {
    SEEN.with(|s| *s.borrow_mut() = Default::default());
    let lp = env.lp();
    let fut: LoopFuture<()> = lp.create_future();
    let (a, b) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &b, b"x").unwrap();
    let fd = env.has(Caps::FD);
    let host = env.shared_host();

    // The first callback makes every other kind of work ready, then (on a
    // host) iterates the host: nothing of oneloop may run inside it.
    lp.call_soon({
        let lp = lp.clone();
        let a = Rc::new(a);
        move || {
            exclusive("first", || {
                lp.call_soon(|| exclusive("soon", || {})).unwrap();
                lp.call_later(Duration::ZERO, || exclusive("timer", || {}))
                    .unwrap();
                lp.call_soon_threadsafe(|| exclusive("threadsafe", || {}))
                    .unwrap();
                fut.add_done_callback(|_| exclusive("future done", || {}));
                fut.set_result(()).unwrap();
                if fd {
                    let lp2 = lp.clone();
                    let a2 = a.clone();
                    lp.add_reader(&*a, move || {
                        exclusive("fd", || {});
                        lp2.remove_reader(&*a2);
                    })
                    .unwrap();
                }
                let _task: Task<()> = lp
                    .spawn(async move {
                        exclusive("task step", || {});
                        super::yield_now().await;
                        exclusive("task step", || {});
                    })
                    .unwrap();
                if let Some(host) = &host {
                    for _ in 0..3 {
                        host.iterate(false);
                    }
                }
            });
        }
    })
    .unwrap();
    let mut want = vec![
        "first",
        "soon",
        "timer",
        "threadsafe",
        "future done",
        "task step",
        "task step",
    ];
    if fd {
        want.push("fd");
    }
    let n = want.len();
    env.run_until_true(|| SEEN.with(|s| s.borrow().1.len()) >= n);
    let (overlaps, mut got) = SEEN.with(|s| s.borrow().clone());
    got.sort();
    want.sort();
    assert!(overlaps.is_empty(), "callbacks overlapped: {overlaps:?}");
    assert_eq!(got, want, "every kind of callback ran, once each");
}

/// CB-04 (SHOULD): a callback that keeps re-queueing itself cannot starve
/// I/O or due timers: work queued during an iteration runs only after the
/// next poll.
///
/// The spinning callback makes an fd readable on its 100th run; the loop
/// must dispatch it by the 101st: one poll between the two. Guest mode
/// polls on its I/O thread, concurrently with the host thread's ticks, so
/// there the readiness arrives a few ticks later, by thread timing; it must
/// arrive, not by a fixed spin.
pub fn requeueing_callback_cannot_starve(env: &Env) {
    const LIMIT: u32 = 1_000_000;
    const WRITE_AT: u32 = 100;
    let lp = env.lp();
    let spins = Rc::new(Cell::new(0u32));
    let timer_at = Rc::new(Cell::new(None));
    let io_at = Rc::new(Cell::new(None));
    let (a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    if env.has(Caps::FD) {
        let (io_at, spins, lp2) = (io_at.clone(), spins.clone(), lp.clone());
        let a = Rc::new(a);
        let a2 = a.clone();
        lp.add_reader(&*a, move || {
            io_at.set(Some(spins.get()));
            lp2.remove_reader(&*a2);
        })
        .unwrap();
    } else {
        io_at.set(Some(WRITE_AT + 1));
    }
    lp.call_later(Duration::from_millis(10), {
        let (timer_at, spins) = (timer_at.clone(), spins.clone());
        move || timer_at.set(Some(spins.get()))
    })
    .unwrap();
    let done = {
        let (timer_at, io_at) = (timer_at.clone(), io_at.clone());
        move || timer_at.get().is_some() && io_at.get().is_some()
    };
    let spin: Rc<dyn Fn()> = Rc::new({
        let spins = spins.clone();
        move || {
            spins.set(spins.get() + 1);
            if spins.get() == WRITE_AT {
                std::io::Write::write_all(&mut &*b, b"x").unwrap();
            }
        }
    });
    fn again(lp: Loop, spin: Rc<dyn Fn()>, go_on: Rc<dyn Fn() -> bool>) {
        spin();
        if go_on() {
            let lp2 = lp.clone();
            lp.call_soon(move || again(lp2, spin, go_on)).unwrap();
        }
    }
    let go_on: Rc<dyn Fn() -> bool> = {
        let (spins, done) = (spins.clone(), done.clone());
        Rc::new(move || spins.get() < LIMIT && !done())
    };
    lp.call_soon({
        let lp2 = lp.clone();
        move || again(lp2, spin, go_on)
    })
    .unwrap();
    env.run_until_true({
        let spins = spins.clone();
        move || done() || spins.get() >= LIMIT
    });
    assert!(
        timer_at.get().is_some(),
        "a due timer never ran while a callback kept re-queueing itself ({LIMIT} times)"
    );
    let io_at = io_at.get().expect(
        "a ready fd was never dispatched while a callback kept re-queueing itself (1e6 times)",
    );
    assert!(
        io_at >= WRITE_AT,
        "the reader ran before its fd was readable (at spin {io_at})"
    );
    if !env.has(Caps::GUEST) {
        assert!(
            io_at <= WRITE_AT + 1,
            "the fd made readable by spin {WRITE_AT} was dispatched only at spin {io_at}: \
             iterations ran without a poll between them"
        );
    }
}

/// CB-05 (MUST): `handle.cancel()` before the callback runs prevents the
/// call, including from an earlier callback of the same batch; cancelling
/// after the run, or twice, does nothing.
pub fn cancelled_handle_never_runs(env: &Env) {
    let lp = env.lp();
    let t = trace();
    let later: Rc<Cell<Option<Handle>>> = Rc::new(Cell::new(None));
    lp.call_soon({
        let (t, later) = (t.clone(), later.clone());
        move || {
            t.borrow_mut().push("a");
            if let Some(h) = later.take() {
                h.cancel();
                later.set(Some(h));
            }
        }
    })
    .unwrap();
    later.set(Some(lp.call_soon(push(&t, "b (cancelled by a)")).unwrap()));
    let c = lp.call_soon(push(&t, "c")).unwrap();
    let d = lp.call_soon(push(&t, "d (cancelled)")).unwrap();
    d.cancel();
    d.cancel();
    let timer: TimerHandle = lp
        .call_later(Duration::ZERO, push(&t, "timer (cancelled)"))
        .unwrap();
    timer.cancel();
    env.run_briefly();
    env.run_briefly();
    c.cancel();
    c.cancel();
    env.run_briefly();
    assert_eq!(
        *t.borrow(),
        ["a", "c"],
        "cancelled callbacks ran, or others were lost"
    );
    let b = later.take().unwrap();
    assert!(
        b.cancelled() && d.cancelled() && timer.cancelled(),
        "cancelled() after cancel()"
    );
    assert!(!c.cancelled(), "cancelling after the run marks nothing");
}

struct Probe<T>(PhantomData<T>);
trait IsSend {
    fn is_send(&self) -> bool {
        true
    }
}
impl<T: Send> IsSend for Probe<T> {}
// The fallbacks are picked only when the auto trait is missing.
#[allow(dead_code)]
trait NotSend {
    fn is_send(&self) -> bool {
        false
    }
}
impl<T> NotSend for &Probe<T> {}
trait IsSync {
    fn is_sync(&self) -> bool {
        true
    }
}
impl<T: Sync> IsSync for Probe<T> {}
#[allow(dead_code)]
trait NotSync {
    fn is_sync(&self) -> bool {
        false
    }
}
impl<T> NotSync for &Probe<T> {}

/// CB-06 (MUST): only `call_soon_threadsafe` may be used from another
/// thread. oneloop enforces it statically: `Loop`, `Handle`, `TimerHandle`,
/// `LoopFuture` and `Task` are `!Send`, and `RemoteLoop` is `Send + Sync`.
///
/// That holds only if the loop keeps its side of it: everything it runs
/// (callbacks, timers, done-callbacks, task steps, fd callbacks, and
/// `call_soon_threadsafe` callbacks posted from another thread) runs on the
/// loop's own thread, the thread that runs or iterates it, where the `!Send`
/// handles those callbacks capture live. A backend that dispatched on a
/// helper thread, or a threadsafe call that ran its callback on the calling
/// thread, would hand `!Send` handles to another thread behind the type
/// system's back; this check records where each kind of callback ran, and
/// fails on such a loop.
// The borrows are the auto-ref specialisation itself, not noise.
#[allow(clippy::needless_borrow)]
pub fn only_remote_handle_crosses_threads(env: &Env) {
    // The static half. Method resolution picks the `Send` impl when the
    // bound holds and falls back to the auto-ref'd one otherwise: a
    // run-time view of auto traits (its own teeth: the unit tests below).
    let not_send = [
        ("Loop", (&Probe::<Loop>(PhantomData)).is_send()),
        ("Handle", (&Probe::<Handle>(PhantomData)).is_send()),
        (
            "TimerHandle",
            (&Probe::<TimerHandle>(PhantomData)).is_send(),
        ),
        (
            "LoopFuture<u32>",
            (&Probe::<LoopFuture<u32>>(PhantomData)).is_send(),
        ),
        ("Task<u32>", (&Probe::<Task<u32>>(PhantomData)).is_send()),
    ];
    for (name, send) in not_send {
        assert!(
            !send,
            "{name} is Send: it could be used from another thread"
        );
    }
    assert!(
        (&Probe::<RemoteLoop>(PhantomData)).is_send()
            && (&Probe::<RemoteLoop>(PhantomData)).is_sync(),
        "RemoteLoop must be Send + Sync"
    );

    // The loop's half: where every kind of callback runs.
    let lp = env.lp();
    let loop_thread = std::thread::current().id();
    let ran: Log<(&'static str, ThreadId)> = Log::new();
    let at = |what: &'static str| {
        let ran = ran.clone();
        move || ran.push((what, std::thread::current().id()))
    };
    let mut want = vec!["call_soon", "call_later", "future done-callback"];
    lp.call_soon(at("call_soon")).expect("call_soon");
    lp.call_later(Duration::from_millis(1), at("call_later"))
        .expect("call_later");
    let fut: LoopFuture<()> = lp.create_future();
    let done = at("future done-callback");
    fut.add_done_callback(move |_| done());
    fut.set_result(()).expect("set_result");
    if env.has(Caps::THREADS) {
        want.push("call_soon_threadsafe from another thread");
        let remote = lp.remote();
        let posted = at("call_soon_threadsafe from another thread");
        std::thread::spawn(move || {
            remote
                .call_soon_threadsafe(posted)
                .expect("call_soon_threadsafe from another thread");
        })
        .join()
        .expect("the posting thread");
    }
    let (a, b) = UnixStream::pair().expect("socketpair");
    if env.has(Caps::FD) {
        want.push("fd reader");
        std::io::Write::write_all(&mut &b, b"x").expect("write");
        let a = Rc::new(a);
        let (lp2, a2, reader) = (lp.clone(), a.clone(), at("fd reader"));
        lp.add_reader(&*a, move || {
            reader();
            lp2.remove_reader(&*a2);
        })
        .expect("add_reader");
    }
    let on_loop_thread = |want: &mut Vec<&'static str>| {
        env.run_until_true(|| ran.len() >= want.len());
        let ran = ran.get();
        let mut kinds: Vec<&str> = ran.iter().map(|(what, _)| *what).collect();
        kinds.sort();
        want.sort();
        assert_eq!(&kinds, want, "every kind of callback ran, once each");
        let elsewhere: Vec<&str> = ran
            .iter()
            .filter(|(_, thread)| *thread != loop_thread)
            .map(|(what, _)| *what)
            .collect();
        assert!(
            elsewhere.is_empty(),
            "callbacks ran off the loop's thread, with the !Send handles they hold: {elsewhere:?}"
        );
    };
    on_loop_thread(&mut want);
    drop(b);
    // Task steps last: a loop that polls a task off its thread makes
    // async-task abort the process, so the callbacks above must have
    // failed the check first on such a loop.
    let (first_step, second_step) = (at("task step"), at("task step after a wake-up"));
    let _task: Task<()> = lp
        .spawn(async move {
            first_step();
            super::yield_now().await;
            second_step();
        })
        .expect("spawn");
    want.extend(["task step", "task step after a wake-up"]);
    on_loop_thread(&mut want);
}

#[cfg(test)]
mod tests {
    use super::*;

    // The probe itself can fail: it tells Send from !Send types.
    #[test]
    #[allow(clippy::needless_borrow)]
    fn the_auto_trait_probe_tells_send_from_not_send() {
        assert!((&Probe::<u32>(PhantomData)).is_send());
        assert!((&Probe::<std::sync::Arc<u32>>(PhantomData)).is_sync());
        assert!(!(&Probe::<Rc<u32>>(PhantomData)).is_send());
        assert!(!(&Probe::<Cell<u32>>(PhantomData)).is_sync());
    }
}
