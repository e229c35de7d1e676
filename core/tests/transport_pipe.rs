//! Pipe transports on the default loop: PI-01…PI-03.

mod transport_fixtures;

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use oneloop::ErrorKind;
use transport_fixtures::{Event, Recorder, Shared, new_loop, run, run_until};

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn pi01_read_pipe_made_data_eof_lost() {
    let lp = new_loop();
    let (r, w) = std::io::pipe().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.connect_read_pipe(move || Recorder::new(&s2), r),
    )
    .unwrap();
    assert!(!t.can_write_eof());
    assert_eq!(t.write(b"x").unwrap_err().kind(), ErrorKind::Unsupported);
    let writer = thread::spawn(move || {
        let mut w = w;
        for i in 0..100u8 {
            w.write_all(&[i; 1000]).unwrap();
        }
    });
    run_until(&lp, LIMIT, || sh.lost());
    writer.join().unwrap();
    sh.assert_complete();
    let data = sh.data();
    assert_eq!(data.len(), 100_000);
    assert!(
        data.chunks(1000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8))
    );
    let ev = sh.events();
    assert_eq!(ev[ev.len() - 2..], [Event::Eof, Event::Lost(None)]);
}

#[test]
fn pi01_a_read_pipe_closes_at_eof_even_if_the_protocol_keeps_it_open() {
    let lp = new_loop();
    let (r, w) = std::io::pipe().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let _t = run(
        &lp,
        LIMIT,
        lp.connect_read_pipe(
            move || {
                let mut p = Recorder::new(&s2);
                p.keep_open_on_eof = true;
                p
            },
            r,
        ),
    )
    .unwrap();
    drop(w);
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
    assert_eq!(sh.events(), [Event::Made, Event::Eof, Event::Lost(None)]);
}

#[test]
fn pi02_write_pipe_bytes_arrive_in_order_and_only_made_and_lost_are_called() {
    let lp = new_loop();
    let (r, w) = std::io::pipe().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.connect_write_pipe(move || Recorder::new(&s2), w),
    )
    .unwrap();
    let reader = thread::spawn(move || {
        let mut r = r;
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        got
    });
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for c in payload.chunks(7000) {
        t.write(c).unwrap();
    }
    t.write_eof(); // closes after the data
    assert!(t.is_closing());
    run_until(&lp, LIMIT, || sh.lost());
    assert_eq!(reader.join().unwrap(), payload);
    sh.assert_complete();
    assert!(
        sh.events().iter().all(|e| matches!(
            e,
            Event::Made | Event::Lost(None) | Event::Pause | Event::Resume
        )),
        "{:?}",
        sh.events()
    );
}

#[test]
fn pi03_a_write_pipe_learns_its_reader_closed_without_writing() {
    let lp = new_loop();
    let (r, w) = std::io::pipe().unwrap();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = run(
        &lp,
        LIMIT,
        lp.connect_write_pipe(move || Recorder::new(&s2), w),
    )
    .unwrap();
    drop(r);
    run_until(&lp, LIMIT, || sh.lost());
    sh.assert_complete();
    assert_eq!(sh.events(), [Event::Made, Event::Lost(None)]);
    assert!(t.is_closing());
}

#[test]
fn a_regular_file_is_not_a_pipe() {
    let lp = new_loop();
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let err = run(
        &lp,
        LIMIT,
        lp.connect_read_pipe(|| Recorder::new(&Shared::new()), file),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}
