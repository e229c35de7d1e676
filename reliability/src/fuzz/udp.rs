//! UDP endpoints: a sender and an acking receiver on one loop, datagrams
//! of random sizes up to the limit and beyond it.
//!
//! The sender sends 1 to 40 datagrams (empty, one byte, up to 65 507 bytes,
//! the largest IPv4 payload, and now and then a few bytes more), connected
//! or not, with random pauses, keeping a window small enough that the
//! receiver's socket buffer cannot overflow on loopback (so that a lost
//! datagram is the loop's fault, not the kernel's). The receiver checks each
//! datagram against its pattern and acks it. The sender ends by closing
//! once everything is acked, closing with datagrams still queued (they are
//! flushed), or aborting (a fault: what was not acked may be lost).
//!
//! Checked: every datagram arrives whole, once, in order; each oversized
//! one is refused with one `error_received` and never arrives; both
//! protocols keep their order (`connection_made` once, then datagrams and
//! errors, then `connection_lost` once); `sendto` after close is refused.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use oneloop::{DatagramOptions, DatagramProtocol, DatagramTransport, ErrorKind, Loop};
use oneloop_conformance::Env;

use super::common::{Faults, Life, Phase, Tally, delay_ms, first_mismatch, pattern};

/// The largest UDP payload over IPv4.
pub const MAX_UDP: usize = 65_507;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Close once every datagram is acked.
    AfterAcks,
    /// Close right after the last send: queued datagrams are flushed.
    Now,
    /// Abort right after the last send: queued datagrams may be dropped.
    Abort,
}

#[derive(Debug, Clone)]
struct Plan {
    id: u64,
    connected: bool,
    sizes: Vec<(usize, u8)>,
    window: usize,
    end: End,
}

fn draw(rng: &mut fastrand::Rng) -> Plan {
    let sizes = (0..rng.usize(1..=40))
        .map(|_| {
            let len = match rng.u8(0..100) {
                0..8 => 0,
                8..14 => 1,
                14..24 => MAX_UDP,
                24..30 => rng.usize(MAX_UDP + 1..=MAX_UDP + 4096),
                30..60 => rng.usize(2..=1500),
                _ => rng.usize(1501..=MAX_UDP),
            };
            (len, delay_ms(rng))
        })
        .collect();
    Plan {
        id: rng.u64(..),
        connected: rng.bool(),
        sizes,
        window: rng.usize(1..=8),
        end: match rng.u8(0..10) {
            0..5 => End::AfterAcks,
            5..8 => End::Now,
            _ => End::Abort,
        },
    }
}

/// Outstanding payload at which the sender waits for acks: the next
/// datagram is queued by the kernel only while the receiver's buffer holds
/// at most its size (`SO_RCVBUF`, 208 KiB by default), and a datagram of
/// 64 KiB takes up to twice that there.
const WINDOW_BYTES: usize = 40_000;

#[derive(Debug)]
struct State {
    plan: Plan,
    sender: Life,
    receiver: Life,
    sender_t: Option<DatagramTransport>,
    receiver_t: Option<DatagramTransport>,
    receiver_addr: Option<SocketAddr>,
    next: usize,
    delay_done: bool,
    /// Sequence numbers sent and not yet acked, with their sizes.
    unacked: Vec<(u32, usize)>,
    /// The next sequence number the receiver expects (oversized ones skipped).
    expect: usize,
    delivered: u64,
    delivered_bytes: u64,
    sent_bytes: u64,
    oversized: u64,
    errors: u64,
    ended: bool,
    sender_lost: bool,
    receiver_lost: bool,
}

struct Run {
    lp: Loop,
    st: RefCell<State>,
    faults: Faults,
    done: oneloop::LoopFuture<()>,
}

struct Sender(Rc<Run>);
struct Receiver(Rc<Run>);

impl DatagramProtocol for Sender {
    fn connection_made(&mut self, t: &DatagramTransport) {
        let mut st = self.0.st.borrow_mut();
        st.sender.made();
        st.sender_t = Some(t.clone());
    }

    fn datagram_received(&mut self, data: &[u8], _addr: SocketAddr) {
        let done = {
            let mut st = self.0.st.borrow_mut();
            st.sender.data(data.len(), true);
            let Ok(seq) = <[u8; 4]>::try_from(data).map(u32::from_be_bytes) else {
                self.0.faults.add("sender: an ack that is not 4 bytes");
                return;
            };
            match st.unacked.iter().position(|(s, _)| *s == seq) {
                Some(0) => {
                    st.unacked.remove(0);
                }
                Some(_) => self.0.faults.add(format!("sender: ack {seq} out of order")),
                None => self
                    .0
                    .faults
                    .add(format!("sender: ack {seq} unexpected or doubled")),
            }
            st.ended && st.plan.end == End::AfterAcks && st.unacked.is_empty()
        };
        if done {
            close_sender(&self.0);
        } else {
            let run = self.0.clone();
            let _ = self.0.lp.call_soon(move || step(&run));
        }
    }

    fn error_received(&mut self, error: oneloop::Error) {
        let mut st = self.0.st.borrow_mut();
        st.sender.during("error_received");
        st.errors += 1;
        let emsgsize = error
            .io_error()
            .and_then(|e| e.raw_os_error())
            .is_some_and(|n| n == libc::EMSGSIZE);
        if !emsgsize {
            self.0.faults.add(format!(
                "sender: error_received({error}) for no oversized datagram"
            ));
        }
    }

    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        let receiver = {
            let mut st = self.0.st.borrow_mut();
            st.sender.lost();
            st.sender_lost = true;
            st.sender_t = None;
            if let Some(e) = error {
                self.0
                    .faults
                    .add(format!("sender: connection_lost({e}) on a close or abort"));
            }
            st.receiver_t.clone()
        };
        // Give the receiver what is still in flight, then close it.
        if let Some(r) = receiver {
            finish_receiver(&self.0, r);
        }
    }
}

impl DatagramProtocol for Receiver {
    fn connection_made(&mut self, t: &DatagramTransport) {
        let mut st = self.0.st.borrow_mut();
        st.receiver.made();
        st.receiver_t = Some(t.clone());
    }

    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        let (t, seq) = {
            let mut st = self.0.st.borrow_mut();
            st.receiver.data(data.len(), true);
            // The datagram the sender sent next, oversized ones skipped.
            while st
                .plan
                .sizes
                .get(st.expect)
                .is_some_and(|(len, _)| *len > MAX_UDP)
            {
                st.expect += 1;
            }
            let seq = st.expect;
            let Some(&(len, _)) = st.plan.sizes.get(seq) else {
                self.0.faults.add("receiver: a datagram after the last one");
                return;
            };
            let stream = st.plan.id ^ seq as u64;
            if data.len() != len || first_mismatch(stream, 0, data).is_some() {
                self.0.faults.add(format!(
                    "receiver: datagram {seq} is wrong ({} bytes, {len} expected): lost, reordered or cut",
                    data.len()
                ));
            }
            st.expect += 1;
            st.delivered += 1;
            st.delivered_bytes += data.len() as u64;
            (st.receiver_t.clone(), seq as u32)
        };
        if let Some(t) = t
            && let Err(e) = t.sendto(&seq.to_be_bytes(), Some(addr))
        {
            self.0.faults.add(format!("receiver: ack failed: {e}"));
        }
    }

    fn error_received(&mut self, error: oneloop::Error) {
        self.0.st.borrow_mut().receiver.during("error_received");
        // An ack to a sender that closed may bounce (ICMP port unreachable).
        let refused = error
            .io_error()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
        if !refused {
            self.0
                .faults
                .add(format!("receiver: error_received({error})"));
        }
    }

    fn connection_lost(&mut self, error: Option<oneloop::Error>) {
        {
            let mut st = self.0.st.borrow_mut();
            st.receiver.lost();
            st.receiver_lost = true;
            st.receiver_t = None;
        }
        if let Some(e) = error {
            self.0.faults.add(format!("receiver: connection_lost({e})"));
        }
        let _ = self.0.done.set_result(());
    }
}

/// Send what the plan says next, within the window.
fn step(run: &Rc<Run>) {
    loop {
        let (t, len, seq, to) = {
            let mut st = run.st.borrow_mut();
            if st.ended || st.sender_lost {
                return;
            }
            let Some(t) = st.sender_t.clone() else { return };
            let Some(&(len, delay)) = st.plan.sizes.get(st.next) else {
                drop(st);
                end_sender(run, &t);
                return;
            };
            let outstanding: usize = st.unacked.iter().map(|(_, n)| n).sum();
            if st.unacked.len() >= st.plan.window || outstanding >= WINDOW_BYTES {
                return; // an ack steps again
            }
            if delay > 0 && !st.delay_done {
                st.delay_done = true;
                let run2 = run.clone();
                let _ = run
                    .lp
                    .call_later(Duration::from_millis(delay.into()), move || step(&run2));
                return;
            }
            let to = if st.plan.connected {
                None
            } else {
                st.receiver_addr
            };
            (t, len, st.next, to)
        };
        let data = pattern(run.st.borrow().plan.id ^ seq as u64, 0, len);
        let res = t.sendto(&data, to);
        let mut st = run.st.borrow_mut();
        st.next += 1;
        st.delay_done = false;
        match res {
            Ok(()) if len > MAX_UDP => st.oversized += 1,
            Ok(()) => {
                st.unacked.push((seq as u32, len));
                st.sent_bytes += len as u64;
            }
            Err(e) => run.faults.add(format!("sender: sendto failed: {e}")),
        }
    }
}

fn end_sender(run: &Rc<Run>, t: &DatagramTransport) {
    let end = {
        let mut st = run.st.borrow_mut();
        st.ended = true;
        (st.plan.end, st.unacked.is_empty())
    };
    match end {
        (End::AfterAcks, false) => {} // the last ack closes
        (End::AfterAcks, true) | (End::Now, _) => close_sender(run),
        (End::Abort, _) => {
            t.abort();
            late_send(run, t);
        }
    }
}

fn close_sender(run: &Rc<Run>) {
    let t = run.st.borrow().sender_t.clone();
    if let Some(t) = t {
        t.close();
        late_send(run, &t);
    }
}

/// Bad input on the way: `sendto` after close is refused.
fn late_send(run: &Rc<Run>, t: &DatagramTransport) {
    let to = run.st.borrow().receiver_addr;
    match t.sendto(b"late", to) {
        Err(e) if e.kind() == ErrorKind::InvalidState => {}
        other => run.faults.add(format!(
            "sendto after close gave {other:?}, not InvalidState"
        )),
    }
}

/// Once the sender is lost: wait for the datagrams still in flight (all of
/// them unless the sender aborted), then close the receiver.
fn finish_receiver(run: &Rc<Run>, r: DatagramTransport) {
    let lp = run.lp.clone();
    let run2 = run.clone();
    let waiter = async move {
        let deadline = lp.time() + Duration::from_secs(5);
        loop {
            let (want, got, aborted) = {
                let st = run2.st.borrow();
                let want = st.plan.sizes.iter().filter(|(n, _)| *n <= MAX_UDP).count() as u64;
                (want, st.delivered, st.plan.end == End::Abort)
            };
            if got >= want || aborted || lp.time() >= deadline {
                break;
            }
            if oneloop::sleep(Duration::from_millis(1)).await.is_err() {
                break;
            }
        }
        r.close();
    };
    if let Err(e) = run.lp.spawn(waiter) {
        run.faults
            .add(format!("cannot spawn the receiver's finish: {e}"));
    }
}

/// One seeded run of the UDP scenario on `env`'s loop.
///
/// # Panics
/// On any broken property, with the plan.
pub(crate) fn run(env: &Env, seed: u64) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let plan = draw(&mut rng);
    let lp = env.lp().clone();
    let faults = Faults::default();
    let run = Rc::new(Run {
        lp: lp.clone(),
        st: RefCell::new(State {
            sender: Life::new("udp sender", &faults),
            receiver: Life::new("udp receiver", &faults),
            plan: plan.clone(),
            sender_t: None,
            receiver_t: None,
            receiver_addr: None,
            next: 0,
            delay_done: false,
            unacked: Vec::new(),
            expect: 0,
            delivered: 0,
            delivered_bytes: 0,
            sent_bytes: 0,
            oversized: 0,
            errors: 0,
            ended: false,
            sender_lost: false,
            receiver_lost: false,
        }),
        faults: faults.clone(),
        done: lp.create_future(),
    });
    let local: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let receiver = {
        let r = Receiver(run.clone());
        env.run_until(
            lp.create_datagram_endpoint(move || r, DatagramOptions::new().local_addr(local)),
        )
        .unwrap_or_else(|e| panic!("the receiver endpoint: {e}"))
    };
    let raddr = receiver.sockname().expect("the receiver's address");
    run.st.borrow_mut().receiver_addr = Some(raddr);
    let mut opts = DatagramOptions::new().local_addr(local);
    if plan.connected {
        opts = opts.remote_addr(raddr);
    }
    let s = Sender(run.clone());
    env.run_until(lp.create_datagram_endpoint(move || s, opts))
        .unwrap_or_else(|e| panic!("the sender endpoint: {e}"));
    let run2 = run.clone();
    lp.call_soon(move || step(&run2)).expect("call_soon");
    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.run_until(run.done.clone())
    }));
    let st = run.st.borrow();
    let mut problems = faults.report();
    if finished.is_err() {
        problems = format!("the run did not finish\n  {problems}");
    }
    let want = plan.sizes.iter().filter(|(n, _)| *n <= MAX_UDP).count() as u64;
    if plan.end != End::Abort && st.delivered != want {
        faults.add(format!(
            "{} of {want} datagrams arrived on a clean close",
            st.delivered
        ));
    }
    if st.errors != st.oversized {
        faults.add(format!(
            "{} oversized datagram(s) but {} error_received",
            st.oversized, st.errors
        ));
    }
    if st.sender.phase() != Phase::Lost || st.receiver.phase() != Phase::Lost {
        faults.add("an endpoint was not lost");
    }
    if finished.is_err() || !faults.is_empty() {
        panic!(
            "{}\n  {}\nseed {seed}: {plan:?}\n delivered {} next {} unacked {:?}",
            if finished.is_err() {
                "the run did not finish"
            } else {
                "properties broken:"
            },
            if finished.is_err() {
                problems
            } else {
                faults.report()
            },
            st.delivered,
            st.next,
            st.unacked
        );
    }
    Tally {
        runs: 1,
        channels: 2,
        bytes_sent: st.sent_bytes,
        bytes_received: st.delivered_bytes,
        bytes_lost: 0,
        faults_injected: st.oversized + u64::from(plan.end == End::Abort),
        errors_reported: st.errors,
        read_pauses: 0,
        write_pauses: 0,
    }
}
