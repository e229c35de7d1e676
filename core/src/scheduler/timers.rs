//! The timer queue: deadlines in order, equal deadlines in scheduling order
//! (D9), cancelled entries removed lazily and compacted in bulk.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::handle::{Callback, State};

/// One pending timer. 32 bytes: the deadline is kept as nanoseconds since the
/// queue's epoch so that the heap stays dense.
struct Entry {
    /// Deadline, nanoseconds after `TimerQueue::epoch`.
    when: u64,
    /// Scheduling order, the tie-break for equal deadlines (D9).
    seq: u64,
    /// The callback, shared with its `TimerHandle`.
    cb: Rc<dyn Callback>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.when, other.seq).cmp(&(self.when, self.seq))
    }
}

/// Pending timers of one loop.
///
/// # Invariants
/// - `cancelled` counts the entries in `heap` whose callback was cancelled
///   while `Scheduled`; it never exceeds `heap.len()`.
/// - When more than half the heap (and at least `COMPACT_MIN` entries) is
///   cancelled, the heap is rebuilt without them, so scheduling and
///   cancelling any number of timers keeps memory proportional to the live
///   ones.
pub(crate) struct TimerQueue {
    /// Min-heap by (deadline, seq).
    heap: BinaryHeap<Entry>,
    /// Cancelled entries still in `heap`.
    cancelled: usize,
    /// Next sequence number.
    seq: u64,
    /// Zero point of the `when` field; a day before the loop was made, so
    /// deadlines in the recent past still keep their order (TM-05).
    epoch: Instant,
}

const COMPACT_MIN: usize = 1024;

impl TimerQueue {
    pub(crate) fn new(now: Instant) -> TimerQueue {
        let epoch = now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now);
        TimerQueue {
            heap: BinaryHeap::new(),
            cancelled: 0,
            seq: 0,
            epoch,
        }
    }

    fn to_nanos(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.epoch);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn to_instant(&self, nanos: u64) -> Instant {
        // Saturates for deadlines centuries away; `Instant + Duration` may
        // overflow, so check.
        self.epoch
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or_else(|| self.epoch + Duration::from_secs(u32::MAX as u64))
    }

    /// Add a timer.
    pub(crate) fn push(&mut self, when: Instant, cb: Rc<dyn Callback>) {
        let when = self.to_nanos(when);
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Entry { when, seq, cb });
    }

    /// Account for a timer cancelled while in the heap.
    pub(crate) fn note_cancelled(&mut self) {
        self.cancelled += 1;
        if self.cancelled > COMPACT_MIN && self.cancelled * 2 > self.heap.len() {
            self.heap.retain(|e| e.cb.state() == State::Scheduled);
            self.cancelled = 0;
        }
    }

    /// Drop cancelled entries at the top, so `peek` sees a live one.
    fn skip_cancelled(&mut self) {
        while let Some(top) = self.heap.peek() {
            if top.cb.state() == State::Scheduled {
                break;
            }
            self.heap.pop();
            self.cancelled = self.cancelled.saturating_sub(1);
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_cancelled();
        self.heap.peek().map(|e| self.to_instant(e.when))
    }

    /// Move every live timer due at `now` to `out`, in deadline order.
    pub(crate) fn pop_due(&mut self, now: Instant, mut out: impl FnMut(Rc<dyn Callback>)) {
        let now = self.to_nanos(now);
        while let Some(top) = self.heap.peek() {
            if top.when > now {
                break;
            }
            let Some(e) = self.heap.pop() else { break };
            if e.cb.state() == State::Scheduled {
                e.cb.set_ready();
                out(e.cb);
            } else {
                self.cancelled = self.cancelled.saturating_sub(1);
            }
        }
    }

    /// Live and cancelled entries held (for tests and debug output).
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drop everything (loop close).
    pub(crate) fn clear(&mut self) -> Vec<Rc<dyn Callback>> {
        self.cancelled = 0;
        std::mem::take(&mut self.heap)
            .into_iter()
            .map(|e| e.cb)
            .collect()
    }
}
