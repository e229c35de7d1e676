//! `call_soon_threadsafe` from another thread: a producer thread posts
//! [`PER_ROUND`] callbacks, then the loop runs them, per callback; the
//! producer's posts and the loop's wake-up and drain both count (each
//! thread zeroes and dumps its own counters around the measured rounds,
//! the producer when told to). The producer waits on a pipe for each round and
//! answers on another once it has posted everything, so the loop thread is
//! blocked in a `read` while the producer posts: no interleaving that
//! timing could change, the same wake-up (one, coalesced) every round. The
//! hosts' own cross-thread calls on the same rounds: a tokio unbounded
//! mpsc channel, glib `MainContext::invoke` (an idle source per call from
//! another thread), a `calloop::channel`; async-io has none (its row is
//! the floor's); the floor is a mutex queue with an eventfd woken on empty
//! → non-empty ([`Inbox`]).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use super::{Case, Run, WARMUP_ROUNDS, case, dump, loops, new_loop};
use crate::callgrind;
use crate::floor::Inbox;
use crate::workload::{self, add};

const WORKLOAD: &str = "threadsafe";
/// Callbacks per round.
pub const PER_ROUND: u64 = 100;
const ROUNDS: u64 = 20;

/// The cases of this workload in this build.
pub fn cases() -> Vec<Case> {
    let c = |variant: &str, run| {
        case(
            WORKLOAD,
            variant,
            ROUNDS * PER_ROUND,
            true,
            Run::InProcess(run),
        )
    };
    let mut v = vec![c("floor", floor)];
    for (variant, _) in loops() {
        v.push(c(variant, oneloop));
    }
    #[cfg(feature = "tokio")]
    v.push(c("tokio", hosts::tokio));
    #[cfg(feature = "glib")]
    v.push(c("glib", hosts::glib));
    #[cfg(feature = "calloop")]
    v.push(c("calloop", hosts::calloop));
    v
}

/// What the producer is told over its pipe.
const POST: u8 = 1;
const ZERO: u8 = 2;
const DUMP: u8 = 3;

/// A thread that posts one round of callbacks each time it is told to, and
/// zeroes or dumps its own counters when told to.
struct Producer {
    go: Option<UnixStream>,
    done: UnixStream,
    thread: Option<thread::JoinHandle<()>>,
}

impl Producer {
    /// Start the thread for `case`; `post(i)` posts the callback `add(i)`.
    fn start(case: &Case, mut post: impl FnMut(u64) + Send + 'static) -> Producer {
        let (go, mut go_rx) = UnixStream::pair().expect("socketpair");
        let (mut done_tx, done) = UnixStream::pair().expect("socketpair");
        let case = case.clone();
        let thread = thread::spawn(move || {
            let mut byte = [0u8; 1];
            // A closed `go` (the case is over) reads 0 bytes.
            while go_rx.read(&mut byte).expect("read go") == 1 {
                match byte[0] {
                    POST => {
                        for i in 0..PER_ROUND {
                            post(i);
                        }
                    }
                    ZERO => callgrind::zero_stats(),
                    _ => dump(&case),
                }
                done_tx.write_all(&byte).expect("write done");
            }
        });
        Producer {
            go: Some(go),
            done,
            thread: Some(thread),
        }
    }

    /// Have one round posted; returns once every post of it is queued.
    fn round(&mut self) {
        self.tell(POST);
    }

    /// Have the producer do `what`, and wait until it has.
    fn tell(&mut self, what: u8) {
        let mut byte = [what; 1];
        self.go
            .as_ref()
            .expect("running")
            .write_all(&byte)
            .expect("write go");
        self.done.read_exact(&mut byte).expect("read done");
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        drop(self.go.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Run the rounds: the producer posts, then `drain` runs until the round's
/// callbacks have all run. Both threads count the measured rounds: the
/// producer zeroes its counters before this thread does, and dumps them
/// after this thread did, each while the other waits on the pipe.
fn rounds(case: &Case, mut producer: Producer, mut drain: impl FnMut(u64)) {
    let mut round = |producer: &mut Producer| {
        let target = workload::ran() + PER_ROUND;
        producer.round();
        drain(target);
        assert_eq!(workload::ran(), target, "a callback was lost or ran twice");
    };
    for _ in 0..WARMUP_ROUNDS {
        round(&mut producer);
    }
    producer.tell(ZERO);
    callgrind::zero_stats();
    for _ in 0..ROUNDS {
        round(&mut producer);
    }
    dump(case);
    producer.tell(DUMP);
}

fn floor(case: &Case) {
    let inbox = std::sync::Arc::new(Inbox::new().expect("poller"));
    let producer = Producer::start(case, {
        let inbox = inbox.clone();
        move |i| inbox.post(move || add(i)).expect("post")
    });
    let mut events = polling::Events::new();
    rounds(case, producer, |target| {
        while workload::ran() < target {
            inbox.wait_and_run(&mut events).expect("wait");
        }
    });
}

fn oneloop(case: &Case) {
    let lp = new_loop(case.variant());
    let remote = lp.remote();
    let producer = Producer::start(case, move |i| {
        remote
            .call_soon_threadsafe(move || add(i))
            .expect("call_soon_threadsafe");
    });
    rounds(case, producer, |target| {
        while workload::ran() < target {
            lp.stop();
            lp.run_forever().expect("run_forever");
        }
    });
}

#[cfg(any(feature = "tokio", feature = "glib", feature = "calloop"))]
mod hosts {
    use super::{Case, Producer, add, rounds};
    use crate::workload;

    type Boxed = Box<dyn FnOnce() + Send>;

    #[cfg(feature = "tokio")]
    pub(super) fn tokio(case: &Case) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Boxed>();
        let producer = Producer::start(case, move |i| {
            assert!(tx.send(Box::new(move || add(i))).is_ok(), "receiver gone");
        });
        rounds(case, producer, |target| {
            rt.block_on(async {
                while workload::ran() < target {
                    (rx.recv().await.expect("producer alive"))();
                }
            });
        });
    }

    #[cfg(feature = "glib")]
    pub(super) fn glib(case: &Case) {
        let ctx = glib::MainContext::new();
        // Owned here: `invoke` from the producer then queues an idle source
        // instead of acquiring the context and calling in its own thread.
        let _owner = ctx.acquire().expect("acquire the context");
        let producer = Producer::start(case, {
            let ctx = ctx.clone();
            move |i| ctx.invoke(move || add(i))
        });
        rounds(case, producer, |target| {
            while workload::ran() < target {
                ctx.iteration(true);
            }
        });
    }

    #[cfg(feature = "calloop")]
    pub(super) fn calloop(case: &Case) {
        use calloop::channel::{Event, channel};

        let mut ev: calloop::EventLoop<'static, ()> =
            calloop::EventLoop::try_new().expect("event loop");
        let (tx, rx) = channel::<Boxed>();
        ev.handle()
            .insert_source(rx, |event, _, _| {
                if let Event::Msg(f) = event {
                    f();
                }
            })
            .expect("insert channel");
        let producer = Producer::start(case, move |i| {
            tx.send(Box::new(move || add(i))).expect("send")
        });
        rounds(case, producer, |target| {
            while workload::ran() < target {
                ev.dispatch(None, &mut ()).expect("dispatch");
            }
        });
    }
}
