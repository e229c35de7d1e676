//! [`Gate`]: how every transport calls its protocol (the `transport` module
//! docs, invariant 1).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::error::{Error, ErrorKind};
use crate::event_loop::Loop;
use crate::exception::{ExceptionContext, PanicPolicy, panic_message};

/// A protocol and the one door to it.
///
/// # Invariants
/// - **One caller, never re-entrant.** `in_call` is true while a protocol
///   method is on the stack. A notification raised meanwhile (a
///   `pause_writing` from a `write()` inside `data_received`, a
///   `connection_lost` from an `abort()`) is queued in `pending` and
///   delivered, in order, when the running method returns.
/// - **No borrow across user code.** The protocol is moved out of its cell
///   while a method of it runs, so the method may call anything of its
///   transport; `pending` is borrowed only to push or pop. (`protocol` and
///   `panic` are `Cell`s: only ever moved in or out, never borrowed, which
///   is also the cheapest on every read a transport makes.)
/// - **Panics stop at the gate.** A protocol panic is caught; under
///   [`PanicPolicy::Propagate`] the first one is kept and resumed when the
///   gate opens again, outside every transport borrow (ER-04); otherwise it
///   goes to the loop's exception handler. Either way the transport decides
///   what becomes of the connection.
/// - After [`take`](Gate::take) (past `connection_lost`), nothing reaches
///   the protocol again and queued notes are dropped.
pub(super) struct Gate<P: ?Sized, N> {
    protocol: Cell<Option<Box<P>>>,
    /// [`take`](Gate::take) ran: a protocol out on a call is dropped when
    /// it returns instead of going back.
    taken: Cell<bool>,
    in_call: Cell<bool>,
    pending: RefCell<VecDeque<N>>,
    panic: Cell<Option<Box<dyn Any + Send>>>,
}

/// What became of one protocol call.
pub(super) enum Invoked<R> {
    /// It returned.
    Ran(R),
    /// There is no protocol any more (after `connection_lost`).
    Gone,
    /// It panicked; the payload is for [`Gate::panicked`].
    Panicked(Box<dyn Any + Send>),
}

impl<P: ?Sized, N> Gate<P, N> {
    pub(super) fn new(protocol: Box<P>) -> Gate<P, N> {
        Gate {
            protocol: Cell::new(Some(protocol)),
            taken: Cell::new(false),
            in_call: Cell::new(false),
            pending: RefCell::new(VecDeque::new()),
            panic: Cell::new(None),
        }
    }

    /// Whether a protocol method is on the stack.
    #[cfg(feature = "net")]
    pub(super) fn busy(&self) -> bool {
        self.in_call.get()
    }

    /// Queue `note`; if no protocol method is running, deliver it (and what
    /// queues meanwhile) through `deliver` now.
    pub(super) fn notify(&self, note: N, deliver: impl FnMut(N)) {
        self.pending.borrow_mut().push_back(note);
        if !self.in_call.replace(true) {
            self.drain(deliver);
        }
    }

    /// Queue `note` without delivering it: for a caller that found the gate
    /// busy; the running method's return delivers it.
    #[cfg(feature = "process")]
    pub(super) fn queue(&self, note: N) {
        self.pending.borrow_mut().push_back(note);
    }

    /// Make a direct call `f` (one that must not wait in a queue:
    /// `data_received` on a borrowed buffer) if no protocol method is
    /// running, then deliver what queued meanwhile. Returns false, without
    /// calling `f`, if one is.
    pub(super) fn call(&self, f: impl FnOnce(), deliver: impl FnMut(N)) -> bool {
        if self.in_call.replace(true) {
            return false;
        }
        f();
        self.drain(deliver);
        true
    }

    /// Deliver queued notes until none is left, open the gate, then resume
    /// a kept panic. `in_call` is true on entry.
    fn drain(&self, mut deliver: impl FnMut(N)) {
        loop {
            let note = self.pending.borrow_mut().pop_front();
            match note {
                Some(note) => deliver(note),
                None => break,
            }
        }
        self.in_call.set(false);
        if let Some(payload) = self.panic.take() {
            resume_unwind(payload);
        }
    }

    /// Call the protocol with no borrow held.
    pub(super) fn invoke<R>(&self, f: impl FnOnce(&mut P) -> R) -> Invoked<R> {
        let Some(mut p) = self.protocol.take() else {
            return Invoked::Gone;
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut *p)));
        // It goes back, unless the transport was torn down meanwhile (its
        // loop closed under the call): then it is dropped here, no borrow
        // held.
        if self.taken.get() {
            drop(p);
        } else {
            self.protocol.set(Some(p));
        }
        match outcome {
            Ok(r) => Invoked::Ran(r),
            Err(payload) => Invoked::Panicked(payload),
        }
    }

    /// A protocol method `what` of a `kind` ("protocol", "datagram
    /// protocol") panicked with `payload`: keep it for `Propagate`, or tell
    /// the loop's exception handler, saying what became of the transport
    /// (`outcome`). Returns the error the transport closes with.
    pub(super) fn panicked(
        &self,
        lp: Option<&Loop>,
        kind: &str,
        what: &str,
        outcome: &str,
        payload: Box<dyn Any + Send>,
    ) -> Error {
        let msg = panic_message(&*payload);
        let err = Error::new(
            ErrorKind::Panicked,
            format!("{kind} method {what} panicked: {msg}"),
        );
        if lp.is_some_and(|lp| lp.panic_policy() == PanicPolicy::Propagate) {
            // The first panic is the one resumed; a later one is dropped.
            let first = self.panic.take().unwrap_or(payload);
            self.panic.set(Some(first));
        } else if let Some(lp) = lp {
            lp.call_exception_handler(
                ExceptionContext::new(format!("{kind} method {what} panicked; {outcome}"))
                    .with_panic(msg)
                    .with_error(err.clone()),
            );
        }
        err
    }

    /// The protocol, for good: nothing reaches it again, and what was
    /// queued is dropped. Both are handed back so that the caller drops
    /// them outside every borrow (either may hold the transport).
    pub(super) fn take(&self) -> (Option<Box<P>>, VecDeque<N>) {
        self.taken.set(true);
        let protocol = self.protocol.take();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        (protocol, pending)
    }
}
