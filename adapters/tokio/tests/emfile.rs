//! Out of fds on the tokio adapter: the server pauses accepting (reported
//! once), and resumes once fds are free. One test in its own binary: the fd
//! limit is process-wide.

use std::io::{Read, Write};
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use oneloop::{ExceptionContext, Loop};
use oneloop_conformance::support::Watchdog;

const LIMIT: Duration = Duration::from_secs(10);

/// Drive `fut` to completion (the test's watchdog stops a hang).
fn run<F: std::future::Future + 'static>(lp: &Loop, fut: F) -> F::Output
where
    F::Output: 'static,
{
    lp.run_until_complete(fut)
        .expect("watchdog: past the limit")
}

#[test]
fn a_server_out_of_fds_pauses_then_resumes_accepting() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lp = oneloop_tokio::new_loop().unwrap();
    let _watchdog = Watchdog::stop_loop(&lp, LIMIT);
    let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &Loop, ctx: &ExceptionContext| {
        r.borrow_mut().push(ctx.to_string())
    }));
    let server = run(
        &lp,
        lp.start_server(
            |r, w| async move {
                let mut stream = oneloop::Stream::join(r, w).unwrap();
                let mut buf = [0; 64];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            },
            "127.0.0.1:0",
        ),
    )
    .unwrap();
    let addr = server.local_addrs()[0].as_inet().unwrap();
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();

    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(256),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }
    client.connect(&addr.into()).unwrap(); // completes in the kernel backlog
    // Long enough for several retries (every 100 ms) while still out of fds.
    run(&lp, oneloop::sleep(Duration::from_millis(450))).unwrap();
    assert!(!server.is_serving(), "backing off");
    drop(hog);
    setrlimit(Resource::Nofile, old).unwrap();

    let mut client: std::net::TcpStream = client.into();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.write_all(b"after the drought").unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0; 17];
        client.read_exact(&mut buf).map(|()| buf)
    });
    // The echo comes back only if the server resumed accepting.
    let finished = async move {
        while !reader.is_finished() {
            oneloop::sleep(Duration::from_millis(5)).await.unwrap();
        }
        reader.join().unwrap()
    };
    let got = run(&lp, finished).expect("the server never resumed accepting");
    assert_eq!(&got, b"after the drought");
    assert!(server.is_serving());
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "one report per shortage: {reports:?}");
    assert!(reports[0].contains("accept"), "{reports:?}");
    server.close();
    lp.close().unwrap();
}
