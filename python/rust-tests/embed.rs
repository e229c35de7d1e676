//! A Rust program that embeds Python and runs Python's asyncio on its own
//! oneloop `Loop` (`oneloop_python::embed`), on every host: a Rust timer
//! chain and an asyncio streams server and client share one loop and one
//! thread, the program runs the loop, Python's `close()` leaves it open.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oneloop::Loop;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

fn new_loop(host: &str) -> Loop {
    match host {
        "default" => Loop::new(),
        "tokio" => oneloop_tokio::new_loop(),
        "glib" => oneloop_glib::new_loop(),
        "calloop" => oneloop_calloop::new_loop(),
        "smol" => oneloop_smol::SmolBackend::new()
            .map_err(oneloop::Error::from)
            .and_then(Loop::with_backend),
        other => panic!("unknown host {other}"),
    }
    .expect("a loop")
}

/// A timer that re-arms itself every 5 ms, counting.
fn tick(lp: &Loop, ticks: Rc<Cell<u32>>) {
    let again = lp.clone();
    lp.call_later(Duration::from_millis(5), move || {
        ticks.set(ticks.get() + 1);
        tick(&again, ticks);
    })
    .expect("call_later");
}

const PYTHON: &std::ffi::CStr = cr#"
import asyncio

async def main():
    running = asyncio.get_running_loop()
    async def handle(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello from python\n")
    line = await reader.readline()
    writer.close()
    srv.close()
    await srv.wait_closed()
    await asyncio.sleep(0.05)  # Rust timers fire meanwhile
    return (f"{line.decode().strip()}|{running is aloop}|{aloop.attached}|"
            f"{aloop.is_running()}|{type(aloop._transports).__name__}")

def done(task):
    exc = task.exception()
    finish(f"error: {exc!r}" if exc else task.result())

aloop.create_task(main()).add_done_callback(done)
"#;

fn run_on(host: &str) {
    let lp = new_loop(host);
    let ticks = Rc::new(Cell::new(0));
    tick(&lp, ticks.clone());
    let outcome = Arc::new(Mutex::new(None::<String>));
    let (got, remote) = (outcome.clone(), lp.remote());
    let aloop = Python::attach(|py| -> PyResult<Py<PyAny>> {
        py.import("sys")?
            .getattr("path")?
            .call_method1("insert", (0, env!("CARGO_MANIFEST_DIR")))?;
        let aloop = oneloop_python::embed::event_loop(py, &lp)?;
        let finish = PyCFunction::new_closure(
            py,
            None,
            None,
            move |args: &Bound<'_, PyTuple>, _kw| -> PyResult<()> {
                *got.lock().unwrap() = Some(args.get_item(0)?.extract()?);
                let _ = remote.stop();
                Ok(())
            },
        )?;
        let globals = PyDict::new(py);
        globals.set_item("aloop", &aloop)?;
        globals.set_item("finish", finish)?;
        py.run(PYTHON, Some(&globals), None)?;
        Ok(aloop.unbind())
    })
    .unwrap_or_else(|e| panic!("{host}: {e}"));

    // A watchdog: a test that hangs fails instead.
    let remote = lp.remote();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        let _ = remote.stop();
    });
    // Run outside Python::attach: the GIL is free while the host waits,
    // and the loop takes it per batch of callbacks.
    lp.run_forever().expect("run_forever");
    drop(watchdog);

    let got = outcome.lock().unwrap().take();
    assert_eq!(
        got.as_deref(),
        Some("HELLO FROM PYTHON|True|True|True|WeakValueDictionary"),
        "{host}"
    );
    // A 5 ms Rust timer armed before Python's work is due before the
    // work's own 50 ms sleep ends, by deadline order, however slow the
    // machine: so it ran at least once, in between.
    assert!(ticks.get() >= 1, "{host}: Rust timers never ran");

    Python::attach(|py| -> PyResult<()> {
        aloop.call_method0(py, "close")?;
        assert!(aloop.call_method0(py, "is_closed")?.extract::<bool>(py)?);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{host}: {e}"));
    // Python's close() detached and left the program's loop open.
    assert!(!lp.is_closed(), "{host}");
    let before = ticks.get();
    lp.call_later(Duration::from_millis(30), {
        let lp = lp.clone();
        move || lp.stop()
    })
    .expect("call_later");
    lp.run_forever().expect("run_forever after Python's close");
    assert!(
        ticks.get() > before,
        "{host}: the loop runs on after Python's close"
    );
    lp.close().expect("close");
}

#[test]
fn python_asyncio_on_the_programs_own_loop_on_every_host() {
    oneloop_python::embed::append_to_inittab();
    Python::initialize();
    for host in ["default", "tokio", "glib", "calloop", "smol"] {
        run_on(host);
    }
}
