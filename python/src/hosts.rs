//! Host names to new oneloop loops: owned, or attached to a host loop the
//! process already runs.

use oneloop::Loop;

/// The hosts this build supports, in `new_event_loop(host=...)` spelling.
pub(crate) fn available() -> Vec<&'static str> {
    let mut hosts = vec!["default"];
    if cfg!(feature = "tokio") {
        hosts.push("tokio");
    }
    if cfg!(feature = "glib") {
        hosts.push("glib");
    }
    if cfg!(feature = "calloop") {
        hosts.push("calloop");
    }
    if cfg!(feature = "smol") {
        hosts.push("smol");
    }
    hosts
}

/// A new loop that owns its host: `run_forever` runs the host loop.
///
/// `None` for a host this build does not know.
pub(crate) fn new_loop(host: &str) -> Option<oneloop::Result<Loop>> {
    Some(match host {
        "default" | "native" => Loop::new(),
        #[cfg(feature = "tokio")]
        "tokio" => oneloop_tokio::new_loop(),
        #[cfg(feature = "glib")]
        "glib" => oneloop_glib::new_loop(),
        #[cfg(feature = "calloop")]
        "calloop" => oneloop_calloop::new_loop(),
        // "async-std": the name before 0.1 (async-std runs on smol's engine).
        #[cfg(feature = "smol")]
        "smol" | "async-std" => oneloop_smol::SmolBackend::new()
            .map_err(oneloop::Error::from)
            .and_then(Loop::with_backend),
        _ => return None,
    })
}

/// A loop attached to the host loop this process already runs on this
/// thread: for `"glib"`, `GLib.MainContext.default()`, the context that
/// PyGObject's `GLib.MainLoop().run()` and `Gtk.Application.run()` iterate
/// (PyGObject and this module share one libglib, so one default context).
///
/// `None` for a host that has nothing to attach to from Python: tokio,
/// calloop and smol loops are made by the Rust program that runs them.
pub(crate) fn attach_loop(host: &str) -> Option<oneloop::Result<Loop>> {
    match host {
        #[cfg(feature = "glib")]
        "glib" => Some(oneloop_glib::attach(&glib::MainContext::default())),
        _ => None,
    }
}
