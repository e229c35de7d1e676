//! `pick_loop` and `LoopKind`: every `--loop` name gives a working loop of
//! the right kind.

use std::time::Duration;

use oneloop::ErrorKind;
use oneloop_examples::{LoopKind, pick_loop};

/// Each name builds an owned loop that runs timers, tasks and callbacks,
/// and the names round-trip through `Display`/`FromStr`.
#[test]
fn every_name_gives_a_running_loop() {
    for kind in LoopKind::ALL {
        assert_eq!(kind.name().parse::<LoopKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), kind.name());
        let lp = pick_loop(kind.name()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(!lp.is_attached(), "{kind}: the examples need an owned loop");
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let o = order.clone();
        lp.call_soon(move || o.borrow_mut().push("callback"))
            .unwrap();
        let o = order.clone();
        let got = lp
            .run_until_complete(async move {
                oneloop::sleep(Duration::from_millis(1)).await?;
                o.borrow_mut().push("task");
                Ok::<_, oneloop::Error>(kind.name())
            })
            .unwrap()
            .unwrap();
        assert_eq!(got, kind.name());
        assert_eq!(*order.borrow(), ["callback", "task"], "{kind}");
        lp.close().unwrap();
    }
}

/// The backends are the ones named, not the default loop five times.
#[test]
fn names_pick_distinct_backends() {
    let mut backends: Vec<String> = LoopKind::ALL
        .iter()
        .map(|k| {
            let lp = k.build().unwrap();
            let name = lp.backend_name().to_owned();
            lp.close().unwrap();
            name
        })
        .collect();
    backends.sort();
    backends.dedup();
    assert_eq!(backends.len(), LoopKind::ALL.len(), "{backends:?}");
}

/// Aliases users reach for are accepted; anything else is an
/// `InvalidArgument` that lists the valid names.
#[test]
fn aliases_and_unknown_names() {
    assert_eq!("smol".parse::<LoopKind>().unwrap(), LoopKind::Smol);
    assert_eq!("async-std".parse::<LoopKind>().unwrap(), LoopKind::Smol);
    assert_eq!("async_std".parse::<LoopKind>().unwrap(), LoopKind::Smol);
    assert_eq!("gtk".parse::<LoopKind>().unwrap(), LoopKind::Glib);
    assert_eq!("default".parse::<LoopKind>().unwrap(), LoopKind::Native);
    let err = pick_loop("Tokio").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string()
            .contains("native, tokio, smol, glib, calloop"),
        "{err}"
    );
}
