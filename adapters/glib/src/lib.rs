//! oneloop inside a GLib main context: GTK applications.
//!
//! The headline use: a GTK application embeds network and timer code on the
//! GUI thread, with no second runtime and no frozen UI. [`attach`] inserts a
//! oneloop [`Loop`](oneloop::Loop) into the main context that `gtk::Application::run`
//! iterates; [`new_default_loop`] gives an owned loop that runs that same
//! default context itself (GLib-native code runs beside it), and
//! [`new_loop`] an owned loop on a fresh context for tests and worker
//! threads.
//!
//! # Add oneloop to your GTK app
//!
//! ```no_run
//! use std::time::Duration;
//! use gtk::{glib, prelude::*};
//!
//! let app = gtk::Application::builder().application_id("org.example.App").build();
//! let lp = oneloop_glib::attach(&glib::MainContext::default())?; // oneloop inside GTK's loop
//! let l = lp.clone();
//! app.connect_activate(move |app| {
//!     let label = gtk::Label::new(Some("waiting…")); // widgets once GTK has started
//!     gtk::ApplicationWindow::builder().application(app).child(&label).build().present();
//!     l.call_later(Duration::from_secs(1), move || label.set_text("one second later")).unwrap();
//! });
//! app.run();
//! lp.close()?;
//! # Ok::<(), oneloop::Error>(())
//! ```
//!
//! Signal handlers may call `lp.call_soon`, `lp.spawn`, `add_reader`,
//! `run_in_executor`…: the work runs at once, on the GUI thread, between GTK
//! events; glib and gio futures can be awaited in oneloop tasks.
//!
//! # How it works
//!
//! One custom `GSource` per loop ([`GlibBackend`]): it drains oneloop's
//! ready queue, sets its ready time to the earliest oneloop deadline in
//! microseconds (rounded up, so timers are never early despite GLib's
//! millisecond poll), and watches oneloop's fds through one fd, the
//! [`Selector`](oneloop::native::Selector)'s epoll fd, added with
//! `g_source_add_unix_fd` (GLib polls one fd however many oneloop
//! watches). Ordering is oneloop's (asyncio's), not GLib's:
//! there is no GLib source per callback or per timer. See [`GlibBackend`]
//! for the priorities, nested main loops, and the thread rules.
//!
//! # Map of the crate
//!
//! | item | what |
//! |---|---|
//! | [`attach`] | a loop inside a context someone else iterates (GTK) |
//! | [`new_loop`] | an owned loop on a fresh context (`run_*` iterate it) |
//! | [`new_default_loop`] | an owned loop on `MainContext::default()`, so GLib-native code runs beside it |
//! | [`GlibBackend`] | the backend itself: modes, priorities, the context |
//! | [`guest`] | the other way round: a GLib context run by a loop of any adapter (gio futures, GLib sources on tokio, calloop, the default loop) |
//!
//! The `unsafe` code is in two private modules, one per place it is
//! needed: `source.rs` (the custom `GSource`) and `guest.rs` (GLib's
//! external-poll calls, `g_main_context_query`/`check`, `g_poll`); every
//! block states why it is sound.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod backend;
mod guest;
mod source;

pub use backend::{GlibBackend, GlibBuilder, attach, new_default_loop, new_loop};
pub use guest::{GuestContext, guest};

/// The workspace README's examples (the core loop and the GTK snippet),
/// compiled as doctests here, where gtk4 is available, so they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
