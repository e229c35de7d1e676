//! oneloop inside a calloop event loop: Smithay-style compositors and clients.
//!
//! calloop is the event loop of Wayland compositors and clients (Smithay,
//! smithay-client-toolkit). This crate puts a oneloop [`Loop`](oneloop::Loop) on it, so a
//! framework written against oneloop (a protocol client, a timer wheel, a
//! D-Bus helper) runs inside the compositor's own `EventLoop`, on its
//! thread, beside its native sources.
//!
//! # Attached: inside the host's event loop
//!
//! The compositor owns its `EventLoop<'static, State>` and runs it as usual;
//! [`attach`] takes its `LoopHandle` and inserts oneloop's sources. The loop
//! counts as running from then until [`Loop::close`](oneloop::Loop::close): `run_forever` and
//! `run_until_complete` answer [`AlreadyRunning`](oneloop::ErrorKind::AlreadyRunning),
//! because the host drives it.
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use std::time::Duration;
//! use calloop::EventLoop;
//! use calloop::timer::{TimeoutAction, Timer};
//!
//! struct State { redraws: u32 }
//!
//! let mut event_loop: EventLoop<'static, State> = EventLoop::try_new()?;
//! let handle = event_loop.handle();
//! let lp = oneloop_calloop::attach(handle.clone())?;
//!
//! // A native calloop source of the compositor...
//! handle
//!     .insert_source(Timer::from_duration(Duration::from_millis(1)), |_, _, state: &mut State| {
//!         state.redraws += 1;
//!         TimeoutAction::Drop
//!     })
//!     .map_err(|e| e.error)?;
//!
//! // ...and oneloop work beside it, here a task that stops the host.
//! let log = Rc::new(RefCell::new(Vec::new()));
//! let signal = event_loop.get_signal();
//! lp.spawn({
//!     let log = log.clone();
//!     async move {
//!         oneloop::sleep(Duration::from_millis(5)).await?;
//!         log.borrow_mut().push("slept in a oneloop task");
//!         signal.stop();
//!         Ok::<_, oneloop::Error>(())
//!     }
//! })?;
//!
//! let mut state = State { redraws: 0 };
//! event_loop.run(None, &mut state, |_| {})?;
//! assert_eq!(state.redraws, 1);
//! assert_eq!(*log.borrow(), ["slept in a oneloop task"]);
//!
//! // Closing removes every source oneloop inserted; the host lives on.
//! lp.close()?;
//! event_loop.dispatch(Duration::ZERO, &mut state)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Owned: oneloop runs a calloop loop
//!
//! [`new_loop`] makes a loop that owns an `EventLoop<'static, ()>`;
//! `run_forever`/`run_until_complete` dispatch it and `stop` ends them (from
//! another thread through [`Loop::remote`](oneloop::Loop::remote)). Build the [`CalloopBackend`]
//! yourself to keep a [`handle`](CalloopBackend::handle) for native calloop
//! sources on the same loop.
//!
//! ```
//! use std::time::Duration;
//!
//! let lp = oneloop_calloop::new_loop()?;
//! let remote = lp.remote();
//! let worker = std::thread::spawn(move || remote.call_soon_threadsafe(|| println!("hello")));
//! let answer = lp.run_until_complete(async {
//!     oneloop::sleep(Duration::from_millis(2)).await?;
//!     Ok::<_, oneloop::Error>(42)
//! })??;
//! assert_eq!(answer, 42);
//! worker.join().unwrap()?;
//! lp.close()?;
//! # Ok::<(), oneloop::Error>(())
//! ```
//!
//! # Sharing state with the host's data
//!
//! Every calloop callback receives the host's `&mut D`, the compositor
//! state passed to `EventLoop::dispatch`. oneloop callbacks and tasks are
//! `'static` closures that run *outside* those callbacks, so they cannot
//! borrow it: there is no `&mut D` to lend while a oneloop callback runs,
//! and handing one out would alias the host's own borrow. Two patterns work:
//!
//! - **Shared ownership.** Keep the part of the state both sides touch in an
//!   `Rc<RefCell<_>>` (or `Rc<Cell<_>>`), hold one clone in `D` and one in
//!   the oneloop closures. Both sides run on the same thread and never at
//!   the same time, so a borrow never collides as long as no borrow is held
//!   across an `.await`.
//! - **Messages.** Send requests to the host through a calloop
//!   [`channel`](calloop::channel::channel) whose callback receives
//!   `&mut D`; the host answers through a oneloop [`Future`](oneloop::LoopFuture)
//!   it completes, or by `call_soon`.
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use calloop::EventLoop;
//! use calloop::channel::{channel, Event};
//!
//! struct Compositor { title: String, shared: Rc<RefCell<u32>> }
//!
//! let mut event_loop: EventLoop<'static, Compositor> = EventLoop::try_new()?;
//! let lp = oneloop_calloop::attach(event_loop.handle())?;
//! let shared = Rc::new(RefCell::new(0));
//! let mut state = Compositor { title: String::new(), shared: shared.clone() };
//!
//! // Messages: oneloop code asks, the host's callback holds `&mut Compositor`.
//! let (to_host, requests) = channel::<String>();
//! event_loop
//!     .handle()
//!     .insert_source(requests, |event, _, state: &mut Compositor| {
//!         if let Event::Msg(title) = event {
//!             state.title = title;
//!         }
//!     })
//!     .map_err(|e| e.error)?;
//!
//! lp.call_soon(move || {
//!     *shared.borrow_mut() += 1; // shared ownership
//!     to_host.send("oneloop".to_owned()).unwrap(); // a message
//! })?;
//! for _ in 0..3 {
//!     event_loop.dispatch(std::time::Duration::from_millis(10), &mut state)?;
//! }
//! assert_eq!(*state.shared.borrow(), 1);
//! assert_eq!(state.title, "oneloop");
//! lp.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guest: a calloop loop on any other loop
//!
//! The other way round, [`guest`] runs a calloop `EventLoop` (its sources,
//! idles and timers) on a oneloop loop of any adapter: its poller fd is
//! watched with the loop's fd watching, and the deadlines of its timers
//! made with [`GuestTimers`] are one loop timer. calloop does not publish
//! its next timer deadline, so a plain `calloop::timer::Timer` fires only
//! when the guest dispatches for another reason; the [`guest`] docs say
//! why and what else differs from calloop's own `run`.
//!
//! # How it maps onto calloop
//!
//! An attached loop inserts two calloop sources, whatever it watches and
//! schedules: one level-triggered [`Generic`](calloop::generic::Generic)
//! over the loop's [`Selector`](oneloop::native::Selector) (a private epoll
//! set holding every watched fd, each with its reader's and writer's
//! interest, and the eventfd that is both "dispatch soon" and the wake of
//! `call_soon_threadsafe`), and one [`Timer`](calloop::timer::Timer) at the
//! earliest oneloop deadline; never one calloop source per callback, timer
//! or fd. An owned loop inserts only the `Generic`: its turn polls with the
//! armed deadline as timeout (zero when callbacks are ready).
//!
//! When the selector reports something, the oneloop iteration runs in the
//! `Generic`'s callback, right after its select: every fd of the loop is
//! behind that one select, so nothing of oneloop's comes later in the poll.
//! When only the timer fired (attached), a calloop idle runs the iteration
//! after every event of the poll; when nothing fired but callbacks are
//! ready or a deadline passed (owned), the turn runs it once
//! `EventLoop::dispatch` returned. So:
//!
//! - calloop-native sources and oneloop callbacks interleave: each host
//!   `dispatch` delivers the host's events and runs one oneloop batch (two
//!   when the selector and the attached timer both fire in one poll), and
//!   work a batch queues waits for the next poll (neither starves the
//!   other);
//! - adding, removing or changing fd interest from inside a oneloop
//!   callback is an `epoll_ctl` on the selector and touches no calloop
//!   source, so it takes effect at once, and a removed fd's readiness is
//!   never reported again; a callback that closes the loop removes the
//!   source being dispatched, which calloop supports;
//! - calloop cannot re-enter `dispatch` while it runs (the host holds
//!   `&mut EventLoop`), so a oneloop callback can never be re-entered from a
//!   nested host loop: there is none.
//!
//! Timers fire once `Instant::now()` passed their deadline (never early);
//! calloop's poller waits on a timerfd on Linux, so they are late by the
//! scheduling latency only.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod backend;
mod guest;
mod sources;

pub use backend::{CalloopBackend, CalloopBuilder, attach, attach_with, new_loop};
pub use guest::{CalloopGuest, GuestTimer, GuestTimers, guest};
