//! Guest mode's spec and host driver, for the conformance suite: the
//! plainest host there is, the check's thread with a queue. Its only hook
//! for the guest is "push this job and signal"; it has no fd API, no
//! timers of the guest's, nothing else. Host-native callbacks and timeouts
//! (for the `EM` checks) are its own, kept apart from the guest's jobs.
//!
//! A fixture module of the conformance suite, compiled into the guest
//! crate's `tests/conformance.rs` (`#[path]`), with its dependencies.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use oneloop::Loop;
use oneloop_conformance::{
    AdapterSpec, Caps, GuestDriver, GuestEnd, GuestMain, Harness, HostDriver, Setup,
};
use oneloop_guest::Job;

/// The queue other threads post the guest's jobs to.
#[derive(Default)]
pub(crate) struct JobQueue {
    jobs: Mutex<VecDeque<Job>>,
    posted: Condvar,
}

impl JobQueue {
    /// The host hook: push and signal; never runs the job here.
    pub(crate) fn hook(self: &Arc<Self>) -> impl Fn(Job) + Send + Sync + 'static {
        let q = self.clone();
        move |job| {
            q.jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(job);
            q.posted.notify_one();
        }
    }

    /// Take the jobs queued so far, waiting up to `block` for one.
    fn take(&self, block: Option<Duration>) -> VecDeque<Job> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.is_empty()
            && let Some(block) = block
        {
            jobs = self
                .posted
                .wait_timeout(jobs, block)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::take(&mut *jobs)
    }
}

/// A host-native callback.
type Native = Box<dyn FnOnce()>;

/// The host of one check: the check's thread, its queue, and its own
/// native callbacks and timeouts.
pub(crate) struct QueueHost {
    queue: Arc<JobQueue>,
    native: RefCell<VecDeque<Native>>,
    timeouts: RefCell<Vec<(Instant, Native)>>,
    quit: Cell<bool>,
    /// The last guest run started through [`GuestDriver`].
    run: Rc<RefCell<Option<oneloop_guest::GuestRun>>>,
}

/// The longest one blocking iteration waits: the host has nothing but its
/// queue to wake it, so bound the wait for the suite's own deadlines.
const MAX_BLOCK: Duration = Duration::from_millis(50);

impl QueueHost {
    pub(crate) fn new(queue: Arc<JobQueue>) -> QueueHost {
        QueueHost {
            queue,
            native: RefCell::new(VecDeque::new()),
            timeouts: RefCell::new(Vec::new()),
            quit: Cell::new(false),
            run: Rc::default(),
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.timeouts.borrow().iter().map(|(at, _)| *at).min()
    }

    /// Run the native callbacks and due timeouts queued so far.
    fn run_native(&self) -> bool {
        let mut ran = false;
        let now = Instant::now();
        let due: Vec<Box<dyn FnOnce()>> = {
            let mut timeouts = self.timeouts.borrow_mut();
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut *timeouts)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            *timeouts = later;
            due.into_iter().map(|(_, f)| f).collect()
        };
        for f in due {
            f();
            ran = true;
        }
        let batch: Vec<Box<dyn FnOnce()>> = self.native.borrow_mut().drain(..).collect();
        for f in batch {
            f();
            ran = true;
        }
        ran
    }
}

impl HostDriver for QueueHost {
    fn iterate(&self, may_block: bool) -> bool {
        let mut ran = self.run_native();
        let block = (may_block && !ran && self.native.borrow().is_empty()).then(|| {
            let until_timeout = self
                .next_timeout()
                .map_or(MAX_BLOCK, |at| at.saturating_duration_since(Instant::now()));
            until_timeout.min(MAX_BLOCK)
        });
        for job in self.queue.take(block) {
            job.run();
            ran = true;
        }
        ran | self.run_native()
    }

    fn post(&self, f: Box<dyn FnOnce()>) {
        self.native.borrow_mut().push_back(f);
    }

    fn add_timeout(&self, after: Duration, f: Box<dyn FnOnce()>) {
        self.timeouts.borrow_mut().push((Instant::now() + after, f));
    }

    fn iterate_nested(&self, until: &dyn Fn() -> bool, limit: Duration) {
        let start = Instant::now();
        while !until() && !self.quit.get() && start.elapsed() < limit {
            let left = limit.saturating_sub(start.elapsed());
            self.run_native();
            for job in self.queue.take(Some(left.min(Duration::from_millis(5)))) {
                job.run();
            }
        }
    }

    fn quit(&self) {
        self.quit.set(true);
    }

    fn guest(&self) -> Option<&dyn GuestDriver> {
        Some(self)
    }
}

impl GuestDriver for QueueHost {
    fn start_run(&self, main: GuestMain, done: Box<dyn FnOnce(GuestEnd)>) -> oneloop::Result<Loop> {
        let slot = self.run.clone();
        let run = oneloop_guest::start_guest_run(self.queue.hook(), main, move |outcome| {
            let cleaned_up = slot.borrow().as_ref().is_some_and(|r| r.is_finished());
            done(GuestEnd {
                outcome,
                cleaned_up,
            });
        })?;
        let lp = run.event_loop().clone();
        *self.run.borrow_mut() = Some(run);
        Ok(lp)
    }
}

fn setup() -> oneloop::Result<Setup> {
    let queue = Arc::new(JobQueue::default());
    let lp = oneloop_guest::new_loop(queue.hook())?;
    Ok(Setup::with_host(lp, QueueHost::new(queue)))
}

/// The suite on guest mode, hosted by a thread with a queue.
pub(crate) fn harness() -> Harness {
    // What the backend declares (its I/O thread waits on a timerfd on Linux).
    let resolution = {
        let lp = setup().expect("a guest loop").lp;
        let r = lp.clock_resolution();
        lp.close().expect("close");
        r
    };
    Harness::new(AdapterSpec {
        name: "guest (queue host)",
        setup,
        caps: Caps::ALL_BUT_HOST.union(Caps::HOST).union(Caps::GUEST),
        clock_resolution: resolution,
        divergences: &[],
        main_thread: false,
    })
}
