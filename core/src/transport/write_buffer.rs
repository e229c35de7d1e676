//! The write buffer of a stream transport and its water marks (FC-01, FC-02).

use crate::error::{Error, ErrorKind, Result};

/// asyncio's default high-water mark.
pub(crate) const DEFAULT_HIGH: usize = 64 * 1024;

/// Bytes accepted by `write()` that the socket has not taken yet.
///
/// # Invariants
/// - `data[start..]` is the pending bytes, oldest first; `len()` is exact
///   (FC-02's `get_write_buffer_size`).
/// - `low <= high`.
#[derive(Debug)]
pub(crate) struct WriteBuffer {
    data: Vec<u8>,
    start: usize,
    pub(crate) high: usize,
    pub(crate) low: usize,
}

impl WriteBuffer {
    pub(crate) fn new() -> WriteBuffer {
        WriteBuffer {
            data: Vec::new(),
            start: 0,
            high: DEFAULT_HIGH,
            low: DEFAULT_HIGH / 4,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        // Compact only when the dead prefix dominates, so that appending
        // stays amortised O(n) and memory stays within twice the pending size.
        if self.start > 0 && self.start >= self.data.len() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
            // A burst must not pin its peak allocation for the connection's life.
            if self.data.capacity() > 4 * self.high.max(DEFAULT_HIGH) {
                self.data.shrink_to(self.high.max(DEFAULT_HIGH));
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.data = Vec::new();
        self.start = 0;
    }

    /// asyncio's rules: no high gives `4 * low` (or 64 KiB), no low gives
    /// `high / 4`; `low > high` is an error.
    pub(crate) fn set_limits(&mut self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let high = high.unwrap_or_else(|| low.map_or(DEFAULT_HIGH, |l| l.saturating_mul(4)));
        let low = low.unwrap_or(high / 4);
        if low > high {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("low water mark ({low}) above high water mark ({high})"),
            ));
        }
        self.high = high;
        self.low = low;
        Ok(())
    }

    /// Strictly above high (FC-01).
    pub(crate) fn above_high(&self) -> bool {
        self.len() > self.high
    }

    /// At or below low (FC-01).
    pub(crate) fn at_or_below_low(&self) -> bool {
        self.len() <= self.low
    }
}
