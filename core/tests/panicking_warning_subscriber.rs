//! Debug mode's slow-callback warning, under a `tracing` subscriber that
//! panics on warnings: the panic is reported to the exception handler as
//! the callback's own would be, and the batch goes on. Its own test binary,
//! as `panicking_subscriber.rs` (`tracing` caches per call site whether
//! anyone listens).

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use oneloop::{ExceptionContext, Loop, LoopBuilder};
use util::PanicOn;

#[test]
fn a_subscriber_panicking_on_the_slow_callback_warning_is_reported_and_the_batch_goes_on() {
    let lp = LoopBuilder::new()
        .debug(true)
        .slow_callback_duration(Duration::ZERO)
        .build()
        .unwrap();
    let reports = Rc::new(RefCell::new(Vec::new()));
    {
        let reports = reports.clone();
        lp.set_exception_handler(Some(move |_: &Loop, ctx: &ExceptionContext| {
            reports.borrow_mut().push(ctx.message().to_owned());
        }));
    }
    let ran = Rc::new(RefCell::new(Vec::new()));
    for i in 0..2 {
        let ran = ran.clone();
        lp.call_soon(move || ran.borrow_mut().push(i)).unwrap();
    }
    lp.stop();
    {
        let _sub = tracing::subscriber::set_default(PanicOn(tracing::Level::WARN));
        lp.run_forever().expect("the run returns");
    }
    assert_eq!(*ran.borrow(), [0, 1], "every callback of the batch ran");
    assert_eq!(
        *reports.borrow(),
        [
            "slow-callback warning panicked",
            "slow-callback warning panicked"
        ]
    );
    lp.close().unwrap();
}
