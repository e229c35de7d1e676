//! Smoke test: every kind of work on the default loop in one run (no
//! guarantee of its own: the first thing to fail when the loop is broken).

mod util;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use oneloop::{ErrorKind, Loop};

#[test]
fn smoke() {
    let lp = Loop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        lp.call_soon(move || log.borrow_mut().push(i)).unwrap();
    }
    let l2 = log.clone();
    let start = Instant::now();
    lp.call_later(Duration::from_millis(20), move || l2.borrow_mut().push(99))
        .unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    a.write_all(b"hi").unwrap();
    let l3 = log.clone();
    let lp2 = lp.clone();
    let b2 = b.try_clone().unwrap();
    lp.add_reader(&b, move || {
        let mut buf = [0u8; 10];
        let n = (&b2).read(&mut buf).unwrap();
        l3.borrow_mut().push(n as i32 + 100);
        lp2.remove_reader(&b2);
    })
    .unwrap();
    let t = lp
        .spawn(async {
            oneloop::sleep(Duration::from_millis(30)).await.unwrap();
            5
        })
        .unwrap();
    let r = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(r, 5);
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(*log.borrow(), vec![0, 1, 2, 102, 99]);
    let remote = lp.remote();
    let tid = util::current_tid();
    // Once the loop is idle in its poll: the remote stop must wake it.
    let h = std::thread::spawn(move || {
        util::wait_until_asleep(tid);
        remote.stop().unwrap();
    });
    lp.run_forever().unwrap();
    h.join().unwrap();
    let f = lp.run_in_executor(|| 40 + 2).unwrap();
    assert_eq!(lp.run_until_complete(f).unwrap().unwrap(), 42);
    lp.close().unwrap();
    assert_eq!(lp.call_soon(|| ()).unwrap_err().kind(), ErrorKind::Closed);
}
