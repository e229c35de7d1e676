//! Deliberate faults for the conformance suite's own tests (feature
//! `fault-injection`). Each is switched on per loop with the hidden
//! `LoopBuilder::inject_fault`; a loop built without one behaves exactly as
//! in a build without the feature. Without the feature `Faults::has` is
//! always false and folds away.

/// A way to break the scheduler on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code, unreachable_pub))]
pub enum Fault {
    /// Run the ready queue last-in first-out (breaks CB-01).
    LifoReadyQueue,
    /// Run done-callbacks inside `set_result` (breaks FU-04).
    EagerDoneCallbacks,
    /// Let `run_*` be called from inside the running loop (breaks LC-02).
    AllowNestedRun,
    /// Drop the queued callbacks when the loop halts (breaks LC-03).
    StopDropsQueued,
}

/// The faults of one loop.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults(#[cfg(feature = "fault-injection")] u8);

impl Faults {
    #[cfg(feature = "fault-injection")]
    pub(crate) fn insert(&mut self, f: Fault) {
        self.0 |= 1 << (f as u8);
    }

    #[inline(always)]
    pub(crate) fn has(&self, f: Fault) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            self.0 & (1 << (f as u8)) != 0
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = f;
            false
        }
    }
}
