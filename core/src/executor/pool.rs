//! The default executor's own threads: started on demand, up to asyncio's
//! `min(32, cpus + 4)`; each ends after a second without work, and all of
//! them end once the pool is let go of (the loop's `close`) and the queued
//! jobs are done, or are joined by `shutdown_default_executor`.
//!
//! Not a process-wide pool (the `blocking` crate's, say): its idle threads
//! would outlive the loop whose jobs started them.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// A job of [`Executor::execute`](super::Executor::execute).
type Job = Box<dyn FnOnce() + Send>;

/// How long a thread waits for a job before it ends.
const IDLE: Duration = Duration::from_secs(1);

/// The most threads a pool runs at once (asyncio's default `max_workers`).
/// Asked once: `available_parallelism` reads cgroup files on Linux.
fn max_threads() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cpus + 4).min(32)
    })
}

pub(super) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// A job was queued, or the pool closed: for idle threads.
    work: Condvar,
    /// `in_flight` reached zero: for `wait_idle`.
    drained: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Jobs queued or running.
    in_flight: usize,
    /// Threads started and not ended.
    live: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// The threads, to join at shutdown (ended ones are pruned as new
    /// ones start).
    threads: Vec<JoinHandle<()>>,
    /// Let go of: a thread with nothing to do ends at once.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock: a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Pool {
    pub(super) fn new() -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                drained: Condvar::new(),
            }),
        }
    }

    pub(super) fn in_flight(&self) -> usize {
        self.shared.lock().in_flight
    }

    pub(super) fn execute(&self, job: Job) {
        let mut state = self.shared.lock();
        state.queue.push_back(job);
        state.in_flight += 1;
        if state.queue.len() <= state.idle {
            self.shared.work.notify_one();
            return;
        }
        if state.live >= max_threads() {
            // A busy thread takes it when it is done.
            return;
        }
        state.threads.retain(|t| !t.is_finished());
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("oneloop-executor".into())
            .spawn(move || work(&shared));
        match spawned {
            Ok(thread) => {
                state.live += 1;
                state.threads.push(thread);
            }
            // With no thread to take it, the job would wait for ever: drop
            // it instead (a `run_in_executor` future then ends cancelled).
            Err(e) if state.live == 0 => {
                let job = state.queue.pop_back();
                state.in_flight -= 1;
                if state.in_flight == 0 {
                    self.shared.drained.notify_all();
                }
                drop(state);
                tracing::error!(target: "oneloop", "cannot start an executor thread: {e}; the job is dropped");
                drop(job);
            }
            Err(_) => {}
        }
    }

    pub(super) fn wait_idle(&self) {
        let mut state = self.shared.lock();
        while state.in_flight > 0 {
            state = self
                .shared
                .drained
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Let the threads end once the queue is empty, and wait until they
    /// have.
    pub(super) fn shutdown(&self) {
        let threads = {
            let mut state = self.shared.lock();
            state.closed = true;
            self.shared.work.notify_all();
            std::mem::take(&mut state.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    /// Let the threads end once the queue is empty, without waiting (as
    /// asyncio's `close` shuts its executor down with `wait=False`).
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

/// A thread of the pool: run jobs until there is none for [`IDLE`], or
/// none at all once the pool is closed.
fn work(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            drop(state);
            // `run_in_executor` catches its jobs' panics; another caller's
            // must not end the thread with the count left wrong.
            let _ = catch_unwind(AssertUnwindSafe(job));
            state = shared.lock();
            state.in_flight -= 1;
            if state.in_flight == 0 {
                shared.drained.notify_all();
            }
            continue;
        }
        if state.closed {
            break;
        }
        state.idle += 1;
        let (guard, waited) = shared
            .work
            .wait_timeout(state, IDLE)
            .unwrap_or_else(|e| e.into_inner());
        state = guard;
        state.idle -= 1;
        if waited.timed_out() && state.queue.is_empty() {
            break;
        }
    }
    state.live -= 1;
}
