//! A thread that exits with a loop still open: its thread-locals close it.
//! (In a file of its own: the bug this guards against aborted the process.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// On a thread of its own: `before`, then a loop from `make` runs once
/// and gets a task that never ends, then `keep` stores the loop somewhere
/// thread-local and the thread exits. The task (so the loop) must be
/// dropped with the thread, and the process must not abort.
fn a_loop_kept_by_the_thread_closes_with_it(
    before: fn(),
    make: fn() -> oneloop::Loop,
    keep: fn(oneloop::Loop),
) {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    std::thread::spawn(move || {
        before();
        let lp = make();
        lp.run_until_complete(async {}).unwrap();
        let guard = SetOnDrop(flag);
        lp.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        })
        .unwrap();
        keep(lp);
    })
    .join()
    .unwrap();
    assert!(
        dropped.load(Ordering::Acquire),
        "the pending task outlived its thread"
    );
}

/// asyncio's worker-thread idiom, `new_event_loop`, `set_event_loop`, then
/// run: the current loop, held by a thread-local, is the last handle when
/// the thread exits, and dropping it closes the loop (pending tasks
/// dropped) without touching a thread-local that was already destroyed,
/// which aborted the process ("thread local panicked on drop").
#[test]
fn a_thread_exiting_with_its_current_loop_set_closes_it() {
    a_loop_kept_by_the_thread_closes_with_it(
        || (),
        || {
            let lp = oneloop::new_event_loop().unwrap();
            oneloop::set_event_loop(Some(lp.clone()));
            lp
        },
        drop,
    );
}

thread_local! {
    /// A user's own thread-local holding a loop.
    static MINE: std::cell::RefCell<Option<oneloop::Loop>> = const { std::cell::RefCell::new(None) };
}

/// The same with a loop kept in the user's own thread-local, first used
/// before the loop ran (so destroyed after oneloop's own thread-locals):
/// closing it from that destructor must not touch them.
#[test]
fn a_loop_in_a_users_thread_local_closes_when_the_thread_exits() {
    a_loop_kept_by_the_thread_closes_with_it(
        || MINE.with(|_| ()),
        || oneloop::Loop::new().unwrap(),
        |lp| MINE.with(|m| *m.borrow_mut() = Some(lp)),
    );
}
