//! The timer queue: deadlines in order, equal deadlines in scheduling order
//! (D9), cancelled entries removed lazily and compacted in bulk.
//!
//! # Structure
//!
//! A binary heap of a million timers loses to tokio's wheel: each pop walks
//! twenty levels, the lower ones cache misses (PERFORMANCE.md). So the queue
//! is a one-level timing wheel in front of two heaps, exact to the
//! nanosecond (the wheel only decides *where* an entry waits, never *when*
//! it fires):
//!
//! - time is cut into slots of `2^SHIFT` ns (262 µs); `cur_slot` is the
//!   slot the queue is working through;
//! - `current`: a min-heap by (deadline, seq) of every entry whose slot is
//!   `<= cur_slot`: the front of the queue, overdue deadlines included;
//! - `wheel[s % SLOTS]`: the entries of each slot `s` in
//!   `cur_slot < s < cur_slot + SLOTS` (the next 268 ms), unsorted;
//!   `occupied` has a bit per non-empty bucket;
//! - `far`: a min-heap of the entries that were further out when pushed.
//!
//! Pushing a near deadline is a `Vec::push`. When `current` runs dry the
//! next slot (the first occupied bucket, or the far heap's first slot if
//! earlier) becomes current: its bucket is heapified in O(k) and the far
//! entries of that slot join it. The loop therefore pops from a heap of one
//! slot's timers, which stays in cache.
//!
//! # Invariants
//! - Every entry of `current` has slot `<= cur_slot`; every entry of `far`
//!   has slot `> cur_slot`; every entry of `wheel[i]` has a slot `s` with
//!   `cur_slot < s < cur_slot + SLOTS` and `s % SLOTS == i`, and bit `i` of
//!   `occupied` is set exactly when `wheel[i]` is non-empty. Slots grow with
//!   deadlines, so the top of `current`, when there is one, is the earliest
//!   entry of the whole queue, and entries with equal deadlines always sit
//!   in the same structure, where the heap orders them by `seq` (D9).
//! - `cur_slot` only moves forward while entries are held, and only to the
//!   next occupied slot, so it never skips an entry.
//! - `len` counts the entries held, live or cancelled.
//! - `cancelled` counts the timers cancelled while `Scheduled` since the
//!   last compaction, less the cancelled entries dropped from the top of
//!   `current`: an estimate of the cancelled entries held, never below it.
//!   It may be above: `pop_due` hands entries out without reading their
//!   callbacks, so a cancelled entry that falls due leaves uncounted, and a
//!   due timer cancelled before it runs is counted. When it passes half of
//!   `len` (and `COMPACT_MIN`), every structure is rebuilt without the
//!   cancelled entries and it restarts at zero. So scheduling and
//!   cancelling any number of timers keeps memory proportional to the live
//!   ones, and since a compaction (`O(len)`) follows at least `len / 2`
//!   cancels, its cost is amortised `O(1)` per cancel, whatever the error
//!   of the estimate.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::callback::{Callback, State};

/// One pending timer. 32 bytes: the deadline is kept as nanoseconds since the
/// queue's epoch so that the heaps and buckets stay dense.
struct Entry {
    /// Deadline, nanoseconds after `TimerQueue::epoch`.
    when: u64,
    /// Scheduling order, the tie-break for equal deadlines (D9).
    seq: u64,
    /// The callback, shared with its `TimerHandle`.
    cb: Rc<dyn Callback>,
}

impl Entry {
    fn slot(&self) -> u64 {
        self.when >> SHIFT
    }

    fn is_live(&self) -> bool {
        self.cb.state() == State::Scheduled
    }
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

/// A slot is `2^SHIFT` ns: 262 µs.
const SHIFT: u32 = 18;
/// Buckets in the wheel: with `SHIFT`, the wheel spans 268 ms.
const SLOTS: u64 = 1024;
/// Words of the `occupied` bitmap.
const WORDS: usize = (SLOTS / 64) as usize;
/// Compaction waits for at least this many cancelled entries.
const COMPACT_MIN: usize = 1024;
/// A bucket's vector keeps its capacity across reuse up to this many
/// entries (32 KiB), so a burst leaves at most `SLOTS` times that behind;
/// a compaction shrinks a heap's vector unless it is within this much (and
/// 4x) of what it holds.
const KEEP_CAPACITY: usize = 1024;
/// Entries `next_wake` reads at most, looking for deadlines to share a
/// wake-up with.
const SLACK_SCAN: usize = 4096;
/// A bucket's first allocation, in entries.
const MIN_CAPACITY: usize = 32;
/// How far before the loop's creation the queue's epoch lies: 2^62 ns, 146
/// years, a quarter of the `u64` range of `Entry::when`.
const EPOCH_BACK: u64 = 1 << 62;

/// Pending timers of one loop. See the module docs for the structure and its
/// invariants.
pub(crate) struct TimerQueue {
    /// Entries of slots `<= cur_slot`, a min-heap by (deadline, seq).
    current: BinaryHeap<Entry>,
    /// Entries of the next `SLOTS - 1` slots, by `slot % SLOTS`.
    wheel: Box<[Vec<Entry>]>,
    /// Bit `i` is set when `wheel[i]` is non-empty.
    occupied: [u64; WORDS],
    /// Entries beyond the wheel when pushed, a min-heap by (deadline, seq).
    far: BinaryHeap<Entry>,
    /// The slot the queue is working through.
    cur_slot: u64,
    /// Entries held, live and cancelled.
    len: usize,
    /// Cancelled entries still held.
    cancelled: usize,
    /// Next sequence number.
    seq: u64,
    /// Wheel buckets `next_wake` has looked at, for the tests.
    #[cfg(test)]
    scanned: usize,
    /// Zero point of the `when` field, `EPOCH_BACK` before the loop was
    /// made: deadlines clamp to it, so every past deadline a program can
    /// derive from the clock keeps its order (TM-05), and 438 years of
    /// future remain (`sleep` caps at 30).
    epoch: Instant,
}

impl TimerQueue {
    pub(crate) fn new(now: Instant) -> TimerQueue {
        // A day back used to be the zero point: deadlines further in the
        // past all became 0 and fired in scheduling order. The monotonic
        // clock starts near boot, so 146 years back is before any deadline
        // of the machine's life; a platform whose `Instant` cannot go that
        // far back gets the furthest of a day or nothing.
        let epoch = now
            .checked_sub(Duration::from_nanos(EPOCH_BACK))
            .or_else(|| now.checked_sub(Duration::from_secs(86_400)))
            .unwrap_or(now);
        let mut q = TimerQueue {
            current: BinaryHeap::new(),
            wheel: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            far: BinaryHeap::new(),
            cur_slot: 0,
            len: 0,
            cancelled: 0,
            seq: 0,
            #[cfg(test)]
            scanned: 0,
            epoch,
        };
        q.cur_slot = q.to_nanos(now) >> SHIFT;
        q
    }

    fn to_nanos(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.epoch);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn to_instant(&self, nanos: u64) -> Instant {
        // `Instant + Duration` is checked in case a platform's `Instant` is
        // narrower than the unix one (64-bit seconds, where neither
        // fallback is reached): half the range is still a century ahead.
        self.epoch
            .checked_add(Duration::from_nanos(nanos))
            .or_else(|| self.epoch.checked_add(Duration::from_nanos(u64::MAX / 2)))
            .unwrap_or(self.epoch)
    }

    /// Add a timer.
    pub(crate) fn push(&mut self, when: Instant, cb: Rc<dyn Callback>) {
        let when = self.to_nanos(when);
        let seq = self.seq;
        self.seq += 1;
        let entry = Entry { when, seq, cb };
        let slot = entry.slot();
        if self.len == 0 {
            // Nothing held: restart the wheel at this deadline.
            self.cur_slot = slot;
        }
        self.len += 1;
        if slot <= self.cur_slot {
            self.current.push(entry);
        } else if slot - self.cur_slot < SLOTS {
            let i = (slot % SLOTS) as usize;
            let bucket = &mut self.wheel[i];
            if bucket.capacity() == 0 {
                // Skip the smallest growth steps: a bucket in use holds a
                // slot's worth of timers.
                bucket.reserve(MIN_CAPACITY);
            }
            bucket.push(entry);
            self.occupied[i / 64] |= 1 << (i % 64);
        } else {
            self.far.push(entry);
        }
    }

    /// Account for a timer cancelled while held.
    pub(crate) fn note_cancelled(&mut self) {
        self.cancelled += 1;
        if self.cancelled > COMPACT_MIN && self.cancelled * 2 > self.len {
            self.compact();
        }
    }

    /// Drop every cancelled entry.
    fn compact(&mut self) {
        self.current.retain(Entry::is_live);
        self.far.retain(Entry::is_live);
        // `retain` keeps the vectors' capacity: a cancelled burst would
        // hold its memory for good. Shrinking here is amortised like the
        // compaction itself, and leaves room to grow back 2x.
        for heap in [&mut self.current, &mut self.far] {
            if heap.capacity() > 4 * heap.len() + KEEP_CAPACITY {
                heap.shrink_to(2 * heap.len());
            }
        }
        let mut len = self.current.len() + self.far.len();
        for (i, bucket) in self.wheel.iter_mut().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            bucket.retain(Entry::is_live);
            if bucket.is_empty() {
                self.occupied[i / 64] &= !(1 << (i % 64));
                if bucket.capacity() > KEEP_CAPACITY {
                    *bucket = Vec::new();
                }
            }
            len += bucket.len();
        }
        self.len = len;
        self.cancelled = 0;
    }

    /// The first occupied bucket after `cur_slot`, as a slot number.
    fn next_wheel_slot(&self) -> Option<u64> {
        let here = (self.cur_slot % SLOTS) as usize;
        // Buckets after `here`, then wrapping round to it (bucket `here`
        // itself is always empty: it would hold slot `cur_slot + SLOTS`).
        let found = self
            .first_occupied(here + 1, SLOTS as usize)
            .or_else(|| self.first_occupied(0, here))?;
        let distance = (found + SLOTS as usize - here) % SLOTS as usize;
        Some(self.cur_slot + distance as u64)
    }

    /// The first set bit of `occupied` in `from..to`.
    fn first_occupied(&self, from: usize, to: usize) -> Option<usize> {
        if from >= to {
            return None;
        }
        let mut w = from / 64;
        let mut word = self.occupied[w] & (!0u64 << (from % 64));
        loop {
            if word != 0 {
                let i = w * 64 + word.trailing_zeros() as usize;
                return (i < to).then_some(i);
            }
            w += 1;
            if w * 64 >= to {
                return None;
            }
            word = self.occupied[w];
        }
    }

    /// The slot that would become current next: the first occupied bucket,
    /// or the far heap's first slot if earlier. `None` when only `current`
    /// holds entries, or nothing does.
    fn next_slot(&self) -> Option<u64> {
        let far = self.far.peek().map(Entry::slot);
        match (self.next_wheel_slot(), far) {
            (Some(w), Some(f)) => Some(w.min(f)),
            (w, f) => w.or(f),
        }
    }

    /// Make `slot` (from `next_slot`) current, with `current` empty: move
    /// its bucket and its far entries into `current`.
    fn advance_to(&mut self, slot: u64) {
        debug_assert!(self.current.is_empty() && slot > self.cur_slot);
        self.cur_slot = slot;
        let i = (slot % SLOTS) as usize;
        if self.occupied[i / 64] & (1 << (i % 64)) != 0 {
            self.occupied[i / 64] &= !(1 << (i % 64));
            // Swap vectors so both keep their capacity: the bucket gets the
            // empty heap's, the heap is built in place in O(k).
            let mut spare = std::mem::take(&mut self.current).into_vec();
            if spare.capacity() > KEEP_CAPACITY {
                spare = Vec::new();
            }
            let bucket = std::mem::replace(&mut self.wheel[i], spare);
            self.current = BinaryHeap::from(bucket);
        }
        while self.far.peek().is_some_and(|e| e.slot() <= slot) {
            if let Some(e) = self.far.pop() {
                self.current.push(e);
            }
        }
    }

    /// Drop cancelled entries at the top of `current`.
    fn skip_cancelled(&mut self) {
        while let Some(top) = self.current.peek() {
            if top.is_live() {
                break;
            }
            self.current.pop();
            self.len -= 1;
            self.cancelled = self.cancelled.saturating_sub(1);
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        // The common case of a loop doing I/O with no timer pending: no
        // scan of the wheel's bitmap (about 100 instructions) on every
        // iteration.
        if self.len == 0 {
            return None;
        }
        loop {
            self.skip_cancelled();
            if let Some(top) = self.current.peek() {
                return Some(self.to_instant(top.when));
            }
            if self.next_wheel_slot().is_some() {
                // Moves at most the wheel's span ahead, to the earliest
                // pending slot: what is pushed before it joins `current`.
                let slot = self.next_slot()?;
                self.advance_to(slot);
                continue;
            }
            // Only far entries: peek without moving `cur_slot` out there, so
            // that near timers pushed meanwhile still go to the wheel.
            while let Some(top) = self.far.peek() {
                if top.is_live() {
                    return Some(self.to_instant(top.when));
                }
                self.far.pop();
                self.len -= 1;
                self.cancelled = self.cancelled.saturating_sub(1);
            }
            return None;
        }
    }

    /// When to wake for the timers: the earliest live deadline, or, with a
    /// `slack`, the latest deadline held that is at most `slack` after it,
    /// so that timers close together share one wake-up. No timer runs
    /// early that way, and none waits more than `slack` past its deadline
    /// (plus the host's own rounding). A deadline already reached at `now`
    /// is returned as it is: the loop is behind, there is nothing to share.
    ///
    /// The search looks at the current slot's heap, the wheel buckets up to
    /// `slack` ahead and the far heap's first entry, and reads at most
    /// `SLACK_SCAN` entries: past that it settles for the latest found,
    /// which is still within `slack`.
    pub(crate) fn next_wake(&mut self, now: Instant, slack: Duration) -> Option<Instant> {
        let first = self.next_deadline()?;
        if slack.is_zero() || first <= now {
            return Some(first);
        }
        let d0 = self.to_nanos(first);
        let limit = d0.saturating_add(u64::try_from(slack.as_nanos()).unwrap_or(u64::MAX));
        let mut wake = d0;
        let mut budget = SLACK_SCAN;
        let mut consider = |entries: &mut dyn Iterator<Item = &Entry>| {
            for e in entries.take(budget) {
                budget -= 1;
                if e.when <= limit && e.when > wake {
                    wake = e.when;
                }
            }
        };
        consider(&mut self.current.iter());
        // Buckets before the earliest deadline's slot hold only earlier
        // deadlines: none can share its wake-up. Starting there matters
        // when only far timers are left and `cur_slot` stayed behind.
        let first_slot = (self.cur_slot + 1).max(d0 >> SHIFT);
        let last_slot = (limit >> SHIFT).min(self.cur_slot + SLOTS - 1);
        for slot in first_slot..=last_slot {
            #[cfg(test)]
            {
                self.scanned += 1;
            }
            let i = (slot % SLOTS) as usize;
            if self.occupied[i / 64] & (1 << (i % 64)) != 0 {
                consider(&mut self.wheel[i].iter());
            }
        }
        consider(&mut self.far.peek().into_iter());
        Some(self.to_instant(wake))
    }

    /// Move every timer due at `now` to `out`, in deadline order. Timers
    /// cancelled but still held are handed out too (their callbacks are
    /// not read here) and do nothing when they run.
    pub(crate) fn pop_due(&mut self, now: Instant, mut out: impl FnMut(Rc<dyn Callback>)) {
        let now = self.to_nanos(now);
        loop {
            while let Some(top) = self.current.peek() {
                if top.when > now {
                    return;
                }
                let Some(e) = self.current.pop() else { break };
                self.len -= 1;
                // The callback is not read here: a timer cancelled meanwhile
                // is skipped when it runs. With a million timers each
                // callback is a cache miss, and this keeps it to one, when
                // the callback runs.
                out(e.cb);
            }
            // `current` is empty; the next slot is due only if it starts by
            // `now` (every deadline in it is at least its start). Nothing
            // held: no bitmap scan (a loop doing I/O with no timer).
            if self.len == 0 {
                return;
            }
            match self.next_slot() {
                Some(slot) if slot << SHIFT <= now => self.advance_to(slot),
                _ => return,
            }
        }
    }

    /// Live and cancelled entries held (for tests and debug output).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Drop everything (loop close).
    pub(crate) fn clear(&mut self) -> Vec<Rc<dyn Callback>> {
        let mut all = Vec::with_capacity(self.len);
        all.extend(std::mem::take(&mut self.current).into_iter().map(|e| e.cb));
        all.extend(std::mem::take(&mut self.far).into_iter().map(|e| e.cb));
        for bucket in self.wheel.iter_mut() {
            all.extend(std::mem::take(bucket).into_iter().map(|e| e.cb));
        }
        self.occupied = [0; WORDS];
        self.len = 0;
        self.cancelled = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::callback::CallbackCell;
    use std::cell::RefCell;
    use std::panic::Location;

    /// A timer whose callback logs `id`.
    fn timer(id: u64, log: &Rc<RefCell<Vec<u64>>>) -> Rc<dyn Callback> {
        let log = log.clone();
        CallbackCell::new_rc(
            move || log.borrow_mut().push(id),
            State::Scheduled,
            Location::caller(),
        )
    }

    /// Deterministic xorshift for the model test.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Against a model (sort by deadline, then scheduling order): random
    /// deadlines from the past to years ahead, many equal ones, random
    /// cancels, and a clock that moves in small and big steps. Every live
    /// timer fires once, in model order, never before `now`; no cancelled
    /// one fires; `next_deadline` is the model's earliest live deadline.
    #[test]
    fn matches_a_sorted_model() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(t0);
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut rng = Rng(0x1234_5678_9abc_def1);
        // (deadline, seq, id, callback) of every timer not yet fired.
        let mut model: Vec<(Instant, u64, u64, Rc<dyn Callback>)> = Vec::new();
        let mut now = t0;
        let mut seq = 0;
        let mut fired = 0;
        for round in 0..400 {
            for _ in 0..rng.below(300) {
                let offset = match rng.below(10) {
                    0 => Duration::from_secs(rng.below(3600 * 24 * 365)),
                    1 => Duration::ZERO,
                    2 => Duration::from_millis(rng.below(4) * 100),
                    _ => Duration::from_nanos(rng.below(600_000_000)),
                };
                let when = if rng.below(8) == 0 {
                    now.checked_sub(offset.min(Duration::from_secs(3600)))
                        .unwrap_or(now)
                } else {
                    now + offset
                };
                let cb = timer(seq, &log);
                q.push(when, cb.clone());
                model.push((when, seq, seq, cb));
                seq += 1;
            }
            for _ in 0..rng.below(60) {
                if model.is_empty() {
                    break;
                }
                let k = rng.below(model.len() as u64) as usize;
                if model[k].3.cancel() == State::Scheduled {
                    q.note_cancelled();
                }
            }
            model.retain(|m| m.3.state() == State::Scheduled);
            model.sort_by_key(|m| (m.0, m.1));
            assert_eq!(
                q.next_deadline(),
                model.first().map(|m| m.0),
                "round {round}"
            );
            now += match rng.below(4) {
                0 => Duration::from_secs(rng.below(10)),
                _ => Duration::from_nanos(rng.below(5_000_000)),
            };
            let mut due = Vec::new();
            q.pop_due(now, |cb| due.push(cb));
            let expected: Vec<u64> = model
                .iter()
                .take_while(|m| m.0 <= now)
                .map(|m| m.2)
                .collect();
            for cb in due {
                cb.run();
            }
            assert_eq!(
                *log.borrow(),
                expected,
                "round {round}: order of due timers"
            );
            fired += expected.len();
            log.borrow_mut().clear();
            model.retain(|m| m.0 > now);
            assert!(q.len() >= model.len());
        }
        assert!(fired > 1000, "the model test fired too few timers: {fired}");
        // Cancel the rest: compaction leaves at most COMPACT_MIN entries.
        for m in &model {
            if m.3.cancel() == State::Scheduled {
                q.note_cancelled();
            }
        }
        assert!(q.len() <= COMPACT_MIN, "{} entries left", q.len());
        assert_eq!(q.next_deadline(), None);
        assert_eq!(q.len(), 0, "next_deadline drops what is cancelled");
    }

    /// `next_wake` picks the latest deadline within the slack of the
    /// earliest, wherever it waits (current slot, wheel, far heap), and
    /// never moves a wake-up the loop is already late for.
    #[test]
    fn next_wake_shares_a_wake_up_within_the_slack() {
        let t0 = Instant::now();
        let log = Rc::new(RefCell::new(Vec::new()));
        let ms = |x: f64| t0 + Duration::from_secs_f64(x / 1e3);
        let mut q = TimerQueue::new(t0);
        // 10 ms, then 10.1 ms (same slot), 10.9 ms (a later slot), 11.5 ms
        // (past a 1 ms slack), and one in the far heap.
        for (i, at) in [10.0, 10.1, 10.9, 11.5, 400.0].into_iter().enumerate() {
            q.push(ms(at), timer(i as u64, &log));
        }
        let at = |q: &mut TimerQueue, slack_us: u64| {
            q.next_wake(t0, Duration::from_micros(slack_us)).unwrap()
        };
        assert_eq!(at(&mut q, 0), ms(10.0), "no slack: the earliest deadline");
        assert_eq!(at(&mut q, 50), ms(10.0), "nothing else within 50 us");
        assert_eq!(at(&mut q, 500), ms(10.1));
        assert_eq!(at(&mut q, 1000), ms(10.9));
        assert_eq!(at(&mut q, 1500), ms(11.5));
        assert_eq!(at(&mut q, 390_000), ms(400.0), "the far heap counts too");
        // Already late for the first: wake now, whatever the slack.
        let late = q.next_wake(ms(10.05), Duration::from_millis(1)).unwrap();
        assert_eq!(late, ms(10.0));
        // Only the far timer left (the others fired): it alone decides.
        let mut due = Vec::new();
        q.pop_due(ms(12.0), |cb| due.push(cb));
        assert_eq!(due.len(), 4);
        assert_eq!(at(&mut q, 1000), ms(400.0));
    }

    /// Cancelling a burst after it was scheduled (not one by one) leaves
    /// the heaps' memory proportional to the live timers too, not to the
    /// burst: a heap's vector does not shrink by itself.
    #[test]
    fn a_cancelled_burst_gives_back_the_heaps_memory() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(t0);
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut burst = Vec::new();
        for i in 0..100_000u64 {
            // Half overdue (the current heap), half beyond the wheel (far).
            let when = if i % 2 == 0 {
                t0 - Duration::from_nanos(i)
            } else {
                t0 + Duration::from_secs(10) + Duration::from_nanos(i)
            };
            let cb = timer(i, &log);
            q.push(when, cb.clone());
            burst.push(cb);
        }
        for cb in &burst {
            cb.cancel();
            q.note_cancelled();
        }
        assert!(q.len() <= 2 * COMPACT_MIN, "{} entries left", q.len());
        let bound = 4 * 2 * COMPACT_MIN + KEEP_CAPACITY;
        assert!(q.current.capacity() <= bound, "{}", q.current.capacity());
        assert!(q.far.capacity() <= bound, "{}", q.far.capacity());
    }

    /// With only a far timer left (the near ones fired), `cur_slot` stays
    /// where they were; `next_wake` runs on every loop iteration and must
    /// not walk the wheel's span up to it: no bucket before the earliest
    /// deadline's slot can share its wake-up. It walked 1023 empty buckets,
    /// 570 ns a call in release, with the default 1 ms slack.
    #[test]
    fn next_wake_does_not_walk_the_wheel_to_a_far_timer() {
        let t0 = Instant::now();
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut q = TimerQueue::new(t0);
        q.push(t0 + Duration::from_millis(1), timer(0, &log));
        q.push(t0 + Duration::from_secs(30), timer(1, &log));
        let now = t0 + Duration::from_millis(2);
        let mut due = 0;
        q.pop_due(now, |_| due += 1);
        assert_eq!((due, q.len()), (1, 1));
        let wake = q.next_wake(now, Duration::from_millis(1));
        assert_eq!(wake, Some(t0 + Duration::from_secs(30)));
        assert!(q.scanned <= 8, "{} buckets looked at", q.scanned);
    }

    #[test]
    fn a_million_cancelled_timers_leave_memory_bounded() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(t0);
        let log = Rc::new(RefCell::new(Vec::new()));
        for i in 0..1_000_000u64 {
            let cb = timer(i, &log);
            q.push(
                t0 + Duration::from_nanos(i * 997 % 2_000_000_000),
                cb.clone(),
            );
            cb.cancel();
            q.note_cancelled();
        }
        assert!(q.len() <= 2 * COMPACT_MIN, "{} entries left", q.len());
        let total: usize = q.wheel.iter().map(Vec::capacity).sum();
        assert!(total <= 2 * SLOTS as usize * KEEP_CAPACITY);
    }
}
