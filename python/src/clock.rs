//! asyncio's clock (float seconds, as `loop.time()` returns) mapped onto the
//! loop's own clock ([`Loop::time`](oneloop::Loop::time), an `Instant`).

use std::time::{Duration, Instant};

/// A pairing of one reading of each clock, taken at the same moment.
///
/// The base reading in seconds is `time.monotonic()`, so `loop.time()`
/// agrees with it as it does on asyncio's own loop (on Linux both are
/// `CLOCK_MONOTONIC`, as is `Instant`, except on hosts with their own clock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
    base_secs: f64,
}

impl Clock {
    pub(crate) fn new(base: Instant, base_secs: f64) -> Clock {
        Clock { base, base_secs }
    }

    /// `t` in asyncio seconds.
    pub(crate) fn secs(&self, t: Instant) -> f64 {
        match t.checked_duration_since(self.base) {
            Some(d) => self.base_secs + d.as_secs_f64(),
            None => self.base_secs - (self.base - t).as_secs_f64(),
        }
    }

    /// The first `Instant` at which [`secs`](Clock::secs) is at least `when`.
    ///
    /// Rounded up, plus a nanosecond for the float arithmetic, so that a
    /// timer never runs while `loop.time()` still reads less than its `when`
    /// (D7). A deadline in the past (or NaN) maps to the base: due at once.
    pub(crate) fn instant(&self, when: f64) -> Instant {
        let ahead = when - self.base_secs;
        if ahead.is_nan() || ahead <= 0.0 {
            if ahead < 0.0
                && let Ok(back) = Duration::try_from_secs_f64(-ahead)
                && let Some(t) = self.base.checked_sub(back)
            {
                return t;
            }
            return self.base;
        }
        let nanos = (ahead * 1e9).ceil() + 1.0;
        // ~30 years: far enough to be "never", near enough to fit an Instant.
        const FAR: f64 = 30.0 * 365.0 * 86_400.0 * 1e9;
        let nanos = if nanos > FAR { FAR } else { nanos };
        self.base + Duration::from_nanos(nanos as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_never_early() {
        let base = Instant::now();
        let c = Clock::new(base, 12_345.678_9);
        for when in [12_345.678_9, 12_345.7, 12_346.0, 99_999.999_999_9] {
            assert!(c.secs(c.instant(when)) >= when, "{when}");
        }
        assert_eq!(c.instant(0.0), base - Duration::from_secs_f64(12_345.678_9));
        assert_eq!(c.instant(f64::NAN), base);
        assert!(c.instant(f64::INFINITY) > base);
    }
}
