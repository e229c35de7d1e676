//! Protocol fixtures that check the PEP 3156 state machine on every call
//! (CPython's `MyBaseProto` pattern), and helpers for transport tests.
//!
//! Every test that uses [`Recorder`] checks TP-01 for free: a call out of
//! order is recorded as a violation, and [`Shared::assert_clean`] fails on it.
#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::future::Future as StdFuture;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oneloop::{Error, ErrorKind, ExceptionContext, Loop, Protocol, Transport};

/// The loop the tests run on; the lead can swap this for an adapter's loop.
pub fn new_loop() -> Loop {
    Loop::new().expect("a loop")
}

/// Where a stream protocol is in its life (TP-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Initial,
    Connected,
    Eof,
    Closed,
}

/// One protocol call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Made,
    Data(usize),
    Eof,
    Lost(Option<ErrorKind>),
    Pause,
    Resume,
    /// A marker a hook pushed (to check ordering against protocol calls).
    Mark(&'static str),
}

/// What a [`Recorder`] saw.
#[derive(Debug)]
pub struct Seen {
    pub phase: Phase,
    pub events: Vec<Event>,
    pub data: Vec<u8>,
    pub transport: Option<Transport>,
    pub lost_error: Option<Error>,
    pub violations: Vec<String>,
    pub paused: bool,
}

/// The shared record of one protocol, cheap to clone.
#[derive(Clone, Debug)]
pub struct Shared(pub Rc<RefCell<Seen>>);

impl Shared {
    pub fn new() -> Shared {
        Shared(Rc::new(RefCell::new(Seen {
            phase: Phase::Initial,
            events: Vec::new(),
            data: Vec::new(),
            transport: None,
            lost_error: None,
            violations: Vec::new(),
            paused: false,
        })))
    }
    pub fn phase(&self) -> Phase {
        self.0.borrow().phase
    }
    pub fn events(&self) -> Vec<Event> {
        self.0.borrow().events.clone()
    }
    pub fn data(&self) -> Vec<u8> {
        self.0.borrow().data.clone()
    }
    pub fn data_len(&self) -> usize {
        self.0.borrow().data.len()
    }
    pub fn transport(&self) -> Transport {
        self.0
            .borrow()
            .transport
            .clone()
            .expect("connection_made ran")
    }
    pub fn lost(&self) -> bool {
        self.phase() == Phase::Closed
    }
    pub fn lost_error(&self) -> Option<Error> {
        self.0.borrow().lost_error.clone()
    }
    pub fn count(&self, e: &Event) -> usize {
        self.0.borrow().events.iter().filter(|x| *x == e).count()
    }
    pub fn mark(&self, m: &'static str) {
        self.0.borrow_mut().events.push(Event::Mark(m));
    }
    /// No call out of order, and the pause/resume calls paired (FC-01).
    pub fn assert_clean(&self) {
        let s = self.0.borrow();
        assert!(
            s.violations.is_empty(),
            "state machine violations: {:?}",
            s.violations
        );
    }
    /// Clean, and `connection_lost` seen exactly once.
    pub fn assert_complete(&self) {
        self.assert_clean();
        let lost = self
            .0
            .borrow()
            .events
            .iter()
            .filter(|e| matches!(e, Event::Lost(_)))
            .count();
        assert_eq!(lost, 1, "connection_lost exactly once: {:?}", self.events());
        assert_eq!(self.count(&Event::Made), 1);
    }
    fn violation(&self, what: String) {
        self.0.borrow_mut().violations.push(what);
    }
}

type Hook<A> = Option<Box<dyn FnMut(&Transport, A)>>;
type DataHook = Option<Box<dyn FnMut(&Transport, &[u8])>>;

/// A stream protocol that records every call and checks the call order
/// (TP-01, TP-02, FC-01), with optional hooks for behaviour.
pub struct Recorder {
    pub shared: Shared,
    pub keep_open_on_eof: bool,
    pub on_made: Hook<()>,
    pub on_data: DataHook,
    pub on_eof: Hook<()>,
    pub on_pause: Hook<()>,
    pub on_resume: Hook<()>,
}

impl Recorder {
    pub fn new(shared: &Shared) -> Recorder {
        Recorder {
            shared: shared.clone(),
            keep_open_on_eof: false,
            on_made: None,
            on_data: None,
            on_eof: None,
            on_pause: None,
            on_resume: None,
        }
    }
    /// An echo server protocol that records.
    pub fn echo(shared: &Shared) -> Recorder {
        let mut r = Recorder::new(shared);
        r.on_data = Some(Box::new(|t: &Transport, d: &[u8]| {
            t.write(d).expect("echo write")
        }));
        r
    }
    fn transport(&self) -> Option<Transport> {
        self.shared.0.borrow().transport.clone()
    }
}

impl Protocol for Recorder {
    fn connection_made(&mut self, transport: &Transport) {
        {
            let mut s = self.shared.0.borrow_mut();
            if s.phase != Phase::Initial {
                let p = s.phase;
                s.violations.push(format!("connection_made in {p:?}"));
            }
            s.phase = Phase::Connected;
            s.events.push(Event::Made);
            s.transport = Some(transport.clone());
        }
        if let Some(h) = &mut self.on_made {
            h(transport, ());
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        {
            let mut s = self.shared.0.borrow_mut();
            if s.phase != Phase::Connected {
                let p = s.phase;
                s.violations.push(format!("data_received in {p:?}"));
            }
            if data.is_empty() {
                s.violations.push("data_received with no bytes".into());
            }
            s.events.push(Event::Data(data.len()));
            s.data.extend_from_slice(data);
        }
        let t = self.transport();
        if let (Some(h), Some(t)) = (&mut self.on_data, t) {
            h(&t, data);
        }
    }

    fn eof_received(&mut self) -> bool {
        {
            let mut s = self.shared.0.borrow_mut();
            if s.phase != Phase::Connected {
                let p = s.phase;
                s.violations.push(format!("eof_received in {p:?}"));
            }
            s.phase = Phase::Eof;
            s.events.push(Event::Eof);
        }
        let t = self.transport();
        if let (Some(h), Some(t)) = (&mut self.on_eof, t) {
            h(&t, ());
        }
        self.keep_open_on_eof
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        let mut s = self.shared.0.borrow_mut();
        if !matches!(s.phase, Phase::Connected | Phase::Eof) {
            let p = s.phase;
            s.violations.push(format!("connection_lost in {p:?}"));
        }
        s.phase = Phase::Closed;
        s.events.push(Event::Lost(error.as_ref().map(|e| e.kind())));
        s.lost_error = error;
        // Drop the transport: no cycle outlives the connection.
        s.transport = None;
    }

    fn pause_writing(&mut self) {
        {
            let mut s = self.shared.0.borrow_mut();
            if !matches!(s.phase, Phase::Connected | Phase::Eof) {
                let p = s.phase;
                s.violations.push(format!("pause_writing in {p:?}"));
            }
            if s.paused {
                s.violations.push("pause_writing twice".into());
            }
            s.paused = true;
            s.events.push(Event::Pause);
        }
        let t = self.transport();
        if let (Some(h), Some(t)) = (&mut self.on_pause, t) {
            h(&t, ());
        }
    }

    fn resume_writing(&mut self) {
        {
            let mut s = self.shared.0.borrow_mut();
            if !matches!(s.phase, Phase::Connected | Phase::Eof) {
                let p = s.phase;
                s.violations.push(format!("resume_writing in {p:?}"));
            }
            if !s.paused {
                s.violations.push("resume_writing without pause".into());
            }
            s.paused = false;
            s.events.push(Event::Resume);
        }
        let t = self.transport();
        if let (Some(h), Some(t)) = (&mut self.on_resume, t) {
            h(&t, ());
        }
    }
}

/// Run `lp` until `pred` holds, checking every millisecond; panics after
/// `limit` (a watchdog, never a pass).
pub fn run_until(lp: &Loop, limit: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let ok = lp
        .run_until_complete(async {
            loop {
                if pred() {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                oneloop::sleep(Duration::from_millis(1)).await.unwrap();
            }
        })
        .expect("run_until");
    assert!(ok, "condition not reached within {limit:?}");
}

/// Run `fut` to completion with a watchdog of `limit`.
pub fn run<F: StdFuture>(lp: &Loop, limit: Duration, fut: F) -> F::Output {
    let out = lp
        .run_until_complete(oneloop::timeout(limit, fut))
        .expect("run_until_complete");
    match out {
        Ok(v) => v,
        Err(e) => panic!("timed out after {limit:?}: {e}"),
    }
}

/// Record every exception-handler report.
pub fn record_exceptions(lp: &Loop) -> Rc<RefCell<Vec<ExceptionContext>>> {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    lp.set_exception_handler(Some(move |_: &Loop, ctx: &ExceptionContext| {
        l.borrow_mut().push(ctx.clone())
    }));
    log
}

/// A flag a peer thread sets when done; for watchdogs on threads.
#[derive(Clone, Default)]
pub struct Flag(pub Arc<AtomicBool>);

impl Flag {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `len` bytes of a pattern that shows reordering and loss, from its byte
/// `from` on.
pub fn pattern_from(from: usize, len: usize) -> Vec<u8> {
    (from..from + len)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect()
}

/// Writes [`pattern_from`]'s sequence to `t` in `chunk`-byte writes until
/// the transport holds more than `above` bytes, and returns how many were
/// written. The peer must not be reading.
///
/// A fixed size cannot stand in for this loop: Linux autotunes loopback
/// buffers, and how far they grow differs between machines (4 MiB fit whole
/// on one CI machine). 256 MiB is far past any of them.
pub fn write_until_buffered(t: &Transport, above: usize, chunk: usize) -> usize {
    let mut written = 0;
    while t.write_buffer_size() <= above {
        assert!(
            written < 256 << 20,
            "wrote {} MiB to a peer that never reads and write() never buffered",
            written >> 20
        );
        t.write(&pattern_from(written, chunk)).unwrap();
        written += chunk;
    }
    written
}
