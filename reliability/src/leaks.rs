//! Leak counts: loops, timers and connections by the thousand, then the
//! process's fds, threads and resident memory compared with where they
//! started.
//!
//! The thresholds:
//! - **fds**: exactly back to the base, fd by fd (a leaked fd is a leaked
//!   fd; the listing names it).
//! - **threads**: back to the base within [`THREAD_SETTLE`] (GLib's and
//!   tokio's pool threads, and core's default executor's, outlive their
//!   work for a while, then exit); the `blocking` pool (the smol adapter's
//!   executor) parks its idle threads for good, so they are counted apart
//!   and may grow by at most [`POOL_SLACK`], the most jobs a count runs at
//!   once.
//! - **resident memory**: grows by at most [`RSS_SLACK`] over a whole run,
//!   measured after a warm-up of the same work. Allocators keep freed
//!   memory, so "back to base" is read as "does not grow with the count";
//!   the slack is what a few allocator arenas and caches may still take
//!   after a warm-up. It is far below what leaking one thing per iteration
//!   costs: a loop of any mode holds several KiB (its scheduler, host
//!   sources, a poller or runtime), a connection two sockets' transports and
//!   protocols (KiB), a timer entry tens of bytes: 10 000 loops or
//!   connections leaking even 1 KiB each, or 1 000 000 timers leaking 16
//!   bytes each, would exceed it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{Protocol, Transport};
use oneloop_conformance::AdapterSpec;

use crate::modes;
use crate::probe::{self, Usage};

/// How much resident memory may grow over one count (see the module docs).
pub const RSS_SLACK: u64 = 8 * 1024 * 1024;

/// How long pool threads may take to exit after the work.
pub const THREAD_SETTLE: Duration = Duration::from_secs(15);

/// How many more parked threads the `blocking` pool may hold after a count
/// than before it: its idle threads never exit, so it keeps as many as the
/// most jobs run at once, at most [`CONCURRENT`] here (one name lookup per
/// connection being made).
pub const POOL_SLACK: usize = CONCURRENT as usize;

/// What one count did and found.
#[derive(Debug, Clone)]
pub struct Count {
    /// The mode's name.
    pub mode: &'static str,
    /// What was counted: "loops", "timers", "connections".
    pub what: &'static str,
    /// How many.
    pub n: u64,
    /// Before (after the warm-up).
    pub base: Usage,
    /// After, threads settled.
    pub after: Usage,
    /// fds open after that were not before.
    pub new_fds: Vec<String>,
    /// Wall time of the count.
    pub elapsed: Duration,
}

impl Count {
    /// Resident memory growth, bytes (0 if it shrank).
    pub fn rss_growth(&self) -> u64 {
        self.after.rss.saturating_sub(self.base.rss)
    }

    /// Whether every threshold held; the reasons if not.
    pub fn verdict(&self) -> Result<(), String> {
        let mut why = Vec::new();
        if !self.new_fds.is_empty() || self.after.fds != self.base.fds {
            why.push(format!(
                "fds {} → {} (new: {:?})",
                self.base.fds, self.after.fds, self.new_fds
            ));
        }
        if self.after.threads > self.base.threads {
            why.push(format!(
                "threads {} → {} after {THREAD_SETTLE:?}",
                self.base.threads, self.after.threads
            ));
        }
        if self.after.pool_threads > self.base.pool_threads + POOL_SLACK {
            why.push(format!(
                "executor pool threads {} → {} (more than the {POOL_SLACK} jobs ever run at once)",
                self.base.pool_threads, self.after.pool_threads
            ));
        }
        if self.rss_growth() > RSS_SLACK {
            why.push(format!(
                "resident memory grew by {} KiB (slack {} KiB)",
                self.rss_growth() / 1024,
                RSS_SLACK / 1024
            ));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} × {} {}: {}",
                self.mode,
                self.n,
                self.what,
                why.join("; ")
            ))
        }
    }
}

/// Run `work` once to warm up, read the base, run it again, read again
/// (threads given [`THREAD_SETTLE`] to exit).
fn count(spec: &AdapterSpec, what: &'static str, n: u64, mut work: impl FnMut(u64)) -> Count {
    work(n / 10);
    let base_fds = probe::fd_table();
    let base = Usage::now();
    let start = Instant::now();
    work(n);
    let elapsed = start.elapsed();
    probe::threads_settle(base.threads, THREAD_SETTLE);
    let after_fds = probe::fd_table();
    Count {
        mode: spec.name,
        what,
        n,
        base,
        after: Usage::now(),
        new_fds: probe::new_fds(&base_fds, &after_fds),
        elapsed,
    }
}

/// Create, run and close `n` loops of `spec`'s mode: each runs a callback
/// and a task, and holds a timer an hour out when it is closed.
///
/// (No zero-delay timer: on the tokio adapter an already-due timer waits
/// for tokio's next 1 ms tick, which would make this count 10× slower
/// there; docs/reliability.md, "Found".)
///
/// # Panics
/// If a loop cannot be made or does not run its work.
pub fn loops(spec: &AdapterSpec, n: u64) -> Count {
    count(spec, "loops", n, |n| {
        for _ in 0..n {
            let env = modes::env("leaks", spec, Duration::from_secs(10));
            let lp = env.lp().clone();
            let ran = lp.create_future::<u32>();
            let r = ran.clone();
            lp.call_soon(move || {
                let _ = r.set_result(7);
            })
            .expect("call_soon");
            lp.call_later(Duration::from_secs(3600), || panic!("an hour passed"))
                .expect("call_later");
            let task = lp
                .spawn(async move { ran.await.map(|v| v * 6) })
                .expect("spawn");
            let out = env.run_until(task).expect("the task");
            assert_eq!(out.expect("the task's value"), 42, "{}", spec.name);
            modes::finish(env);
        }
    })
}

/// Schedule and cancel `n` timers on one loop of `spec`'s mode, in batches
/// of 10 000 with one loop iteration between batches (so that cancelled
/// entries are compacted); one uncancelled timer must still fire, and the
/// loop must hold few entries at the end.
///
/// # Panics
/// If the last timer does not fire, or the loop still holds many entries.
pub fn timers(spec: &AdapterSpec, n: u64) -> Count {
    let mut held_after = 0;
    let c = count(spec, "timers", n, |n| {
        let env = modes::env("leaks", spec, Duration::from_secs(30));
        let lp = env.lp().clone();
        let mut rng = fastrand::Rng::with_seed(n);
        let mut done = 0;
        while done < n {
            let batch = (n - done).min(10_000);
            let handles: Vec<_> = (0..batch)
                .map(|_| {
                    let d = Duration::from_millis(rng.u64(1_000..=3_600_000));
                    lp.call_later(d, || panic!("a cancelled timer fired"))
                        .expect("call_later")
                })
                .collect();
            assert!(
                lp.stats().timers >= handles.len(),
                "the loop holds the timers just scheduled"
            );
            for h in handles {
                h.cancel();
            }
            done += batch;
            env.run_briefly();
        }
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        lp.call_later(Duration::from_millis(1), move || f.set(true))
            .expect("call_later");
        env.run_until_true(|| fired.get());
        held_after = lp.stats().timers;
        modes::finish(env);
    });
    // The timer heap compacts once more than 1 024 cancelled entries make
    // up over half of it (core's `COMPACT_MIN`): at most that many stay.
    assert!(
        held_after <= 1024 + 1,
        "{}: {held_after} timer entries held after {n} were cancelled",
        spec.name
    );
    c
}

/// A server protocol that echoes one byte and closes.
struct EchoOnce(Option<Transport>);

impl Protocol for EchoOnce {
    fn connection_made(&mut self, t: &Transport) {
        self.0 = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = self.0.take() {
            let _ = t.write(data);
            t.close();
        }
    }
    fn connection_lost(&mut self, _: Option<oneloop::Error>) {
        self.0 = None;
    }
}

/// A client that sends one byte, waits for it back, and ends as told.
struct Ping {
    abort: bool,
    t: Option<Transport>,
    finished: Rc<Cell<u64>>,
    failed: Rc<Cell<u64>>,
    got: bool,
}

impl Protocol for Ping {
    fn connection_made(&mut self, t: &Transport) {
        if t.write(b"!").is_err() {
            self.failed.set(self.failed.get() + 1);
        }
        self.t = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.got = data == b"!";
        if self.abort
            && let Some(t) = self.t.take()
        {
            t.abort();
        }
    }
    fn connection_lost(&mut self, e: Option<oneloop::Error>) {
        self.t = None;
        if self.got && e.is_none() {
            self.finished.set(self.finished.get() + 1);
        } else {
            self.failed.set(self.failed.get() + 1);
        }
    }
}

/// At most this many connections open at once.
pub const CONCURRENT: u64 = 32;

/// Open and close `n` connections on one loop of `spec`'s mode, up to
/// [`CONCURRENT`] at a time: a third TCP closed by the server after a
/// one-byte echo, a third TCP aborted by the client (a reset), a third
/// Unix; every one must complete.
///
/// # Panics
/// If a connection fails or the servers keep connections.
pub fn connections(spec: &AdapterSpec, n: u64) -> Count {
    count(spec, "connections", n, |n| {
        let env = modes::env("leaks", spec, Duration::from_secs(120));
        let lp = env.lp().clone();
        let tcp = env
            .run_until(lp.create_server(|| EchoOnce(None), "127.0.0.1:0"))
            .expect("create_server");
        let addr = tcp.local_addrs()[0].as_inet().expect("inet");
        let path = std::env::temp_dir().join(format!(
            "oneloop-leaks-{}-{}.sock",
            std::process::id(),
            modes::slug(spec)
        ));
        let unix = env
            .run_until(lp.create_unix_server(|| EchoOnce(None), &path))
            .expect("create_unix_server");
        let finished = Rc::new(Cell::new(0u64));
        let failed = Rc::new(Cell::new(0u64));
        let started = Rc::new(Cell::new(0u64));
        let client = {
            let (lp, finished, failed, started, path) = (
                lp.clone(),
                finished.clone(),
                failed.clone(),
                started.clone(),
                path.clone(),
            );
            async move {
                while started.get() < n {
                    if started.get() - finished.get() - failed.get() >= CONCURRENT {
                        oneloop::sleep(Duration::ZERO).await?;
                        continue;
                    }
                    let i = started.get();
                    started.set(i + 1);
                    let ping = Ping {
                        abort: i % 3 == 1,
                        t: None,
                        finished: finished.clone(),
                        failed: failed.clone(),
                        got: false,
                    };
                    let made = if i % 3 == 2 {
                        lp.create_unix_connection(move || ping, &path).await
                    } else {
                        lp.create_connection(move || ping, addr).await
                    };
                    made?;
                }
                while finished.get() + failed.get() < n {
                    oneloop::sleep(Duration::from_millis(1)).await?;
                }
                Ok::<_, oneloop::Error>(())
            }
        };
        let task = lp.spawn(client).expect("spawn");
        env.run_until(task)
            .expect("the client task")
            .unwrap_or_else(|e| panic!("{}: connecting failed: {e}", spec.name));
        assert_eq!(
            (finished.get(), failed.get()),
            (n, 0),
            "{}: connections finished, failed",
            spec.name
        );
        for server in [&tcp, &unix] {
            server.close();
            env.run_until(server.wait_closed()).expect("wait_closed");
            assert_eq!(server.active_connections(), 0);
        }
        modes::finish(env);
    })
}

/// A client that keeps its transport (the protocol holds the transport,
/// which holds the protocol: only the loop's end can break that).
struct Holder(Option<Transport>);
impl Protocol for Holder {
    fn connection_made(&mut self, t: &Transport) {
        self.0 = Some(t.clone());
    }
}

/// A child's protocol that keeps its transport, as protocols do.
struct ChildHolder(Option<oneloop::SubprocessTransport>);
impl oneloop::SubprocessProtocol for ChildHolder {
    fn connection_made(&mut self, t: &oneloop::SubprocessTransport) {
        self.0 = Some(t.clone());
    }
}

/// Drop `n` loops of `spec`'s mode without closing them, each with a
/// listening server (its handle dropped), a connection whose protocol keeps
/// its transport, a task waiting forever, a timer an hour out and, every
/// tenth, a child (`sleep 60`) whose protocol keeps its transport: dropping
/// the last handle must close the loop and free all of it — fds back, and
/// no child left running or unreaped.
///
/// # Panics
/// If a loop cannot be set up, or children are left after 10 s.
pub fn dropped(spec: &AdapterSpec, n: u64) -> Count {
    let c = count(spec, "loops dropped unclosed", n, |n| {
        for i in 0..n {
            let env = modes::env("leaks", spec, Duration::from_secs(10));
            let lp = env.lp().clone();
            let server = env
                .run_until(lp.create_server(|| EchoOnce(None), "127.0.0.1:0"))
                .expect("create_server");
            let addr = server.local_addrs()[0].as_inet().expect("inet");
            drop(server);
            env.run_until(lp.create_connection(|| Holder(None), addr))
                .expect("create_connection");
            if i % 10 == 0 {
                let mut cmd = std::process::Command::new("sleep");
                cmd.arg("60");
                env.run_until(lp.subprocess_exec(
                    || ChildHolder(None),
                    cmd,
                    oneloop::SubprocessStdio::new(),
                ))
                .expect("spawn sleep");
            }
            lp.spawn(std::future::pending::<()>()).expect("spawn");
            lp.call_later(Duration::from_secs(3600), || {})
                .expect("call_later");
            env.run_briefly();
            // The last handle goes with the Env, before its host.
            drop(lp);
            drop(env);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe::children().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = probe::children();
    assert!(
        left.is_empty(),
        "{}: children left running or unreaped after their loops were dropped: {left:?}",
        spec.name
    );
    c
}
