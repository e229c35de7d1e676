//! [`LoopFuture`]: the PEP 3156 future, a result slot with done-callbacks that
//! also implements `std::future::Future`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use crate::context;
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::{Loop, LoopInner};
use crate::exception::ExceptionContext;
use crate::fault::Fault;
use crate::task::state::cancelled_error;

/// Where a future is.
pub(crate) enum Slot<T> {
    Pending,
    Done(Result<T>),
    /// Done, and the value was moved out by its one consumer (a [`Task`](crate::Task)'s awaiter).
    Taken,
    Cancelled,
}

/// Identifies a done-callback for [`LoopFuture::remove_done_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type DoneCallback<T> = Box<dyn FnOnce(&LoopFuture<T>)>;

pub(crate) struct FutureInner<T> {
    /// The loop the done-callbacks are scheduled on, weakly: a future the
    /// loop owns (in a callback, a task) must not keep it alive.
    lp: Weak<LoopInner>,
    slot: RefCell<Slot<T>>,
    /// Done-callbacks in registration order.
    callbacks: RefCell<Vec<(CallbackId, DoneCallback<T>)>>,
    next_id: Cell<u64>,
    /// Wakers of the std-future awaiters.
    wakers: RefCell<Vec<Waker>>,
    /// The error was looked at (FU-06).
    retrieved: Cell<bool>,
    /// For a task's result future: cancelling it cancels the task.
    canceller: RefCell<Option<Box<dyn Fn() -> bool>>>,
}

/// A PEP 3156 future (asyncio's `Future`): a result or an error that
/// arrives later, on one loop. Named so that it does not shadow
/// [`std::future::Future`], which it implements.
///
/// Cheap to clone (clones share the slot). Done-callbacks are always
/// scheduled with `call_soon`, never run inside `set_result`,
/// `set_exception` or `cancel` (FU-04). Awaiting it gives `Ok(value)`
/// (cloned: a future may have several awaiters) or the error.
///
/// # Examples
///
/// ```
/// let lp = oneloop::Loop::new()?;
/// let fut = lp.create_future::<u32>();
/// lp.call_soon({ let fut = fut.clone(); move || fut.set_result(7).unwrap() })?;
/// assert_eq!(lp.run_until_complete(fut.clone())??, 7);
/// assert_eq!(fut.result()?, 7);
/// # Ok::<(), oneloop::Error>(())
/// ```
#[doc(alias = "Future")]
pub struct LoopFuture<T> {
    pub(crate) inner: Rc<FutureInner<T>>,
}

impl<T> Clone for LoopFuture<T> {
    fn clone(&self) -> Self {
        LoopFuture {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for LoopFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.inner.slot.borrow() {
            Slot::Pending => "pending",
            Slot::Done(Ok(_)) | Slot::Taken => "finished",
            Slot::Done(Err(_)) => "failed",
            Slot::Cancelled => "cancelled",
        };
        f.debug_struct("LoopFuture").field("state", &state).finish()
    }
}

impl<T: 'static> LoopFuture<T> {
    /// A pending future on `lp` (see [`Loop::create_future`]).
    pub fn new(lp: &Loop) -> LoopFuture<T> {
        LoopFuture {
            inner: Rc::new(FutureInner {
                lp: lp.inner.weak.clone(),
                slot: RefCell::new(Slot::Pending),
                callbacks: RefCell::new(Vec::new()),
                next_id: Cell::new(0),
                wakers: RefCell::new(Vec::new()),
                retrieved: Cell::new(false),
                canceller: RefCell::new(None),
            }),
        }
    }

    /// The loop this future belongs to, while it exists (PEP 3156's
    /// `get_loop`). A future holds its loop weakly, so this is `None` once
    /// every [`Loop`] handle was dropped.
    #[doc(alias = "get_loop")]
    pub fn event_loop(&self) -> Option<Loop> {
        self.inner.lp.upgrade().map(Loop::from_inner)
    }

    /// Whether a result, an error or a cancellation was set.
    pub fn done(&self) -> bool {
        !matches!(*self.inner.slot.borrow(), Slot::Pending)
    }

    /// Whether the future was cancelled (FU-03).
    pub fn cancelled(&self) -> bool {
        matches!(*self.inner.slot.borrow(), Slot::Cancelled)
    }

    /// Set the result and schedule the done-callbacks.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] if the future is already done or
    /// cancelled (FU-02).
    pub fn set_result(&self, value: T) -> Result<()> {
        self.complete(Slot::Done(Ok(value)))
    }

    /// Set an error and schedule the done-callbacks.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] if the future is already done (FU-02).
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::{Error, ErrorKind};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let fut = lp.create_future::<u32>();
    /// fut.set_exception(Error::new(ErrorKind::InvalidArgument, "bad header"))?;
    /// assert_eq!(fut.exception()?.map(|e| e.kind()), Some(ErrorKind::InvalidArgument));
    /// let awaited = lp.run_until_complete(fut.clone())?;
    /// assert_eq!(awaited.unwrap_err().message(), "bad header");
    /// assert_eq!(fut.set_result(1).unwrap_err().kind(), ErrorKind::InvalidState); // done once
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn set_exception(&self, error: Error) -> Result<()> {
        self.complete(Slot::Done(Err(error)))
    }

    /// Cancel the future: returns true and schedules the done-callbacks if it
    /// was pending, false if it was already done (FU-02, FU-03). A task's
    /// result future cancels the task instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::ErrorKind;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let fut = lp.create_future::<u32>();
    /// assert!(fut.cancel());
    /// assert!(fut.cancelled() && !fut.cancel()); // only once
    /// assert_eq!(fut.result().unwrap_err().kind(), ErrorKind::Cancelled);
    /// assert!(lp.run_until_complete(fut)?.unwrap_err().is_cancelled());
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        let canceller = self.inner.canceller.borrow_mut().take();
        if let Some(c) = canceller {
            let pending = c();
            *self.inner.canceller.borrow_mut() = Some(c);
            return pending;
        }
        self.complete(Slot::Cancelled).is_ok()
    }

    /// Cancel without going through a task's canceller (the task's own end).
    pub(crate) fn cancel_now(&self) -> bool {
        self.complete(Slot::Cancelled).is_ok()
    }

    pub(crate) fn set_canceller(&self, c: Box<dyn Fn() -> bool>) {
        *self.inner.canceller.borrow_mut() = Some(c);
    }

    /// Mark the error as seen, so dropping the future does not report it.
    pub(crate) fn mark_retrieved(&self) {
        self.inner.retrieved.set(true);
    }

    /// `result()` or `exception()` looked: at the error if the future is
    /// done; a pending one has none to see yet, and one set later must
    /// still be reported unless retrieved (FU-06).
    fn note_retrieved(&self) {
        if self.done() {
            self.inner.retrieved.set(true);
        }
    }

    fn complete(&self, new: Slot<T>) -> Result<()> {
        {
            let mut slot = self.inner.slot.borrow_mut();
            if !matches!(*slot, Slot::Pending) {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    "the future is already done",
                ));
            }
            *slot = new;
        }
        let canceller = self.inner.canceller.borrow_mut().take();
        drop(canceller);
        let callbacks = std::mem::take(&mut *self.inner.callbacks.borrow_mut());
        let lp = self.event_loop();
        if lp
            .as_ref()
            .is_some_and(|lp| lp.inner.sched.has_fault(Fault::EagerDoneCallbacks))
        {
            for (_, cb) in callbacks {
                cb(self);
            }
            return Ok(());
        }
        // On a closed (or dropped) loop the callbacks are dropped, as
        // everything queued on it is (LC-11).
        if let Some(lp) = lp {
            for (_, cb) in callbacks {
                let fut = self.clone();
                let _ = lp.call_soon_detached(move || cb(&fut));
            }
        }
        let wakers = std::mem::take(&mut *self.inner.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
        Ok(())
    }

    /// The error, `Ok(None)` for a result.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] while pending (FU-01);
    /// [`ErrorKind::Cancelled`] if cancelled (FU-03).
    pub fn exception(&self) -> Result<Option<Error>> {
        self.note_retrieved();
        match &*self.inner.slot.borrow() {
            Slot::Pending => Err(Error::new(
                ErrorKind::InvalidState,
                "the future is still pending",
            )),
            Slot::Cancelled => Err(Error::cancelled()),
            Slot::Done(Ok(_)) | Slot::Taken => Ok(None),
            Slot::Done(Err(e)) => Ok(Some(e.clone())),
        }
    }

    /// Schedule `f(&future)` with `call_soon` once the future is done; on a
    /// future that is already done it is scheduled at once (FU-04).
    ///
    /// # Examples
    ///
    /// The callback is queued, never run inside `set_result`:
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let fut = lp.create_future::<u32>();
    /// let seen = Rc::new(Cell::new(None));
    /// let s = seen.clone();
    /// fut.add_done_callback(move |f| s.set(f.result().ok()));
    /// fut.set_result(5)?;
    /// assert_eq!(seen.get(), None); // queued with call_soon
    /// lp.stop();
    /// lp.run_forever()?; // one iteration
    /// assert_eq!(seen.get(), Some(5));
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn add_done_callback(&self, f: impl FnOnce(&LoopFuture<T>) + 'static) -> CallbackId {
        let id = CallbackId(self.inner.next_id.get());
        self.inner.next_id.set(id.0 + 1);
        if self.done() {
            let fut = self.clone();
            if let Some(lp) = self.event_loop() {
                let _ = lp.call_soon_detached(move || f(&fut));
            }
        } else {
            self.inner.callbacks.borrow_mut().push((id, Box::new(f)));
        }
        id
    }

    /// Remove a done-callback that has not been scheduled yet; returns how
    /// many were removed (0 or 1: closures cannot be compared, so the id
    /// stands for PEP 3156's "every equal entry", FU-05).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// let fut = lp.create_future::<()>();
    /// let id = fut.add_done_callback(|_| unreachable!("removed before it was scheduled"));
    /// assert_eq!(fut.remove_done_callback(id), 1);
    /// assert_eq!(fut.remove_done_callback(id), 0);
    /// fut.set_result(())?;
    /// lp.stop();
    /// lp.run_forever()?;
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        let mut cbs = self.inner.callbacks.borrow_mut();
        let before = cbs.len();
        cbs.retain(|(i, _)| *i != id);
        before - cbs.len()
    }

    /// Poll as an awaiter: `take` extracts the value from a finished slot.
    pub(crate) fn poll_slot(
        &self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut Slot<T>) -> Result<T>,
    ) -> Poll<Result<T>> {
        if let Some(running) = context::running_loop_inner()
            && !std::ptr::eq(Rc::as_ptr(&running), self.inner.lp.as_ptr())
        {
            return Poll::Ready(Err(Error::new(
                ErrorKind::InvalidArgument,
                "this future belongs to another event loop",
            )));
        }
        let task = context::current_task();
        // A cancellation requested of the awaiting task is delivered here, at
        // its next suspension point (CN-01), even if this future is already
        // done: like asyncio, which throws CancelledError into the coroutine
        // instead of sending the result.
        if let Some(task) = &task
            && task.take_cancel_request()
        {
            // A done future's error counts as retrieved by this await, as
            // asyncio's `__wakeup` calls `result()` before throwing the
            // cancellation in (FU-06: not reported when dropped).
            if self.done() {
                self.inner.retrieved.set(true);
            }
            self.cancel();
            return Poll::Ready(Err(cancelled_error(Some(task))));
        }
        let mut slot = self.inner.slot.borrow_mut();
        match &mut *slot {
            Slot::Pending => {
                let waker = cx.waker();
                let mut wakers = self.inner.wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(waker)) {
                    wakers.push(waker.clone());
                }
                drop(wakers);
                drop(slot);
                if let Some(task) = task {
                    let fut = self.clone();
                    task.set_awaiting(Box::new(move || fut.cancel()));
                }
                Poll::Pending
            }
            Slot::Cancelled => {
                drop(slot);
                Poll::Ready(Err(cancelled_error(task.as_deref())))
            }
            Slot::Done(Err(_)) | Slot::Done(Ok(_)) | Slot::Taken => {
                self.inner.retrieved.set(true);
                let out = take(&mut slot);
                Poll::Ready(out)
            }
        }
    }
}

impl<T: Clone + 'static> LoopFuture<T> {
    /// The result.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] while pending (FU-01), never blocking;
    /// the future's error if it failed; [`ErrorKind::Cancelled`] if
    /// cancelled (FU-03).
    ///
    /// # Examples
    ///
    /// ```
    /// use oneloop::ErrorKind;
    ///
    /// let lp = oneloop::Loop::new()?;
    /// let fut = lp.create_future::<&str>();
    /// assert_eq!(fut.result().unwrap_err().kind(), ErrorKind::InvalidState); // pending: never blocks
    /// fut.set_result("ready")?;
    /// assert_eq!(fut.result()?, "ready");
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn result(&self) -> Result<T> {
        self.note_retrieved();
        match &*self.inner.slot.borrow() {
            Slot::Pending => Err(Error::new(
                ErrorKind::InvalidState,
                "the future is still pending",
            )),
            Slot::Cancelled => Err(Error::cancelled()),
            Slot::Done(r) => r.clone(),
            Slot::Taken => Err(Error::new(
                ErrorKind::InvalidState,
                "the result was already taken by the task's awaiter",
            )),
        }
    }
}

impl<T: 'static> LoopFuture<T> {
    /// Await the result by value: for results that are not `Clone`
    /// (`io::Result<T>`, a `File`, a `Vec` you do not want copied), which
    /// `.await` on the future itself (it may have several awaiters, each
    /// given a clone) cannot hand out.
    ///
    /// The value moves out to this awaiter; afterwards
    /// [`result`](LoopFuture::result) and other awaiters get
    /// [`ErrorKind::InvalidState`].
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = oneloop::Loop::new()?;
    /// let job = lp.run_in_executor(|| std::fs::read("/definitely/not/here"))?;
    /// let read: std::io::Result<Vec<u8>> = lp.run_until_complete(job.take())??;
    /// assert!(read.is_err());
    /// # Ok::<(), oneloop::Error>(())
    /// ```
    pub fn take(self) -> Take<T> {
        Take { fut: self }
    }

    /// Poll as the one awaiter that takes the value (a task's output,
    /// [`take`](LoopFuture::take)).
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.poll_slot(cx, |slot| match std::mem::replace(slot, Slot::Taken) {
            Slot::Done(r) => r,
            other => {
                *slot = other;
                Err(Error::new(
                    ErrorKind::InvalidState,
                    "the result was already taken by another awaiter",
                ))
            }
        })
    }
}

/// The future of [`LoopFuture::take`]: the result, by value.
#[must_use = "futures do nothing unless awaited"]
pub struct Take<T> {
    fut: LoopFuture<T>,
}

impl<T> fmt::Debug for Take<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Take").field(&self.fut).finish()
    }
}

impl<T: 'static> std::future::Future for Take<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.fut.poll_take(cx)
    }
}

impl<T: Clone + 'static> std::future::Future for LoopFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.poll_slot(cx, |slot| match slot {
            Slot::Done(r) => r.clone(),
            _ => Err(Error::new(
                ErrorKind::InvalidState,
                "the result was already taken by the task's awaiter",
            )),
        })
    }
}

impl<T> Drop for FutureInner<T> {
    fn drop(&mut self) {
        // FU-06: an error nobody looked at is reported when the future goes.
        if self.retrieved.get() {
            return;
        }
        let Some(lp) = self.lp.upgrade().map(Loop::from_inner) else {
            return;
        };
        if lp.is_closed() {
            return;
        }
        let error = match &*self.slot.borrow() {
            Slot::Done(Err(e)) if e.kind() != ErrorKind::Cancelled => e.clone(),
            _ => return,
        };
        let ctx = ExceptionContext::new("future exception was never retrieved").with_error(error);
        lp.call_exception_handler(ctx);
    }
}

impl Loop {
    /// A new pending [`LoopFuture`] bound to this loop.
    pub fn create_future<T: 'static>(&self) -> LoopFuture<T> {
        LoopFuture::new(self)
    }
}
