//! [`RunContext`]: an ambient context the loop enters around the user code
//! it runs, so that libraries written for another runtime work inside
//! oneloop callbacks and tasks.
//!
//! A library that reaches for "the current runtime" through a thread-local
//! (tokio's `Handle::current()` and `spawn_local`, glib's thread-default
//! context) works in a oneloop task only if that thread-local is set while
//! the task is polled. A `RunContext` sets it: the loop calls
//! [`enter`](RunContext::enter) around every batch of callbacks it
//! dispatches (task steps, timers, fd callbacks, `call_soon` callbacks), in
//! owned and attached mode alike, and around `run_until_complete`'s root
//! poll. Bridges install one per loop (`oneloop_tokio::enable`).
//!
//! Contexts nest in the order they were added: the first one added is the
//! outermost.

use std::any::Any;
use std::fmt;
use std::rc::Rc;

use crate::error::Result;
use crate::event_loop::Loop;

/// An ambient context entered around the code a loop runs.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use oneloop::{Loop, RunContext};
///
/// thread_local!(static INSIDE: Cell<bool> = const { Cell::new(false) });
///
/// struct Flag;
/// impl RunContext for Flag {
///     fn enter(&self, run: &mut dyn FnMut()) {
///         INSIDE.set(true);
///         run();
///         INSIDE.set(false);
///     }
/// }
///
/// let lp = Loop::new()?;
/// lp.add_run_context(Rc::new(Flag))?;
/// let seen = lp.run_until_complete(lp.spawn(async { INSIDE.get() })?)??;
/// assert!(seen && !INSIDE.get());
/// assert!(lp.run_context::<Flag>().is_some());
/// # Ok::<(), oneloop::Error>(())
/// ```
pub trait RunContext: Any {
    /// Set the context up, call `run` exactly once, and tear it down.
    ///
    /// `run` may run any user code, including code that adds or removes
    /// run contexts (the change applies from the next batch). A context
    /// that returns without calling `run` is a bug; the loop then runs the
    /// batch outside it and logs an error, so no work is lost.
    fn enter(&self, run: &mut dyn FnMut());

    /// A name for logs and `Debug` output.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }
}

/// The run contexts of one loop: an immutable list, swapped on change, so
/// a batch holds its own reference while user code adds or removes one.
#[derive(Default)]
pub(crate) struct RunContexts {
    list: std::cell::RefCell<Rc<[Rc<dyn RunContext>]>>,
}

impl fmt::Debug for RunContexts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = self.list.borrow();
        f.debug_list()
            .entries(list.iter().map(|c| c.name()))
            .finish()
    }
}

impl RunContexts {
    /// Run `f` inside every context (the first added outermost); just `f`
    /// when there is none, which costs one borrow and a length check.
    /// Generic, so that the common case (no context) is a direct call the
    /// compiler can inline into the dispatch.
    #[inline]
    pub(crate) fn run(&self, mut f: impl FnMut()) {
        let list = {
            let list = self.list.borrow();
            if list.is_empty() {
                drop(list);
                return f();
            }
            list.clone()
        };
        enter_all(&list, &mut f);
    }

    fn add(&self, ctx: Rc<dyn RunContext>) {
        let mut list = self.list.borrow_mut();
        let mut v: Vec<_> = list.iter().cloned().collect();
        v.push(ctx);
        *list = Rc::from(v);
    }

    fn remove(&self, ctx: &Rc<dyn RunContext>) -> bool {
        let mut list = self.list.borrow_mut();
        let before = list.len();
        let v: Vec<_> = list
            .iter()
            .filter(|c| !Rc::ptr_eq(c, ctx))
            .cloned()
            .collect();
        let removed = v.len() != before;
        *list = Rc::from(v);
        removed
    }

    fn find<T: RunContext>(&self) -> Option<Rc<T>> {
        let list = self.list.borrow();
        list.iter().find_map(|c| {
            let any: Rc<dyn Any> = c.clone();
            any.downcast::<T>().ok()
        })
    }

    /// Take every context out, to be dropped by the caller outside any
    /// borrow (at close: a context's `Drop` may stop a runtime).
    pub(crate) fn take(&self) -> Rc<[Rc<dyn RunContext>]> {
        std::mem::take(&mut *self.list.borrow_mut())
    }
}

fn enter_all(list: &[Rc<dyn RunContext>], f: &mut dyn FnMut()) {
    let Some((first, rest)) = list.split_first() else {
        return f();
    };
    let mut ran = false;
    first.enter(&mut || {
        if !ran {
            ran = true;
            enter_all(rest, f);
        }
    });
    if !ran {
        tracing::error!(
            target: "oneloop",
            "run context {} returned without running the batch; running it outside that context",
            first.name()
        );
        enter_all(rest, f);
    }
}

impl Loop {
    /// Enter `ctx` around every batch of callbacks and task steps this loop
    /// runs from now on, and around `run_until_complete`'s root poll (see
    /// [`RunContext`]). Contexts added earlier are entered outside later
    /// ones. The loop drops its contexts when it closes, after its tasks
    /// and queued callbacks.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) after close.
    pub fn add_run_context(&self, ctx: Rc<dyn RunContext>) -> Result<()> {
        self.check_open()?;
        self.inner.contexts.add(ctx);
        Ok(())
    }

    /// Stop entering `ctx` (from the next batch on). Returns whether it was
    /// installed.
    pub fn remove_run_context(&self, ctx: &Rc<dyn RunContext>) -> bool {
        self.inner.contexts.remove(ctx)
    }

    /// The installed run context of type `T`, if any: how a bridge finds
    /// out that it is already enabled.
    pub fn run_context<T: RunContext>(&self) -> Option<Rc<T>> {
        self.inner.contexts.find::<T>()
    }
}
