//! The cost of one fd callback: a byte bouncing over a socket pair through
//! two readers, every callback one wake-up, one `read`, one `write`
//! (`workload::fd_pingpong`). oneloop's `add_reader` on each loop against
//! the bare level-triggered epoll floor and against each host's own fd
//! readiness primitive, in the same run: tokio `AsyncFd` (so the cost of
//! oneloop-tokio's level-triggered emulation over tokio's edge-triggered
//! readiness shows), async-io `Async::readable`, a glib `unix_fd_add`
//! source, a calloop `Generic` source.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use oneloop::Loop;
use oneloop_bench::mode;
use oneloop_bench::ratios::Table;
use oneloop_bench::workload::{fd_pingpong, fd_pingpong_floor, socket_pair, timed};

const GROUP: &str = "fd_callbacks";

fn n() -> u64 {
    if mode::smoke() { 1_000 } else { 10_000 }
}

fn bench(c: &mut Criterion) {
    let n = n();
    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Elements(n));
    g.bench_function(BenchmarkId::new("floor", n), |b| {
        let pair = socket_pair();
        b.iter_custom(|iters| timed(iters, n, || fd_pingpong_floor(&pair, n)));
    });
    let oneloop = |g: &mut BenchmarkGroup<'_, WallTime>, name: &str, make: &dyn Fn() -> Loop| {
        g.bench_function(BenchmarkId::new(name, n), |b| {
            let lp = make();
            let pair = socket_pair();
            b.iter_custom(|iters| timed(iters, n, || fd_pingpong(&lp, &pair, n)));
            lp.close().expect("close");
        });
    };
    oneloop(&mut g, "oneloop_native", &|| Loop::new().expect("loop"));
    #[cfg(feature = "tokio")]
    {
        oneloop(&mut g, "oneloop_tokio", &|| {
            oneloop_tokio::new_loop().expect("loop")
        });
        g.bench_function(BenchmarkId::new("tokio_asyncfd", n), |b| {
            host::tokio_asyncfd(b, n);
        });
    }
    #[cfg(feature = "smol")]
    {
        oneloop(&mut g, "oneloop_smol", &|| {
            Loop::with_backend(oneloop_smol::SmolBackend::new().expect("backend")).expect("loop")
        });
        g.bench_function(BenchmarkId::new("async_io_readable", n), |b| {
            host::async_io_readable(b, n);
        });
    }
    #[cfg(feature = "glib")]
    {
        oneloop(&mut g, "oneloop_glib", &|| {
            oneloop_glib::new_loop().expect("loop")
        });
        g.bench_function(BenchmarkId::new("glib_unix_fd", n), |b| {
            host::glib_unix_fd(b, n);
        });
    }
    #[cfg(feature = "calloop")]
    {
        oneloop(&mut g, "oneloop_calloop", &|| {
            oneloop_calloop::new_loop().expect("loop")
        });
        g.bench_function(BenchmarkId::new("calloop_generic", n), |b| {
            host::calloop_generic(b, n);
        });
    }
    g.finish();
}

/// Each host's own readiness primitive on the same ping-pong.
#[cfg(any(
    feature = "tokio",
    feature = "smol",
    feature = "glib",
    feature = "calloop"
))]
mod host {
    use std::cell::Cell;
    use std::rc::Rc;

    use criterion::Bencher;
    use oneloop_bench::workload::{pingpong_step, pingpong_try_step, socket_pair, timed};

    /// Two tasks on a current-thread runtime, each awaiting `readable()` on
    /// its end's `AsyncFd` (edge-triggered: `try_io` clears the readiness on
    /// `WouldBlock`), the way a tokio user writes it.
    #[cfg(feature = "tokio")]
    pub(super) fn tokio_asyncfd(b: &mut Bencher<'_>, n: u64) {
        use tokio::io::unix::AsyncFd;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let pair = socket_pair();
        let fds = rt.block_on(async {
            let register = |s: &std::os::unix::net::UnixStream| {
                let owned = s.try_clone().expect("dup");
                // SAFETY: the `AsyncFd` owns the `UnixStream`, whose fd stays
                // open and unchanged until the `AsyncFd` drops it.
                unsafe { AsyncFd::register(owned) }
                    .map_err(|e| e.into_parts().1)
                    .expect("AsyncFd")
            };
            Rc::new([register(&pair.0), register(&pair.1)])
        });
        let local = tokio::task::LocalSet::new();
        b.iter_custom(|iters| {
            timed(iters, n, || {
                let count = Rc::new(Cell::new(0u64));
                local.block_on(&rt, async {
                    let side = |end: usize| {
                        let (fds, count) = (fds.clone(), count.clone());
                        tokio::task::spawn_local(async move {
                            loop {
                                let mut guard = fds[end].readable().await.expect("readable");
                                // `try_io` clears the readiness on `WouldBlock`.
                                match guard.try_io(|fd| pingpong_try_step(fd.get_ref(), &count, n))
                                {
                                    Ok(Ok(true)) => return,
                                    Ok(Ok(false)) | Err(_) => {}
                                    Ok(Err(e)) => panic!("{e}"),
                                }
                            }
                        })
                    };
                    let (t0, t1) = (side(0), side(1));
                    (&pair.1).write_all_byte();
                    // The other task waits for a byte that will not come:
                    // cancel it, and let it go before the next round.
                    let rest = match futures::future::select(t0, t1).await {
                        futures::future::Either::Left((_, rest))
                        | futures::future::Either::Right((_, rest)) => rest,
                    };
                    rest.abort();
                    assert!(rest.await.is_err_and(|e| e.is_cancelled()));
                });
                assert_eq!(count.get(), n);
            })
        });
        drop(local);
    }

    /// Two tasks on a `LocalExecutor`, each awaiting `Async::readable()`.
    #[cfg(feature = "smol")]
    pub(super) fn async_io_readable(b: &mut Bencher<'_>, n: u64) {
        let pair = socket_pair();
        let fds = Rc::new([
            async_io::Async::new(pair.0.try_clone().expect("dup")).expect("Async"),
            async_io::Async::new(pair.1.try_clone().expect("dup")).expect("Async"),
        ]);
        let ex = async_executor::LocalExecutor::new();
        b.iter_custom(|iters| {
            timed(iters, n, || {
                let count = Rc::new(Cell::new(0u64));
                let side = |end: usize| {
                    let (fds, count) = (fds.clone(), count.clone());
                    ex.spawn(async move {
                        loop {
                            fds[end].readable().await.expect("readable");
                            match pingpong_try_step(fds[end].get_ref(), &count, n) {
                                Ok(true) => return,
                                Ok(false) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                    })
                };
                let (t0, t1) = (side(0), side(1));
                (&pair.1).write_all_byte();
                // Dropping the other task (waiting for a byte that will not
                // come) cancels it.
                async_io::block_on(ex.run(futures::future::select(t0, t1)));
                assert_eq!(count.get(), n);
            })
        });
    }

    /// Two `g_unix_fd_add` sources on the thread-default context.
    #[cfg(feature = "glib")]
    pub(super) fn glib_unix_fd(b: &mut Bencher<'_>, n: u64) {
        use std::os::fd::AsRawFd;

        let ctx = glib::MainContext::default();
        let pair = socket_pair();
        let count = Rc::new(Cell::new(0u64));
        let done = Rc::new(Cell::new(true));
        let ids: Vec<_> = (0..2)
            .map(|end| {
                let (pair2, count, done) = (pair.clone(), count.clone(), done.clone());
                let fd = if end == 0 {
                    pair.0.as_raw_fd()
                } else {
                    pair.1.as_raw_fd()
                };
                glib_unix::unix_fd_add_local(fd, glib::IOCondition::IN, move |_, _| {
                    let from = if end == 0 { &pair2.0 } else { &pair2.1 };
                    if pingpong_step(from, &count, n) {
                        done.set(true);
                    }
                    glib::ControlFlow::Continue
                })
            })
            .collect();
        b.iter_custom(|iters| {
            timed(iters, n, || {
                count.set(0);
                done.set(false);
                (&pair.1).write_all_byte();
                while !done.get() {
                    ctx.iteration(true);
                }
            })
        });
        for id in ids {
            id.remove();
        }
    }

    /// Two level-triggered calloop `Generic` sources.
    #[cfg(feature = "calloop")]
    pub(super) fn calloop_generic(b: &mut Bencher<'_>, n: u64) {
        use calloop::generic::Generic;
        use calloop::{EventLoop, Interest, Mode, PostAction};

        let mut event_loop: EventLoop<'_, bool> = EventLoop::try_new().expect("calloop");
        let pair = socket_pair();
        let count = Rc::new(Cell::new(0u64));
        for end in 0..2 {
            let fd = if end == 0 { &pair.0 } else { &pair.1 };
            let count = count.clone();
            event_loop
                .handle()
                .insert_source(
                    Generic::new(fd.try_clone().expect("dup"), Interest::READ, Mode::Level),
                    move |_, fd, done: &mut bool| {
                        if pingpong_step(fd.as_ref(), &count, n) {
                            *done = true;
                        }
                        Ok(PostAction::Continue)
                    },
                )
                .expect("insert_source");
        }
        b.iter_custom(|iters| {
            timed(iters, n, || {
                count.set(0);
                let mut done = false;
                (&pair.1).write_all_byte();
                while !done {
                    event_loop.dispatch(None, &mut done).expect("dispatch");
                }
            })
        });
    }

    /// Serving the first byte of a round.
    trait Serve {
        fn write_all_byte(self);
    }

    impl Serve for &std::os::unix::net::UnixStream {
        fn write_all_byte(mut self) {
            std::io::Write::write_all(&mut self, &[1]).expect("serve");
        }
    }
}

fn main() {
    let mut c = mode::criterion();
    bench(&mut c);
    c.final_summary();
    let n = n();
    Table::new(GROUP, "floor")
        .function("floor")
        .function("oneloop_native")
        .function("tokio_asyncfd")
        .function("async_io_readable")
        .function("glib_unix_fd")
        .function("calloop_generic")
        .param(n, n)
        .print();
    for (host, oneloop) in [
        ("tokio_asyncfd", "oneloop_tokio"),
        ("async_io_readable", "oneloop_smol"),
        ("glib_unix_fd", "oneloop_glib"),
        ("calloop_generic", "oneloop_calloop"),
    ] {
        Table::new(GROUP, host)
            .function(oneloop)
            .param(n, n)
            .print();
    }
}
