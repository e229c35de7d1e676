//! A process forked from a loop's callback starts with no running loop and
//! may run a loop of its own (asyncio keys its running loop by pid; Python's
//! `multiprocessing` forks from callbacks).

use std::time::{Duration, Instant};

use oneloop::Loop;

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
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, with a valid out-pointer.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, &mut status, 0);
            }
            panic!("the forked child hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child could not run a loop of its own (status {status})"
    );
    lp.close().unwrap();
}
