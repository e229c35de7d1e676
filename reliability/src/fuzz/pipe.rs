//! Pipes and a child's stdin/stdout: a byte stream written through one
//! transport and read through another, with random writes, read-pause
//! storms and ends.
//!
//! - **pipe**: an OS pipe, its write end under `connect_write_pipe`, its
//!   read end under `connect_read_pipe`. The writer ends by closing
//!   (everything must arrive, then EOF), by aborting mid-write, or the
//!   reader closes early at a random offset (the writer must learn of it:
//!   `connection_lost`, and writes refused after).
//! - **subprocess**: `cat` under `subprocess_exec`; what goes into its
//!   stdin must come out of its stdout. It ends by closing stdin (exit 0,
//!   everything echoed), by a kill at a random offset (code −9) or by
//!   `close()` on the transport (which kills).
//!
//! Checked: every byte that arrives is the right one; a clean end delivers
//! everything; the protocols keep their order (for the child:
//! `connection_made` first, each pipe lost once, `process_exited` once,
//! `connection_lost` last); writes after the end are refused.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use oneloop::{
    ErrorKind, Loop, Protocol, SubprocessProtocol, SubprocessStdio, SubprocessTransport, Transport,
};
use oneloop_conformance::Env;

use super::common::{Faults, Life, Phase, Tally, delay_ms, first_mismatch, pattern, write_size};

#[derive(Debug, Clone, Copy)]
struct Step {
    len: usize,
    delay_ms: u8,
}

#[derive(Debug, Clone, Copy)]
struct ReadPause {
    at: u64,
    storm: u8,
    hold_ms: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Close the writer (a pipe) or the child's stdin: everything arrives.
    Close,
    /// Abort the writer mid-write (a pipe), or kill the child.
    Abort,
    /// The reader closes at this offset (a pipe), or `close()` on the
    /// child's transport (which kills it) at this offset.
    Early(u64),
}

#[derive(Debug, Clone)]
struct Plan {
    id: u64,
    writes: Vec<Step>,
    obey_flow: bool,
    pauses: Vec<ReadPause>,
    end: End,
}

const MAX_TOTAL: u64 = 512 * 1024;

fn draw(rng: &mut fastrand::Rng) -> Plan {
    let mut writes = Vec::new();
    let mut total = 0u64;
    for _ in 0..rng.usize(0..=24) {
        let len = write_size(rng);
        if total + len as u64 > MAX_TOTAL {
            break;
        }
        total += len as u64;
        writes.push(Step {
            len,
            delay_ms: delay_ms(rng),
        });
    }
    let mut pauses: Vec<ReadPause> = (0..rng.usize(0..=4))
        .map(|_| ReadPause {
            at: rng.u64(0..=total),
            storm: rng.u8(0..=5),
            hold_ms: rng.u8(0..=5),
        })
        .collect();
    pauses.sort_by_key(|p| p.at);
    Plan {
        id: rng.u64(..),
        writes,
        obey_flow: rng.bool(),
        pauses,
        end: match rng.u8(0..10) {
            0..6 => End::Close,
            6..8 => End::Abort,
            _ => End::Early(rng.u64(0..=total)),
        },
    }
}

/// What both kinds of run record.
#[derive(Debug)]
struct State {
    plan: Plan,
    writer: Option<Transport>,
    reader: Option<Transport>,
    child: Option<SubprocessTransport>,
    sent: u64,
    received: u64,
    next: usize,
    delay_done: bool,
    ended: bool,
    early_done: bool,
    next_pause: usize,
    holds: u32,
    read_pauses: u64,
    write_pauses: u64,
    reader_eof: bool,
    writer_lost: Option<Option<String>>,
    reader_lost: Option<Option<String>>,
    /// The child's calls, for the subprocess order check.
    child_events: Vec<String>,
    child_lost: bool,
}

struct Run {
    lp: Loop,
    st: RefCell<State>,
    faults: Faults,
    done: oneloop::LoopFuture<()>,
    writer_life: RefCell<Life>,
    reader_life: RefCell<Life>,
}

impl Run {
    fn check_done(&self) {
        let st = self.st.borrow();
        let finished = if st.child.is_some() || !st.child_events.is_empty() {
            st.child_lost
        } else {
            st.writer_lost.is_some() && st.reader_lost.is_some()
        };
        if finished {
            let _ = self.done.set_result(());
        }
    }
}

fn lost_text(e: Option<oneloop::Error>) -> Option<String> {
    e.map(|e| e.to_string())
}

// ---- the writer (a write pipe, or the child's stdin) ----

/// Write what the plan says next, until a delay, a pause or the end.
fn write_step(run: &Rc<Run>) {
    loop {
        let (t, step, id, offset, obey) = {
            let mut st = run.st.borrow_mut();
            if st.ended || st.writer_lost.is_some() {
                return;
            }
            let Some(t) = st.writer.clone() else { return };
            let Some(step) = st.plan.writes.get(st.next).copied() else {
                drop(st);
                end_writer(run, &t);
                return;
            };
            if step.delay_ms > 0 && !st.delay_done {
                st.delay_done = true;
                let run2 = run.clone();
                let _ = run
                    .lp
                    .call_later(Duration::from_millis(step.delay_ms.into()), move || {
                        write_step(&run2)
                    });
                return;
            }
            (t, step, st.plan.id, st.sent, st.plan.obey_flow)
        };
        if obey && t.is_writing_paused() {
            return; // resume_writing steps again
        }
        let res = t.write(&pattern(id, offset, step.len));
        let mut st = run.st.borrow_mut();
        st.next += 1;
        st.delay_done = false;
        match res {
            Ok(()) => st.sent += step.len as u64,
            Err(e) if e.kind() == ErrorKind::InvalidState && t.is_closing() => {}
            Err(e) => run.faults.add(format!("writer: write failed: {e}")),
        }
    }
}

fn end_writer(run: &Rc<Run>, t: &Transport) {
    let (end, child) = {
        let mut st = run.st.borrow_mut();
        st.ended = true;
        (st.plan.end, st.child.clone())
    };
    match (end, child) {
        (End::Close, _) => t.close(),
        (End::Abort, None) => t.abort(),
        (End::Abort, Some(child)) => {
            if let Err(e) = child.kill() {
                run.faults.add(format!("kill failed: {e}"));
            }
            return;
        }
        // The reader side ends it, now if it already has everything.
        (End::Early(_), _) => {
            let reader = {
                let mut st = run.st.borrow_mut();
                let now = !st.early_done && st.received >= st.sent;
                st.early_done |= now;
                st.reader.clone().filter(|_| now)
            };
            if let Some(r) = reader {
                end_early(run, &r);
            }
            return;
        }
    }
    match t.write(b"late") {
        Err(e) if e.kind() == ErrorKind::InvalidState => {}
        other => run.faults.add(format!(
            "a write after {end:?} gave {other:?}, not InvalidState"
        )),
    }
}

struct WriteProto(Rc<Run>);

impl Protocol for WriteProto {
    fn connection_made(&mut self, _t: &Transport) {
        self.0.writer_life.borrow_mut().made();
    }
    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        self.0.writer_life.borrow_mut().lost();
        {
            let mut st = self.0.st.borrow_mut();
            st.writer_lost = Some(lost_text(error));
            st.writer = None;
        }
        self.0.check_done();
    }
    fn pause_writing(&mut self) {
        self.0.writer_life.borrow_mut().pause();
        self.0.st.borrow_mut().write_pauses += 1;
    }
    fn resume_writing(&mut self) {
        self.0.writer_life.borrow_mut().resume();
        let run = self.0.clone();
        let _ = self.0.lp.call_soon(move || write_step(&run));
    }
}

// ---- the reader (a read pipe, or the child's stdout) ----

/// Check and count `data`; then the plan's pauses and early end.
fn received(run: &Rc<Run>, data: &[u8]) {
    let (t, storms, early) = {
        let mut st = run.st.borrow_mut();
        if let Some(at) = first_mismatch(st.plan.id, st.received, data) {
            run.faults.add(format!(
                "reader: byte {} is wrong (a byte lost, doubled or reordered)",
                st.received + at as u64
            ));
        }
        st.received += data.len() as u64;
        let mut storms = Vec::new();
        while let Some(p) = st.plan.pauses.get(st.next_pause).copied()
            && p.at <= st.received
        {
            st.next_pause += 1;
            storms.push(p);
        }
        st.holds += storms.len() as u32;
        let early = match st.plan.end {
            // At its offset, or once everything sent arrived (an offset
            // past what was sent would never come).
            End::Early(at)
                if !st.early_done
                    && (at <= st.received || (st.ended && st.received >= st.sent)) =>
            {
                st.early_done = true;
                true
            }
            _ => false,
        };
        (st.reader.clone(), storms, early)
    };
    let Some(t) = t else { return };
    for p in &storms {
        for _ in 0..p.storm {
            t.pause_reading();
            t.resume_reading();
        }
        t.pause_reading();
        run.st.borrow_mut().read_pauses += u64::from(p.storm) * 2 + 2;
        let run2 = run.clone();
        let t2 = t.clone();
        let _ = run
            .lp
            .call_later(Duration::from_millis(p.hold_ms.into()), move || {
                let resume = {
                    let mut st = run2.st.borrow_mut();
                    st.holds -= 1;
                    st.holds == 0
                };
                if resume {
                    t2.resume_reading();
                }
            });
    }
    if early {
        end_early(run, &t);
    }
}

fn end_early(run: &Rc<Run>, reader: &Transport) {
    let child = run.st.borrow().child.clone();
    match child {
        Some(child) => child.close(),
        None => reader.close(),
    }
}

struct ReadProto(Rc<Run>);

impl Protocol for ReadProto {
    fn connection_made(&mut self, _t: &Transport) {
        self.0.reader_life.borrow_mut().made();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.0.reader_life.borrow_mut().data(data.len(), false);
        received(&self.0, data);
    }
    fn eof_received(&mut self) -> bool {
        self.0.reader_life.borrow_mut().eof();
        self.0.st.borrow_mut().reader_eof = true;
        false
    }
    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        self.0.reader_life.borrow_mut().lost();
        {
            let mut st = self.0.st.borrow_mut();
            st.reader_lost = Some(lost_text(error));
            st.reader = None;
        }
        self.0.check_done();
    }
}

// ---- the child ----

struct ChildProto(Rc<Run>);

impl ChildProto {
    fn event(&self, e: String) {
        self.0.st.borrow_mut().child_events.push(e);
    }
}

impl SubprocessProtocol for ChildProto {
    fn connection_made(&mut self, t: &SubprocessTransport) {
        self.event("made".into());
        let mut st = self.0.st.borrow_mut();
        st.child = Some(t.clone());
        st.writer = t.pipe_transport(0);
        st.reader = t.pipe_transport(1);
    }
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        if fd != 1 {
            self.0
                .faults
                .add(format!("child: {} bytes on fd {fd}", data.len()));
            return;
        }
        self.0.reader_life.borrow_mut().data(data.len(), false);
        received(&self.0, data);
    }
    fn pipe_connection_lost(&mut self, fd: i32, error: Option<oneloop::Error>) {
        self.event(format!("pipe {fd} lost"));
        let text = lost_text(error);
        let mut st = self.0.st.borrow_mut();
        match fd {
            0 => st.writer_lost = Some(text),
            1 => st.reader_lost = Some(text),
            _ => {}
        }
    }
    fn process_exited(&mut self) {
        self.event("exited".into());
    }
    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        self.event("lost".into());
        if let Some(e) = error {
            self.0.faults.add(format!("child: connection_lost({e})"));
        }
        self.0.st.borrow_mut().child_lost = true;
        self.0.check_done();
    }
    fn pause_writing(&mut self) {
        self.0.writer_life.borrow_mut().pause();
        self.0.st.borrow_mut().write_pauses += 1;
    }
    fn resume_writing(&mut self) {
        self.0.writer_life.borrow_mut().resume();
        let run = self.0.clone();
        let _ = self.0.lp.call_soon(move || write_step(&run));
    }
}

/// The child's calls must be: made, then each of the three pipes lost once
/// and `exited` once in any order, then lost.
fn check_child_order(events: &[String], faults: &Faults) {
    let ok = events.first().map(String::as_str) == Some("made")
        && events.last().map(String::as_str) == Some("lost")
        && events.len() == 6
        && ["pipe 0 lost", "pipe 1 lost", "pipe 2 lost", "exited"]
            .iter()
            .all(|e| events[1..5].iter().filter(|x| x == e).count() == 1);
    if !ok {
        faults.add(format!("child: calls out of order: {events:?}"));
    }
}

// ---- the runs ----

fn new_run(env: &Env, plan: Plan, faults: &Faults) -> Rc<Run> {
    let lp = env.lp().clone();
    Rc::new(Run {
        lp: lp.clone(),
        st: RefCell::new(State {
            plan,
            writer: None,
            reader: None,
            child: None,
            sent: 0,
            received: 0,
            next: 0,
            delay_done: false,
            ended: false,
            early_done: false,
            next_pause: 0,
            holds: 0,
            read_pauses: 0,
            write_pauses: 0,
            reader_eof: false,
            writer_lost: None,
            reader_lost: None,
            child_events: Vec::new(),
            child_lost: false,
        }),
        faults: faults.clone(),
        done: lp.create_future(),
        writer_life: RefCell::new(Life::new("writer", faults)),
        reader_life: RefCell::new(Life::new("reader", faults)),
    })
}

fn wait_done(env: &Env, run: &Rc<Run>, seed: u64) {
    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.run_until(run.done.clone())
    }));
    if finished.is_err() || !run.faults.is_empty() {
        let st = run.st.borrow();
        panic!(
            "{}\n  {}\nseed {seed}: {:?}\n sent {} received {} eof {} writer lost {:?} reader lost {:?} child {:?}",
            if finished.is_err() {
                "the run did not finish"
            } else {
                "properties broken:"
            },
            run.faults.report(),
            st.plan,
            st.sent,
            st.received,
            st.reader_eof,
            st.writer_lost,
            st.reader_lost,
            st.child_events
        );
    }
}

fn tally(run: &Rc<Run>, channels: u64, lost: u64, errors: u64) -> Tally {
    let st = run.st.borrow();
    Tally {
        runs: 1,
        channels,
        bytes_sent: st.sent,
        bytes_received: st.received,
        bytes_lost: lost,
        faults_injected: u64::from(st.plan.end != End::Close),
        errors_reported: errors,
        read_pauses: st.read_pauses,
        write_pauses: st.write_pauses,
    }
}

/// One seeded run over an OS pipe.
///
/// # Panics
/// On any broken property, with the plan.
pub(crate) fn run_pipe(env: &Env, seed: u64) -> Tally {
    let plan = draw(&mut fastrand::Rng::with_seed(seed));
    let faults = Faults::default();
    let run = new_run(env, plan, &faults);
    let lp = env.lp().clone();
    let (r, w) = std::io::pipe().expect("a pipe");
    let reader = env
        .run_until(lp.connect_read_pipe(
            {
                let run = run.clone();
                move || ReadProto(run)
            },
            r,
        ))
        .unwrap_or_else(|e| panic!("connect_read_pipe: {e}"));
    let writer = env
        .run_until(lp.connect_write_pipe(
            {
                let run = run.clone();
                move || WriteProto(run)
            },
            w,
        ))
        .unwrap_or_else(|e| panic!("connect_write_pipe: {e}"));
    {
        let mut st = run.st.borrow_mut();
        st.reader = Some(reader);
        st.writer = Some(writer);
    }
    let run2 = run.clone();
    lp.call_soon(move || write_step(&run2)).expect("call_soon");
    wait_done(env, &run, seed);
    let (lost, errors) = {
        let st = run.st.borrow();
        let errors = [&st.writer_lost, &st.reader_lost]
            .iter()
            .filter(|l| matches!(l, Some(Some(_))))
            .count() as u64;
        let mut lost = 0;
        if run.reader_life.borrow().phase() != Phase::Lost
            || run.writer_life.borrow().phase() != Phase::Lost
        {
            faults.add("a pipe transport was not lost");
        }
        if st.received > st.sent {
            faults.add(format!("{} bytes arrived of {} sent", st.received, st.sent));
        }
        match st.plan.end {
            End::Close => {
                if st.received != st.sent || !st.reader_eof || errors > 0 {
                    lost = st.sent - st.received.min(st.sent);
                    faults.add(format!(
                        "a clean close delivered {} of {} bytes (eof {}, writer lost {:?}, reader lost {:?})",
                        st.received, st.sent, st.reader_eof, st.writer_lost, st.reader_lost
                    ));
                }
            }
            End::Abort => {
                if !st.reader_eof {
                    faults.add("the reader got no EOF after the writer aborted");
                }
            }
            End::Early(_) => {}
        }
        (lost, errors)
    };
    wait_done(env, &run, seed);
    tally(&run, 2, lost, errors)
}

/// One seeded run through `cat`'s stdin and stdout.
///
/// # Panics
/// On any broken property, with the plan.
pub(crate) fn run_subprocess(env: &Env, seed: u64) -> Tally {
    let plan = draw(&mut fastrand::Rng::with_seed(seed));
    let faults = Faults::default();
    let run = new_run(env, plan, &faults);
    let lp = env.lp().clone();
    let child = env
        .run_until(lp.subprocess_exec(
            {
                let run = run.clone();
                move || ChildProto(run)
            },
            std::process::Command::new("cat"),
            SubprocessStdio::new(),
        ))
        .unwrap_or_else(|e| panic!("subprocess_exec(cat): {e}"));
    // The stdin and stdout transports are the child's pipes; their calls
    // reach the child's protocol, whose order is checked as a whole.
    run.writer_life.borrow_mut().made();
    run.reader_life.borrow_mut().made();
    let run2 = run.clone();
    lp.call_soon(move || write_step(&run2)).expect("call_soon");
    wait_done(env, &run, seed);
    let code = child.returncode();
    let (lost, errors) = {
        let st = run.st.borrow();
        check_child_order(&st.child_events, &faults);
        if st.received > st.sent {
            faults.add(format!(
                "{} bytes came out of {} put in",
                st.received, st.sent
            ));
        }
        let mut lost = 0;
        match st.plan.end {
            End::Close => {
                if st.received != st.sent || code != Some(0) {
                    lost = st.sent - st.received.min(st.sent);
                    faults.add(format!(
                        "closing stdin: {} of {} bytes came back, exit code {code:?}",
                        st.received, st.sent
                    ));
                }
            }
            End::Abort | End::Early(_) => {
                // Killed before its stdin closed (unless every byte went
                // through and cat already exited on its own: never, since
                // its stdin stays open).
                if code != Some(-libc::SIGKILL) {
                    faults.add(format!("a killed cat exited with {code:?}, not -9"));
                }
            }
        }
        (lost, u64::from(code.is_some_and(|c| c != 0)))
    };
    wait_done(env, &run, seed);
    tally(&run, 1, lost, errors)
}
