//! A cache prefetch hint, for the ready queue's batch loop.
//!
//! With a million timers due, each callback is a cache miss when it runs:
//! they were allocated in scheduling order and run in deadline order. The
//! batch loop asks for the cell of a callback a few places ahead while it
//! runs the current one, so the miss overlaps useful work.

/// Hint that the memory at `p` will be read soon. Never reads it, never
/// faults: `p` may dangle. A no-op where there is no prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is
        // in the target's baseline features). A prefetch is a hint: it does
        // not dereference `p` in the language's sense, cannot fault and has
        // no effect a program can observe except timing.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
