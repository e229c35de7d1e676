//! The floors: the least a loop could do for each workload, in plain Rust.
//! A loop's cost is quoted as a multiple of these, measured in the same run.
//!
//! - [`Queue`]: a `VecDeque<Box<dyn FnOnce()>>`, the floor of `call_soon`.
//! - [`TimerHeap`]: a `BinaryHeap` of deadlines with a `polling` wait, the
//!   floor of timers.
//! - [`Inbox`]: a mutex-guarded queue plus an eventfd wake sent only when the
//!   queue goes from empty to non-empty, the floor of `call_soon_threadsafe`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use polling::{Events, Poller};

/// The floor of `call_soon`: a FIFO of boxed closures.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
///
/// let mut q = oneloop_bench::floor::Queue::default();
/// let seen = Rc::new(Cell::new(0));
/// for i in 1..=3 {
///     let seen = seen.clone();
///     q.push(move || seen.set(seen.get() * 10 + i));
/// }
/// assert_eq!(q.run_all(), 3);
/// assert_eq!(seen.get(), 123);
/// ```
#[derive(Default)]
pub struct Queue {
    queue: VecDeque<Box<dyn FnOnce()>>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.queue.len())
            .finish()
    }
}

impl Queue {
    /// Queue `f`.
    pub fn push(&mut self, f: impl FnOnce() + 'static) {
        self.queue.push_back(Box::new(f));
    }

    /// Run what is queued, in order; returns how many ran.
    pub fn run_all(&mut self) -> usize {
        let mut ran = 0;
        while let Some(f) = self.queue.pop_front() {
            f();
            ran += 1;
        }
        ran
    }
}

/// One timer of [`TimerHeap`].
struct Timer {
    when: Instant,
    seq: u64,
    f: Box<dyn FnOnce()>,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    // Reversed: `BinaryHeap` is a max-heap, the earliest deadline goes first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.when, other.seq).cmp(&(self.when, self.seq))
    }
}

/// The floor of timers: a binary heap of boxed callbacks and an OS poller
/// to sleep until the earliest deadline.
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::{Duration, Instant}};
///
/// let mut timers = oneloop_bench::floor::TimerHeap::new()?;
/// let order = Rc::new(Cell::new(0));
/// let now = Instant::now();
/// for (i, ms) in [(2, 2), (1, 1)] {
///     let order = order.clone();
///     timers.push(now + Duration::from_millis(ms), move || order.set(order.get() * 10 + i));
/// }
/// timers.run()?;
/// assert_eq!(order.get(), 12);
/// assert!(now.elapsed() >= Duration::from_millis(2));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TimerHeap {
    heap: BinaryHeap<Timer>,
    seq: u64,
    poller: Poller,
    events: Events,
}

impl fmt::Debug for TimerHeap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHeap")
            .field("len", &self.heap.len())
            .finish()
    }
}

impl TimerHeap {
    /// An empty queue with its own poller.
    ///
    /// # Errors
    /// If the OS poller cannot be created.
    pub fn new() -> io::Result<TimerHeap> {
        Ok(TimerHeap {
            heap: BinaryHeap::new(),
            seq: 0,
            poller: Poller::new()?,
            events: Events::new(),
        })
    }

    /// Run `f` at `when`.
    pub fn push(&mut self, when: Instant, f: impl FnOnce() + 'static) {
        self.seq += 1;
        self.heap.push(Timer {
            when,
            seq: self.seq,
            f: Box::new(f),
        });
    }

    /// Timers held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no timer is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Run every timer at its deadline, never before, sleeping in the
    /// poller in between; returns when the heap is empty.
    ///
    /// # Errors
    /// If the poller fails.
    pub fn run(&mut self) -> io::Result<()> {
        while let Some(top) = self.heap.peek() {
            let now = Instant::now();
            if top.when > now {
                // A wake before the deadline (the poller's rounding) only
                // goes round again: never early.
                let wait = top.when - now;
                self.events.clear();
                self.poller.wait(&mut self.events, Some(wait))?;
                continue;
            }
            while let Some(top) = self.heap.peek() {
                if top.when > now {
                    break;
                }
                if let Some(t) = self.heap.pop() {
                    (t.f)();
                }
            }
        }
        Ok(())
    }
}

/// Callbacks posted to an [`Inbox`].
type Posted = Vec<Box<dyn FnOnce() + Send>>;

/// The floor of `call_soon_threadsafe`: a mutex-guarded queue, and an
/// eventfd wake (`Poller::notify`) sent only when the queue goes from empty
/// to non-empty; the consumer takes the whole queue per wake.
///
/// ```
/// use std::sync::Arc;
///
/// let inbox = Arc::new(oneloop_bench::floor::Inbox::new()?);
/// let producer = std::thread::spawn({
///     let inbox = inbox.clone();
///     move || for _ in 0..100 { inbox.post(|| ()).unwrap(); }
/// });
/// let mut events = polling::Events::new();
/// let mut ran = 0;
/// while ran < 100 {
///     ran += inbox.wait_and_run(&mut events)?;
/// }
/// producer.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Inbox {
    queue: Mutex<Posted>,
    poller: Poller,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// An empty inbox with its own poller.
    ///
    /// # Errors
    /// If the OS poller cannot be created.
    pub fn new() -> io::Result<Inbox> {
        Ok(Inbox {
            queue: Mutex::new(Vec::new()),
            poller: Poller::new()?,
        })
    }

    /// Post `f` from any thread.
    ///
    /// # Errors
    /// If the wake cannot be sent.
    pub fn post(&self, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.push(Box::new(f));
            q.len() == 1
        };
        if was_empty {
            self.poller.notify()?;
        }
        Ok(())
    }

    /// Wait for a wake, then run everything posted so far; returns how many
    /// callbacks ran (zero after a wake that raced with an earlier drain).
    /// `events` is the consumer's reused event buffer.
    ///
    /// # Errors
    /// If the poller fails.
    pub fn wait_and_run(&self, events: &mut Events) -> io::Result<usize> {
        events.clear();
        self.poller.wait(events, None)?;
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        let n = batch.len();
        for f in batch {
            f();
        }
        Ok(n)
    }
}
