//! What every fuzz scenario shares: the byte pattern that makes any lost,
//! repeated or reordered byte visible, the size and delay distributions,
//! the protocol-order checker, and the tally of what was done.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// The byte at `offset` of stream `stream`: a cheap hash of both, so that a
/// lost, repeated or reordered chunk is caught at its first wrong byte.
pub fn pattern_byte(stream: u64, offset: u64) -> u8 {
    let x = (offset ^ stream.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

/// `len` bytes of stream `stream` from `offset`.
pub fn pattern(stream: u64, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| pattern_byte(stream, offset + i))
        .collect()
}

/// The index of the first byte of `data` that is not stream `stream`'s
/// byte at `offset` onwards.
pub fn first_mismatch(stream: u64, offset: u64, data: &[u8]) -> Option<usize> {
    data.iter()
        .enumerate()
        .position(|(i, b)| *b != pattern_byte(stream, offset + i as u64))
}

/// A write size: mostly small, sometimes large, now and then larger than
/// a socket buffer, so that writes are taken whole, in part and not at all.
pub(crate) fn write_size(rng: &mut fastrand::Rng) -> usize {
    match rng.u8(0..100) {
        0..40 => rng.usize(1..=64),
        40..70 => rng.usize(65..=4096),
        70..92 => rng.usize(4097..=65_536),
        _ => rng.usize(65_537..=262_144),
    }
}

/// A pause before the next step: none (the next write in the same
/// callback) most of the time, a loop iteration or a few milliseconds
/// otherwise.
pub(crate) fn delay_ms(rng: &mut fastrand::Rng) -> u8 {
    match rng.u8(0..100) {
        0..60 => 0,
        60..80 => 1,
        _ => rng.u8(2..=6),
    }
}

/// A list of problems found while a scenario ran; protocol methods record
/// here instead of panicking (a panic in a protocol is the loop's to
/// report, and would hide the first problem behind the second).
#[derive(Clone, Default)]
pub struct Faults(Rc<RefCell<Vec<String>>>);

impl Faults {
    /// Record a problem.
    pub fn add(&self, what: impl Into<String>) {
        let mut v = self.0.borrow_mut();
        // The first problems say what went wrong; a cascade says nothing new.
        if v.len() < 20 {
            v.push(what.into());
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// Everything recorded, one per line.
    pub fn report(&self) -> String {
        self.0.borrow().join("\n  ")
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.borrow().iter()).finish()
    }
}

/// Where a protocol is in its life (PEP 3156: `connection_made` once →
/// `data_received`* → `eof_received`? → `connection_lost` once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing yet.
    Initial,
    /// `connection_made` came.
    Connected,
    /// `eof_received` came.
    Eof,
    /// `connection_lost` came: nothing may follow.
    Lost,
}

/// The order checker of one protocol: every call is checked against the
/// state machine as it comes.
#[derive(Debug)]
pub struct Life {
    name: String,
    phase: Phase,
    /// `pause_writing` came and `resume_writing` not yet.
    paused: bool,
    faults: Faults,
}

impl Life {
    /// A checker for the protocol called `name`, recording into `faults`.
    pub fn new(name: impl Into<String>, faults: &Faults) -> Life {
        Life {
            name: name.into(),
            phase: Phase::Initial,
            paused: false,
            faults: faults.clone(),
        }
    }

    /// The phase reached.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn bad(&self, what: &str) {
        self.faults
            .add(format!("{}: {what} in phase {:?}", self.name, self.phase));
    }

    /// `connection_made`.
    pub fn made(&mut self) {
        if self.phase != Phase::Initial {
            self.bad("a second connection_made");
        }
        self.phase = Phase::Connected;
    }

    /// `data_received` (or `datagram_received`) of `n` bytes; `allow_empty`
    /// for datagrams, which may be empty.
    pub fn data(&mut self, n: usize, allow_empty: bool) {
        if n == 0 && !allow_empty {
            self.bad("data_received with no bytes");
        }
        if self.phase != Phase::Connected {
            self.bad("data_received outside the connection");
        }
    }

    /// `eof_received`.
    pub fn eof(&mut self) {
        if self.phase != Phase::Connected {
            self.bad("eof_received not after connection_made, or twice");
        }
        self.phase = Phase::Eof;
    }

    /// `connection_lost`.
    pub fn lost(&mut self) {
        if matches!(self.phase, Phase::Initial | Phase::Lost) {
            self.bad("connection_lost without connection_made, or twice");
        }
        self.phase = Phase::Lost;
    }

    /// `pause_writing`.
    pub fn pause(&mut self) {
        if self.paused || matches!(self.phase, Phase::Initial | Phase::Lost) {
            self.bad("pause_writing twice or outside the connection");
        }
        self.paused = true;
    }

    /// `resume_writing`.
    pub fn resume(&mut self) {
        if !self.paused || matches!(self.phase, Phase::Initial | Phase::Lost) {
            self.bad("resume_writing without pause_writing, or outside the connection");
        }
        self.paused = false;
    }

    /// Any other call (a subprocess's pipe events, a datagram error): only
    /// between made and lost.
    pub fn during(&mut self, what: &str) {
        if matches!(self.phase, Phase::Initial | Phase::Lost) {
            self.bad(&format!("{what} outside the connection"));
        }
    }
}

/// What a run did, added up over runs (the soak's and the report's figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Scenario runs.
    pub runs: u64,
    /// Connections, endpoints, pipes or children.
    pub channels: u64,
    /// Bytes `write`/`sendto` accepted.
    pub bytes_sent: u64,
    /// Bytes that arrived, checked byte by byte.
    pub bytes_received: u64,
    /// Bytes missing from channels that ended cleanly (no fault injected,
    /// no error reported): must be 0.
    pub bytes_lost: u64,
    /// Faults injected: aborts, resets, early closes, kills, oversized
    /// datagrams.
    pub faults_injected: u64,
    /// Errors the transports reported (`connection_lost(Some)`,
    /// `error_received`, a killed child's code).
    pub errors_reported: u64,
    /// `pause_reading`/`resume_reading` calls.
    pub read_pauses: u64,
    /// `pause_writing` calls received.
    pub write_pauses: u64,
}

impl Tally {
    /// Add `other` to this tally.
    pub fn add(&mut self, other: &Tally) {
        self.runs += other.runs;
        self.channels += other.channels;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.bytes_lost += other.bytes_lost;
        self.faults_injected += other.faults_injected;
        self.errors_reported += other.errors_reported;
        self.read_pauses += other.read_pauses;
        self.write_pauses += other.write_pauses;
    }
}

/// A shared tally that protocol code can bump.
pub(crate) type SharedTally = Rc<RefCell<Tally>>;
