//! A process forked from a loop's callback starts with no running loop and
//! may run a loop of its own (asyncio keys its running loop by pid; Python's
//! `multiprocessing` forks from callbacks).

use std::cell::Cell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::Loop;

/// Wait for our child `pid`, killing it after 20 s; its exit status.
fn wait_child(pid: libc::pid_t) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_child_forked_from_a_callback_runs_a_loop_of_its_own() {
    let lp = Loop::new().unwrap();
    let child = lp
        .run_until_complete(async {
            // SAFETY: the child only runs oneloop code and `_exit`s; glibc's
            // malloc and oneloop's own fork handler keep that sound after a
            // fork of this multi-threaded test process.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let ok = std::panic::catch_unwind(|| {
                    assert!(
                        oneloop::get_running_loop().is_err(),
                        "the parent's loop runs here"
                    );
                    let child = Loop::new().unwrap();
                    let task = child.spawn(async { 7 }).unwrap();
                    child.run_until_complete(task).unwrap().unwrap()
                });
                // SAFETY: ends the child at once, running no parent cleanup.
                unsafe { libc::_exit(if matches!(ok, Ok(7)) { 0 } else { 1 }) };
            }
            pid
        })
        .unwrap();
    assert!(child > 0, "fork failed");
    let status = wait_child(child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child could not run a loop of its own (status {status})"
    );
    lp.close().unwrap();
}

/// A fork child that closes its copy of the parent's loop leaves the
/// parent's loop as it was: the poller is shared across the fork, so the
/// child unwatching the loop's fds there would unwatch them for the parent,
/// whose reader would then never run again.
#[test]
fn a_child_closing_its_copy_of_the_loop_leaves_the_parents_fds_watched() {
    let lp = Loop::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let fired = Rc::new(Cell::new(false));
    lp.add_reader(&a, {
        let (lp, fired) = (lp.clone(), fired.clone());
        move || {
            fired.set(true);
            lp.stop();
        }
    })
    .unwrap();
    // SAFETY: the child only closes the loop and `_exit`s; glibc's malloc
    // and oneloop's own fork handler keep that sound after a fork of this
    // multi-threaded test process.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.close().is_ok()));
        // SAFETY: ends the child at once, running no parent cleanup.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    assert!(pid > 0, "fork failed");
    let status = wait_child(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child could not close its copy of the loop (status {status})"
    );
    b.write_all(b"x").unwrap();
    // A timer ends the run if the reader never comes.
    lp.call_later(Duration::from_secs(5), {
        let lp = lp.clone();
        move || lp.stop()
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(
        fired.get(),
        "the parent's reader never ran after the child closed its copy of the loop"
    );
    lp.close().unwrap();
}
