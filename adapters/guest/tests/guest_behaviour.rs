//! Guest mode's edges: misuse, the end of a run, a nested host loop, jobs
//! run where they must not be, panics.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, Loop};
use oneloop_conformance::support::{LIMIT, Tripwire};
use oneloop_guest::Job;

/// A host: a queue this thread drains, counting the jobs it was given.
#[derive(Clone, Default)]
struct Queue {
    jobs: Arc<Mutex<VecDeque<Job>>>,
    posted: Arc<AtomicUsize>,
}

impl Queue {
    fn hook(&self) -> impl Fn(Job) + Send + Sync + 'static {
        let q = self.clone();
        move |job| {
            q.posted.fetch_add(1, Ordering::Relaxed);
            q.jobs.lock().unwrap().push_back(job);
        }
    }

    fn pop(&self) -> Option<Job> {
        self.jobs.lock().unwrap().pop_front()
    }

    /// Run jobs until `done()`, failing after [`LIMIT`].
    #[track_caller]
    fn run_until(&self, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < LIMIT, "the guest never got there");
            match self.pop() {
                Some(job) => job.run(),
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }
}

#[test]
fn guest_mode_is_refused_on_a_thread_where_a_loop_runs() {
    // Asked from inside a running loop's callback.
    let lp = Loop::new().unwrap();
    let q = Queue::default();
    let refused = Rc::new(Cell::new(None));
    let (r, hook) = (refused.clone(), q.hook());
    lp.call_soon(move || {
        r.set(Some(
            oneloop_guest::new_loop(hook).map(drop).unwrap_err().kind(),
        ));
    })
    .unwrap();
    lp.call_soon({
        let lp = lp.clone();
        move || lp.stop()
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(refused.get(), Some(ErrorKind::AlreadyRunning));
    lp.close().unwrap();

    // A second guest on one host thread, as a loop or as a run.
    let guest = oneloop_guest::new_loop(q.hook()).unwrap();
    let err = oneloop_guest::new_loop(q.hook()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    let err = oneloop_guest::start_guest_run(q.hook(), |_| async {}, |_| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    guest.close().unwrap();
    // Free again once the first is closed.
    oneloop_guest::new_loop(q.hook()).unwrap().close().unwrap();
}

#[test]
fn cancel_and_close_end_a_run_with_done_after_cleanup() {
    let q = Queue::default();
    // Cancelled: the main future is dropped at its next await.
    let ended = Rc::new(RefCell::new(None));
    let e = ended.clone();
    let run = oneloop_guest::start_guest_run(
        q.hook(),
        |_| async {
            oneloop::sleep(Duration::from_secs(3600)).await?;
            Ok::<_, oneloop::Error>(())
        },
        move |out| *e.borrow_mut() = Some(out.and_then(|r| r).map_err(|e| e.kind())),
    )
    .unwrap();
    q.run_until(|| run.event_loop().stats().timers == 1);
    assert!(run.cancel());
    q.run_until(|| ended.borrow().is_some());
    assert_eq!(*ended.borrow(), Some(Err(ErrorKind::Cancelled)));
    assert!(
        run.is_finished(),
        "done before the loop closed and the I/O thread was joined"
    );
    assert!(!run.cancel());

    // Closed by hand before the main future completed.
    let ended = Rc::new(RefCell::new(None));
    let e = ended.clone();
    let run = oneloop_guest::start_guest_run(
        q.hook(),
        |_| std::future::pending::<()>(),
        move |out| *e.borrow_mut() = Some(out.map_err(|e| e.kind())),
    )
    .unwrap();
    run.event_loop().close().unwrap();
    assert_eq!(*ended.borrow(), Some(Err(ErrorKind::Closed)));
    assert!(run.is_finished());
    // Jobs still queued for it are harmless.
    while let Some(job) = q.pop() {
        job.run();
    }
}

#[test]
fn a_host_thread_that_exits_abandons_its_run_without_done() {
    let called = Arc::new(AtomicBool::new(false));
    let c = called.clone();
    std::thread::spawn(move || {
        let q = Queue::default();
        let run = oneloop_guest::start_guest_run(
            q.hook(),
            |_| std::future::pending::<()>(),
            move |_| c.store(true, Ordering::SeqCst),
        )
        .unwrap();
        drop(run);
        // The thread ends with the run unfinished.
    })
    .join()
    .expect("the host thread ended cleanly");
    assert!(
        !called.load(Ordering::SeqCst),
        "done was called for an abandoned run"
    );
}

#[test]
fn a_nested_host_loop_neither_reenters_oneloop_nor_spins() {
    // A oneloop callback runs a nested host loop (a modal dialog) for
    // 100 ms while an fd it watches is readable and undrained: the I/O
    // thread reports it once and waits for the batch to end.
    let q = Queue::default();
    let lp = oneloop_guest::new_loop(q.hook()).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    let reads = Rc::new(Cell::new(0u32));
    let r = reads.clone();
    lp.add_reader(&rx, move || r.set(r.get() + 1)).unwrap();
    let in_modal = Rc::new(Cell::new(false));
    let jobs_in_modal = Rc::new(Cell::new(0usize));
    let (m, j, q2) = (in_modal.clone(), jobs_in_modal.clone(), q.clone());
    let modal_done = lp.create_future::<()>();
    let md = modal_done.clone();
    lp.call_soon(move || {
        m.set(true);
        tx.write_all(b"x").unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            if let Some(job) = q2.pop() {
                j.set(j.get() + 1);
                job.run();
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        m.set(false);
        let _ = md.set_result(());
        drop(tx);
    })
    .unwrap();
    q.run_until(|| modal_done.done());
    assert_eq!(
        reads.get(),
        0,
        "a oneloop fd callback ran inside the nested host loop"
    );
    assert!(
        jobs_in_modal.get() <= 3,
        "the guest posted {} jobs during a 100 ms nested loop: it spins",
        jobs_in_modal.get()
    );
    // Afterwards the reader runs.
    q.run_until(|| reads.get() >= 1);
    assert!(lp.remove_reader(&rx));
    lp.close().unwrap();
}

/// The guest still serves every source after a job went astray: an fd
/// made readable from another thread, a timer, a wake from another thread.
#[track_caller]
fn assert_the_guest_goes_on(q: &Queue, lp: &Loop) {
    let (mut tx, rx) = UnixStream::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    let reads = Rc::new(Cell::new(0u32));
    let r = reads.clone();
    let reader = rx.try_clone().unwrap();
    lp.add_reader(&rx, move || {
        let mut buf = [0; 8];
        if std::io::Read::read(&mut &reader, &mut buf).is_ok() {
            r.set(r.get() + 1);
        }
    })
    .unwrap();
    std::thread::spawn(move || tx.write_all(b"x").unwrap())
        .join()
        .unwrap();
    q.run_until(|| reads.get() == 1);
    assert!(lp.remove_reader(&rx));

    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    lp.call_later(Duration::from_millis(1), move || f.set(true))
        .unwrap();
    q.run_until(|| fired.get());

    let woken = Arc::new(AtomicBool::new(false));
    let (remote, w) = (lp.remote(), woken.clone());
    std::thread::spawn(move || {
        remote
            .call_soon_threadsafe(move || w.store(true, Ordering::SeqCst))
            .unwrap()
    })
    .join()
    .unwrap();
    q.run_until(|| woken.load(Ordering::SeqCst));
}

#[test]
fn a_job_run_off_the_host_thread_is_posted_again() {
    let q = Queue::default();
    let lp = oneloop_guest::new_loop(q.hook()).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_soon(move || r.set(true)).unwrap();
    let job = q.pop().expect("call_soon posted a job");
    std::thread::spawn(move || job.run()).join().unwrap();
    assert!(!ran.get(), "a job ran off the host thread");
    // The job came back to the guest, which posted it again: the callback
    // runs, on the host thread, and nothing stalls after it.
    q.run_until(|| ran.get());
    assert_the_guest_goes_on(&q, &lp);
    lp.close().unwrap();
}

#[test]
fn a_tick_carrying_ready_fds_run_off_the_host_thread_is_not_lost() {
    // The I/O thread reports a ready fd in a tick and parks until its batch
    // ends; that tick goes astray, so the guest must post it again or wait
    // for ever.
    let q = Queue::default();
    let lp = oneloop_guest::new_loop(q.hook()).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    let reads = Rc::new(Cell::new(0u32));
    let r = reads.clone();
    let reader = rx.try_clone().unwrap();
    lp.add_reader(&rx, move || {
        let mut buf = [0; 8];
        if std::io::Read::read(&mut &reader, &mut buf).is_ok() {
            r.set(r.get() + 1);
        }
    })
    .unwrap();
    // Run what is queued (the watch's own dispatch), then wait for the
    // I/O thread's tick.
    while let Some(job) = q.pop() {
        job.run();
    }
    tx.write_all(b"x").unwrap();
    let start = Instant::now();
    let tick = loop {
        if let Some(job) = q.pop() {
            break job;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the I/O thread never reported the fd"
        );
        std::thread::sleep(Duration::from_micros(200));
    };
    std::thread::spawn(move || tick.run()).join().unwrap();
    assert_eq!(reads.get(), 0);
    q.run_until(|| reads.get() == 1);
    // The batch ended: the I/O thread waits again and sees the next byte.
    tx.write_all(b"y").unwrap();
    q.run_until(|| reads.get() == 2);
    assert!(lp.remove_reader(&rx));
    lp.close().unwrap();
}

#[test]
fn a_job_the_host_drops_unrun_is_posted_again() {
    let q = Queue::default();
    let lp = oneloop_guest::new_loop(q.hook()).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_soon(move || r.set(true)).unwrap();
    drop(q.pop().expect("call_soon posted a job"));
    q.run_until(|| ran.get());
    assert_the_guest_goes_on(&q, &lp);
    lp.close().unwrap();
}

#[test]
fn a_host_that_always_runs_jobs_on_the_wrong_thread_is_not_spun() {
    // A broken host: every job runs on a worker thread. The guest cannot
    // make progress, but it backs off instead of bouncing jobs at full
    // speed, and it still closes cleanly.
    let posted = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let worker = std::thread::spawn(move || {
        for job in rx {
            job.run();
        }
    });
    let tx = Mutex::new(tx);
    let p = posted.clone();
    let lp = oneloop_guest::new_loop(move |job| {
        p.fetch_add(1, Ordering::SeqCst);
        let _ = tx.lock().unwrap().send(job);
    })
    .unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_soon(move || r.set(true)).unwrap();
    let window = Duration::from_millis(300);
    std::thread::sleep(window);
    let bounces = posted.load(Ordering::SeqCst);
    assert!(!ran.get());
    // At once, then after 1, 2, 4, ... 128 ms: about ten in 300 ms; a
    // guest that re-posted at once every time would bounce thousands.
    assert!(
        (2..=30).contains(&bounces),
        "{bounces} posts of one job in {window:?}: the guest does not back off (or never re-posts)"
    );
    lp.close().unwrap();
    drop(lp);
    // The loop is closed and its I/O thread joined: the worker's queue
    // ends once the hook (in the loop) is gone.
    worker.join().unwrap();
}

#[test]
fn a_panicking_callback_is_reported_and_the_guest_goes_on() {
    let q = Queue::default();
    let lp = oneloop_guest::new_loop(q.hook()).unwrap();
    let tripwire = Tripwire::install(&lp);
    lp.call_soon(|| panic!("a guest callback panicked"))
        .unwrap();
    let after = lp.create_future::<()>();
    let a = after.clone();
    lp.call_later(Duration::from_millis(2), move || {
        let _ = a.set_result(());
    })
    .unwrap();
    q.run_until(|| after.done());
    let reports = tripwire.take();
    assert!(
        reports.len() == 1 && reports[0].contains("a guest callback panicked"),
        "{reports:?}"
    );
    lp.close().unwrap();
}

#[test]
fn a_panic_escaping_a_job_leaves_the_guest_going_on() {
    // A panic that unwinds out of the loop's dispatch (a panic payload
    // whose drop panics, a tracing subscriber that panics on errors as CI
    // setups do) comes out of the host's `Job::run`; the loop is fit for
    // use again (ER-04), and so must the guest be: its I/O thread must not
    // stay parked for an acknowledgement the unwound batch never gave.
    let q = Queue::default();
    let lp = oneloop_guest::new_loop(q.hook()).unwrap();
    lp.set_exception_handler(Some(|_: &Loop, _: &oneloop::ExceptionContext| {}));
    lp.call_soon(|| std::panic::panic_any(oneloop_conformance::support::PanicOnDrop))
        .unwrap();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < LIMIT, "the panic never came out of a job");
        match q.pop() {
            Some(job) => {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
                if run.is_err() {
                    break;
                }
            }
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    assert_the_guest_goes_on(&q, &lp);
    lp.close().unwrap();
}
