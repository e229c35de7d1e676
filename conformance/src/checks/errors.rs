//! `ER`: errors and panics — caught at the callback boundary and reported
//! during the run; the fatal class propagates (PEP 3156 §Exceptions, D3).

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

use oneloop::{ErrorKind, ExceptionContext, Loop, PanicPolicy};

use crate::Env;
use crate::spec::Caps;

/// What a recording handler saw, one entry per report.
type Seen = Rc<RefCell<Vec<Report>>>;

/// One report: message, error kind, panic message, where the callback was
/// scheduled (file and line: the Rust form of asyncio's "handle" in the
/// context).
type Report = (
    String,
    Option<ErrorKind>,
    Option<String>,
    Option<String>,
    Option<u32>,
);

fn recording_handler(lp: &Loop) -> Seen {
    let seen: Seen = Rc::default();
    let s = seen.clone();
    lp.set_exception_handler(Some(move |_: &Loop, ctx: &ExceptionContext| {
        s.borrow_mut().push((
            ctx.message().to_owned(),
            ctx.error().map(|e| e.kind()),
            ctx.panic_message().map(str::to_owned),
            ctx.location().map(|l| l.file().to_owned()),
            ctx.location().map(|l| l.line()),
        ))
    }));
    seen
}

/// ER-01 (MUST): an ordinary failure (a panic) in a callback is caught and
/// passed to the exception handler with a context; the loop keeps running
/// the remaining callbacks, and the report happens during the run, not when
/// the loop closes.
pub fn callback_panic_is_reported_during_run(env: &Env) {
    let lp = env.lp();
    let seen = recording_handler(lp);
    let after = Rc::new(Cell::new(false));
    let reported_during_run = Rc::new(Cell::new(None));
    lp.call_soon(|| panic!("deliberate callback panic (ER-01)"))
        .unwrap();
    lp.call_soon({
        let after = after.clone();
        move || after.set(true)
    })
    .unwrap();
    lp.call_later(Duration::from_millis(20), {
        let (seen, r) = (seen.clone(), reported_during_run.clone());
        move || r.set(Some(seen.borrow().len()))
    })
    .unwrap();
    env.run_until_true(|| reported_during_run.get().is_some());
    env.reinstall_tripwire();
    assert!(
        after.get(),
        "the callback after the panicking one must still run"
    );
    assert_eq!(
        reported_during_run.get(),
        Some(1),
        "the panic must be reported during the run"
    );
    let seen = seen.borrow();
    let (message, kind, panic, location, _) = &seen[0];
    assert!(!message.is_empty(), "the context must carry a message");
    assert_eq!(*kind, Some(ErrorKind::Panicked), "the context's error");
    assert!(
        panic
            .as_deref()
            .is_some_and(|p| p.contains("deliberate callback panic")),
        "the context must carry the panic message: {panic:?}"
    );
    assert!(
        location
            .as_deref()
            .is_some_and(|f| f.ends_with("errors.rs")),
        "the context must say where the failing callback was scheduled: {location:?}"
    );
    drop(seen);
    several_panics_in_one_batch(env);
}

/// ER-01, continued: several panics in one batch, from every kind of work
/// (a detached callback, one with a handle, a task step, an fd callback),
/// are each reported with their own call site, and the rest of the batch
/// runs, in order.
fn several_panics_in_one_batch(env: &Env) {
    let lp = env.lp();
    let seen = recording_handler(lp);
    let ran = super::trace();
    // Each scheduling call on one line of its own: the report names it.
    let detached = || panic!("deliberate panic, detached (ER-01)");
    let with_handle = || panic!("deliberate panic, with a handle (ER-01)");
    let in_task = async { panic!("deliberate panic, task (ER-01)") };
    lp.call_soon_detached(super::push(&ran, "1")).unwrap();
    let detached_line = line!() + 1;
    lp.call_soon_detached(detached).unwrap();
    lp.call_soon(super::push(&ran, "2")).unwrap();
    let handle_line = line!() + 1;
    lp.call_soon(with_handle).unwrap();
    let task_line = line!() + 1;
    let task: oneloop::Task<()> = lp.spawn(in_task).unwrap();
    lp.call_soon_detached(super::push(&ran, "3")).unwrap();
    let mut want = vec![
        ("detached", detached_line),
        ("with a handle", handle_line),
        ("task", task_line),
    ];
    let fd = if env.has(Caps::FD) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        let b = Rc::new(b);
        let fd_line = line!() + 1;
        lp.add_reader(&*b, {
            let (lp, b) = (lp.clone(), b.clone());
            move || {
                lp.remove_reader(&*b);
                panic!("deliberate panic, fd callback (ER-01)")
            }
        })
        .unwrap();
        want.push(("fd callback", fd_line));
        Some((a, b))
    } else {
        None
    };
    let n = want.len();
    env.run_until_true(|| seen.borrow().len() >= n && ran.borrow().len() == 3);
    env.run_briefly();
    env.reinstall_tripwire();
    assert_eq!(
        *ran.borrow(),
        ["1", "2", "3"],
        "the callbacks beside the panicking ones must all run, in order"
    );
    let mut got: Vec<(String, Option<u32>)> = seen
        .borrow()
        .iter()
        .map(|(_, _, panic, file, line)| {
            assert!(
                file.as_deref().is_some_and(|f| f.ends_with("errors.rs")),
                "a report without its call site: {panic:?} at {file:?}"
            );
            (panic.clone().unwrap_or_default(), *line)
        })
        .collect();
    got.sort_by_key(|(_, line)| *line);
    let want: Vec<(String, Option<u32>)> = want
        .into_iter()
        .map(|(what, line)| (format!("deliberate panic, {what} (ER-01)"), Some(line)))
        .collect();
    assert_eq!(
        got, want,
        "each panic reported once, with the line that scheduled it"
    );
    drop((task, fd));
}

/// ER-02 (MUST): `set_exception_handler` installs a handler, `None`
/// restores the default, and `call_exception_handler(ctx)` routes through
/// whichever is current.
pub fn exception_handler_can_be_set_and_reset(env: &Env) {
    let lp = env.lp();
    let seen = recording_handler(lp);
    assert!(lp.has_exception_handler());
    lp.call_exception_handler(ExceptionContext::new("routed (ER-02)"));
    assert_eq!(
        seen.borrow().len(),
        1,
        "call_exception_handler must reach the custom handler"
    );
    assert_eq!(seen.borrow()[0].0, "routed (ER-02)");
    lp.set_exception_handler(None::<fn(&Loop, &ExceptionContext)>);
    assert!(
        !lp.has_exception_handler(),
        "None must restore the default handler"
    );
    lp.call_exception_handler(ExceptionContext::new(
        "to the default handler (ER-02), expected in the log",
    ));
    assert_eq!(
        seen.borrow().len(),
        1,
        "the removed handler was still called"
    );
    env.reinstall_tripwire();
}

/// ER-03 (SHOULD): an exception handler that itself fails (panics) is
/// caught, and the loop survives.
pub fn panicking_handler_is_survived(env: &Env) {
    let lp = env.lp();
    let calls = Rc::new(Cell::new(0));
    lp.set_exception_handler(Some({
        let calls = calls.clone();
        move |_: &Loop, _: &ExceptionContext| {
            calls.set(calls.get() + 1);
            panic!("deliberate handler panic (ER-03)");
        }
    }));
    let direct = catch_unwind(AssertUnwindSafe(|| {
        lp.call_exception_handler(ExceptionContext::new("direct (ER-03)"))
    }));
    assert!(
        direct.is_ok(),
        "a panicking handler unwound out of call_exception_handler"
    );
    let after = Rc::new(Cell::new(false));
    lp.call_soon(|| panic!("deliberate callback panic (ER-03)"))
        .unwrap();
    lp.call_soon({
        let after = after.clone();
        move || after.set(true)
    })
    .unwrap();
    env.run_until_true(|| after.get());
    env.reinstall_tripwire();
    assert_eq!(calls.get(), 2, "the handler was called for both reports");
}

/// The payload of ER-04's fatal panic: it must come out of `run_*` as is.
#[derive(Debug, PartialEq)]
struct FatalPayload(u32);

/// ER-04 (MUST): fatal-class failures (`PanicPolicy::Propagate`, the
/// analogue of `BaseException`) propagate out of `run_*`, leave the loop
/// open, and the loop can be run again.
pub fn fatal_panic_propagates_and_loop_is_reusable(env: &Env) {
    let lp = env.lp();
    lp.set_panic_policy(PanicPolicy::Propagate);
    let after = Rc::new(Cell::new(false));
    lp.call_soon(|| std::panic::panic_any(FatalPayload(42)))
        .unwrap();
    lp.call_soon({
        let after = after.clone();
        move || after.set(true)
    })
    .unwrap();
    let escaped = catch_unwind(AssertUnwindSafe(|| lp.run_forever()));
    let payload = escaped.expect_err("the panic must propagate out of run_forever");
    assert_eq!(
        payload.downcast_ref::<FatalPayload>(),
        Some(&FatalPayload(42)),
        "the panic left run_forever with another payload"
    );
    assert!(
        !after.get(),
        "the run went on past the fatal panic: the rest of the batch ran before it left"
    );
    assert!(!lp.is_closed(), "the loop must stay open");
    assert!(
        !lp.is_running(),
        "the loop must not count as running after the panic left it"
    );
    lp.set_panic_policy(PanicPolicy::Report);
    // Nothing queued is lost: the rest of the batch runs in the next run.
    env.run_until_true(|| after.get());
    lp.call_soon({
        let lp = lp.clone();
        move || lp.stop()
    })
    .unwrap();
    env.run_forever().expect("run_forever after a fatal panic");
}
