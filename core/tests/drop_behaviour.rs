//! Dropping the last `Loop` handle closes the loop, even with pending tasks:
//! nothing the loop owns (a task, its sleep, a future it awaits, an fd
//! callback) holds the loop strongly (docs/architecture.md, "Ownership").
//!
//! Not the suite's: ownership is the core's design, not a PEP guarantee,
//! and it is seen through internals (drop flags, the process's fd count).

mod util;

use std::cell::Cell;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use oneloop::Loop;

/// Sets its flag when dropped: proves a task's future was dropped.
struct Dropped(Rc<Cell<bool>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Held by every test of this file: fd counts are process-wide, and libtest
/// runs the tests of a binary on parallel threads.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open fds of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Wait until no more fds are open than `base`, and return how many are.
///
/// A loop's last fds (its wake eventfd) can outlive it briefly: a job on
/// the executor's thread (the address lookup of `create_connection`) holds
/// the loop's remote waker until the thread drops the finished job. That
/// is released, not leaked; a leak stays above `base` past the deadline.
fn open_fds_settled(base: usize) -> usize {
    let mut now = open_fds();
    util::wait_until(std::time::Instant::now() + util::LIMIT, || {
        now = open_fds();
        now <= base
    });
    now
}

/// What the open fds of this process are, for a failure message.
fn fd_targets() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map_or_else(|_| "?".into(), |t| t.display().to_string());
                    format!("{}->{target}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// One loop with a pending task of each kind, run until they are all
/// suspended; returns their drop flags and the loop.
fn loop_with_pending_tasks() -> (Loop, Vec<Rc<Cell<bool>>>, UnixStream) {
    let lp = Loop::new().unwrap();
    let mut flags = Vec::new();
    let mut flag = || {
        let f = Rc::new(Cell::new(false));
        flags.push(f.clone());
        Dropped(f)
    };
    let d = flag();
    lp.spawn(async move {
        let _d = d;
        let _ = oneloop::sleep(Duration::from_secs(100)).await;
    })
    .unwrap();
    let d = flag();
    let fut = lp.create_future::<u32>();
    lp.spawn(async move {
        let _d = d;
        let _ = fut.await;
    })
    .unwrap();
    let d = flag();
    lp.spawn(async move {
        let _d = d;
        std::future::pending::<()>().await;
    })
    .unwrap();
    // A task waiting on a future that an fd callback would complete.
    let (a, b) = UnixStream::pair().unwrap();
    let d = flag();
    let readable = lp.create_future::<()>();
    {
        let readable = readable.clone();
        lp.add_reader(&a, move || {
            let _ = readable.set_result(());
        })
        .unwrap();
    }
    lp.spawn(async move {
        let _d = (d, a);
        let _ = readable.await;
    })
    .unwrap();
    lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))
        .unwrap()
        .unwrap();
    assert_eq!(lp.stats().tasks, 4, "the four tasks are pending");
    (lp, flags, b)
}

#[test]
fn dropping_the_last_handle_drops_pending_tasks_and_frees_fds() {
    let _serial = serial();
    // Warm up: the first loop of a process may open fds that stay (none
    // today, but a lazily made pool must not be counted as a leak).
    drop(loop_with_pending_tasks());
    let base = open_fds();
    for _ in 0..20 {
        let (lp, flags, peer) = loop_with_pending_tasks();
        drop(lp);
        for (i, f) in flags.iter().enumerate() {
            assert!(f.get(), "task {i}'s future was not dropped with its loop");
        }
        drop(peer);
    }
    let now = open_fds_settled(base);
    assert!(
        now <= base,
        "20 dropped loops with pending tasks left fds open: {now} > {base}"
    );
}

/// A protocol that keeps its transport, as most do: the two hold each
/// other until `connection_lost`. The `Dropped` is held only to be dropped.
struct Keeper(Option<oneloop::Transport>, #[allow(dead_code)] Dropped);

impl oneloop::Protocol for Keeper {
    fn connection_made(&mut self, transport: &oneloop::Transport) {
        self.0 = Some(transport.clone());
    }
}

/// A loop with an open TCP connection whose protocol keeps its transport
/// (the loop holds the transport through its fd callback), run until the
/// connection is made.
fn loop_with_open_connection(
    listener: &std::net::TcpListener,
) -> (Loop, Rc<Cell<bool>>, std::net::TcpStream) {
    let lp = Loop::new().unwrap();
    let addr = listener.local_addr().unwrap();
    let flag = Rc::new(Cell::new(false));
    let d = Dropped(flag.clone());
    let connect = lp.create_connection(move || Keeper(None, d), addr);
    let transport = lp.run_until_complete(connect).unwrap().unwrap();
    drop(transport);
    let (peer, _) = listener.accept().unwrap();
    assert!(!flag.get(), "the connection is open");
    (lp, flag, peer)
}

#[test]
fn a_dropped_loop_with_an_open_connection_is_freed() {
    let _serial = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    drop(loop_with_open_connection(&listener));
    let base = open_fds();
    let before = fd_targets();
    for _ in 0..20 {
        let (lp, flag, peer) = loop_with_open_connection(&listener);
        drop(lp);
        assert!(flag.get(), "the protocol was not dropped with its loop");
        drop(peer);
    }
    let now = open_fds_settled(base);
    assert!(
        now <= base,
        "{}: {now} > {base}\nbefore: {before:?}\nafter:  {:?}",
        "20 dropped loops with a connection left fds open",
        fd_targets()
    );
}

#[test]
fn a_dropped_loop_is_closed_for_its_remote_handles() {
    let _serial = serial();
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    lp.spawn(std::future::pending::<()>()).unwrap();
    drop(lp);
    assert!(remote.is_closed());
    assert_eq!(
        remote.call_soon_threadsafe(|| {}).unwrap_err().kind(),
        oneloop::ErrorKind::Closed
    );
}

#[test]
fn a_future_outlives_its_loop_without_keeping_it() {
    let _serial = serial();
    let lp = Loop::new().unwrap();
    let fut = lp.create_future::<u8>();
    assert!(fut.event_loop().is_some_and(|l| l == lp));
    drop(lp);
    assert!(fut.event_loop().is_none());
    // Completing it schedules nothing and does not panic.
    fut.set_result(1).unwrap();
    assert_eq!(fut.result().unwrap(), 1);
}

/// A loop serving with `start_server` (the server's task and its accepted
/// connection pending), its `Server` handle kept or not.
fn loop_with_server(keep: bool) -> (Loop, Option<oneloop::Server>, std::net::TcpStream) {
    use futures::io::AsyncReadExt;
    let lp = Loop::new().unwrap();
    let server = lp
        .run_until_complete(lp.start_server(
            |r, _w| async move {
                let mut r = r;
                let mut buf = [0; 8];
                let _ = r.read(&mut buf).await;
            },
            "127.0.0.1:0",
        ))
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    // Until the connection was accepted and its task waits in `read`.
    while server.active_connections() == 0 {
        lp.run_until_complete(oneloop::sleep(Duration::from_millis(1)))
            .unwrap()
            .unwrap();
    }
    (lp, keep.then_some(server), client)
}

#[test]
fn a_dropped_loop_with_a_server_is_freed() {
    let _serial = serial();
    drop(loop_with_server(false));
    let base = open_fds();
    for keep in [false, true] {
        for _ in 0..10 {
            let (lp, server, client) = loop_with_server(keep);
            let remote = lp.remote();
            drop(lp);
            assert!(remote.is_closed(), "a server kept its loop alive");
            if let Some(server) = &server {
                assert!(server.event_loop().is_none());
                assert!(!server.is_serving());
            }
            drop((server, client));
        }
    }
    let now = open_fds_settled(base);
    assert!(
        now <= base,
        "20 dropped loops with a server left fds open: {now} > {base}"
    );
}

#[test]
fn a_dropped_loop_with_a_running_child_is_freed_and_the_child_reaped() {
    struct Quiet;
    impl oneloop::SubprocessProtocol for Quiet {}
    let _serial = serial();
    for keep in [false, true] {
        let lp = Loop::new().unwrap();
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("100");
        let child = lp
            .run_until_complete(lp.subprocess_exec(|| Quiet, cmd, oneloop::SubprocessStdio::new()))
            .unwrap()
            .unwrap();
        let pid = rustix::process::Pid::from_raw(child.pid() as i32).unwrap();
        let remote = lp.remote();
        let child = keep.then_some(child);
        drop(lp);
        assert!(
            remote.is_closed(),
            "a subprocess transport kept its loop alive"
        );
        drop(child);
        // Killed and reaped (not a zombie): the pid is gone within a while.
        assert!(
            util::wait_until(std::time::Instant::now() + util::LIMIT, || {
                rustix::process::test_kill_process(pid).is_err()
            }),
            "the child of a dropped loop still runs (or was never reaped)"
        );
    }
}

#[test]
fn close_releases_the_hosts_fds_while_handles_remain() {
    let _serial = serial();
    let warm = Loop::new().unwrap();
    warm.close().unwrap();
    drop(warm);
    let base = open_fds();
    let mut kept = Vec::new();
    for _ in 0..50 {
        let lp = Loop::new().unwrap();
        let remote = lp.remote();
        lp.run_until_complete(oneloop::sleep(Duration::from_millis(0)))
            .unwrap()
            .unwrap();
        lp.close().unwrap();
        // A closed loop still answers, and refuses work.
        assert_eq!(lp.backend_name(), "native");
        assert!(lp.is_closed());
        assert!(remote.call_soon_threadsafe(|| {}).is_err());
        kept.push((lp, remote));
    }
    let now = open_fds_settled(base);
    assert!(
        now <= base,
        "50 closed loops, still referenced, hold fds: {now} > {base}"
    );
}
