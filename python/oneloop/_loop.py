"""The asyncio event loop on a oneloop loop.

What runs where:

* **Rust (oneloop)**: the ready queue of ``call_soon``, the timer heap of
  ``call_at``/``call_later``, the fd watching of ``add_reader``/
  ``add_writer`` (and so the *waiting* of every socket, pipe and the
  self-pipe), ``call_soon_threadsafe`` (oneloop's inbox and wake-up), the
  clock, and ``run_forever``/``stop``/``close``. The wait happens inside
  the host loop (epoll, tokio, GLib, calloop or smol) with the GIL
  released.
* **Python (asyncio's own code, reused)**: ``Handle``/``TimerHandle`` (so
  exceptions reach ``call_exception_handler`` with asyncio's context keys),
  tasks and futures, the socket/pipe/SSL transports of ``selector_events``
  and ``unix_events`` (their ``_add_reader``/``_add_writer`` calls land in
  oneloop through the selector below), ``sock_*``, servers, DNS,
  ``run_in_executor``, and asyncio's ``Popen``-based subprocess transport,
  whose exit the loop watches itself (a pidfd on oneloop's fd watching, no
  child watcher, no SIGCHLD handler, no thread).
* **Signals**: ``add_signal_handler`` on an owned loop is oneloop's
  (``Loop::add_signal_handler``: its C handler, its self-pipe, the handle
  run as a oneloop callback); on an attached loop, whose host owns signals,
  asyncio's (``signal.set_wakeup_fd`` on the self-pipe). Python's own
  handlers (Ctrl-C's ``KeyboardInterrupt``, ``asyncio.Runner``'s SIGINT
  handler) wake the loop through the wakeup fd on the self-pipe.
"""

import asyncio
import errno
import os
import selectors
import signal
import socket
import sys
import threading
import weakref
from asyncio import base_events, constants, coroutines, events, sslproto, unix_events

from . import _oneloop, _transports

__all__ = ["OneloopEventLoop", "EventLoopPolicy", "new_event_loop", "run", "HOSTS"]

HOSTS = tuple(_oneloop.HOSTS)


class _TimerHandle(events.TimerHandle):
    """asyncio's ``TimerHandle`` plus the oneloop timer behind it."""

    __slots__ = ("_oneloop_timer",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._oneloop_timer = None


def _run_timed(handle, run):
    """``run()`` (the handle's own ``_run``) as asyncio's ``_run_once`` runs
    a handle in debug mode: ``loop._current_handle`` set meanwhile (the
    exception handler adds its ``handle_traceback``), and a warning when it
    took ``slow_callback_duration`` or longer."""
    loop = handle._loop
    if loop is None or not loop._debug:
        return run()
    try:
        loop._current_handle = handle
        t0 = loop.time()
        run()
        dt = loop.time() - t0
        if dt >= loop.slow_callback_duration:
            base_events.logger.warning(
                "Executing %s took %.3f seconds", base_events._format_handle(handle), dt)
    finally:
        loop._current_handle = None


class _DebugHandle(events.Handle):
    """The handles a loop in debug mode makes: oneloop runs them (the loop
    never runs asyncio's ``_run_once``), so each times itself as
    ``_run_once`` would (see ``_run_timed``). Outside debug mode the loop
    makes plain handles, with no cost added to their runs."""

    __slots__ = ()

    def _run(self):
        _run_timed(self, super()._run)


class _DebugTimerHandle(_TimerHandle):
    """A ``_TimerHandle`` made in debug mode (see ``_DebugHandle``)."""

    __slots__ = ()

    def _run(self):
        _run_timed(self, super()._run)


class _OneloopSelector(selectors._BaseSelectorImpl):
    """A selector whose registrations are oneloop fd watches.

    asyncio's ``BaseSelectorEventLoop`` keeps its ``(reader, writer)``
    handles in selector keys; this selector keeps the same bookkeeping
    (so CPython's ``_add_reader``/``_remove_reader``, its transports and
    their ``repr`` work unchanged) and turns each change into
    ``add_reader``/``remove_reader`` on the oneloop loop, which runs the
    handle when the fd is ready. ``select()`` is never called: oneloop waits.
    """

    def __init__(self, rust):
        super().__init__()
        self._rust = rust

    def register(self, fileobj, events, data=None):
        if (not events) or (events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE)):
            raise ValueError(f"Invalid events: {events!r}")
        key = selectors.SelectorKey(fileobj, self._fileobj_lookup(fileobj), events, data)
        if key.fd in self._fd_to_key:
            raise KeyError(f"{fileobj!r} (FD {key.fd}) is already registered")
        self._watch(key.fd, None, key)
        self._fd_to_key[key.fd] = key
        return key

    def unregister(self, fileobj):
        try:
            key = self._fd_to_key.pop(self._fileobj_lookup(fileobj))
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        self._watch(key.fd, key, None)
        return key

    def modify(self, fileobj, events, data=None):
        try:
            old = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if (not events) or (events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE)):
            raise ValueError(f"Invalid events: {events!r}")
        new = old._replace(events=events, data=data)
        self._watch(old.fd, old, new)
        self._fd_to_key[old.fd] = new
        return new

    def _watch(self, fd, old, new):
        rust = self._rust
        for index, mask, add, remove in (
            (0, selectors.EVENT_READ, rust.add_reader, rust.remove_reader),
            (1, selectors.EVENT_WRITE, rust.add_writer, rust.remove_writer),
        ):
            before = old.data[index] if old is not None and old.events & mask else None
            after = new.data[index] if new is not None and new.events & mask else None
            if after is not None:
                if after is not before:
                    add(fd, after)
            elif before is not None:
                remove(fd)

    def select(self, timeout=None):
        raise RuntimeError("oneloop waits for fds itself; select() is not used")

    def close(self):
        self._fd_to_key.clear()
        self._map = None


class OneloopEventLoop(_oneloop.LoopBase, unix_events.SelectorEventLoop):
    """An asyncio event loop whose scheduling and waiting is a oneloop loop.

    ``host`` picks the host loop (see ``oneloop.HOSTS``). The loop belongs to
    the thread that created it: oneloop loops are single-threaded by type,
    so methods other than ``call_soon_threadsafe`` raise ``RuntimeError``
    from another thread (asyncio raises it only in debug mode).

    ``attach=True`` (``host="glib"`` only) makes an **attached** loop: it
    lives inside ``GLib.MainContext.default()``, which the application
    iterates itself (``GLib.MainLoop().run()``, ``Gtk.Application.run()``).
    Such a loop is running from creation until ``close()``, as oneloop's
    attached loops are: ``asyncio.get_running_loop()`` returns it on this
    thread, tasks made with ``create_task`` run whenever GLib iterates, and
    ``run_forever``/``run_until_complete`` raise ``RuntimeError`` (the host
    runs it). ``stop()`` does nothing (there is no run of ours to end); a
    ``KeyboardInterrupt``/``SystemExit`` out of a callback goes to the
    exception handler, since it cannot unwind through GLib. Close it, from
    outside its callbacks, after the host loop returned.
    """

    # Until BaseEventLoop.__init__ runs: a constructor that failed (an
    # unknown host) leaves a loop that __del__ must see as closed.
    _closed = True
    _attached_state = None
    _child_pidfds = {}

    def __init__(self, host="default", *, attach=False):
        if attach and events._get_running_loop() is not None:
            raise RuntimeError("Cannot attach a loop while another loop is running on this thread")
        self._init(_oneloop.RustLoop(host, attach))

    @classmethod
    def _adopt(cls, rust):
        """The loop on a ``RustLoop`` made in Rust: a oneloop ``Loop`` that a
        Rust program embedding Python runs itself (``oneloop_python::embed``
        in Rust); attached, as glib's attached loop is."""
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot attach a loop while another loop is running on this thread")
        self = cls.__new__(cls)
        self._init(rust)
        return self

    def _init(self, rust):
        self._owner_ident = threading.get_ident()
        self._child_pidfds = {}  # pidfd -> pid of the children being watched
        self._rust = rust
        self._bind_rust(rust)
        self._rust_remote = self._rust.remote()
        # BaseEventLoop.__init__ sets _debug: LoopBase's flag, which also
        # picks asyncio's call_soon and create_future in debug mode.
        super().__init__(_OneloopSelector(self._rust))
        self._rust.set_owner(weakref.ref(self))
        self._clock_resolution = max(self._clock_resolution, self._rust.clock_resolution())
        if self._rust.attached:
            self._enter_attached()

    @property
    def attached(self):
        """Whether the loop is attached to a host loop the application runs."""
        return self._rust.attached

    def _enter_attached(self):
        # What run_forever sets up for its run, for the loop's whole life.
        self._attached_state = sys.get_asyncgen_hooks()
        self._set_coroutine_origin_tracking(self._debug)
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook,
            finalizer=self._asyncgen_finalizer_hook,
        )
        events._set_running_loop(self)

    def _leave_attached(self):
        old_agen_hooks, self._attached_state = self._attached_state, None
        self._thread_id = None
        if events._get_running_loop() is self:
            events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        sys.set_asyncgen_hooks(*old_agen_hooks)

    @property
    def host(self):
        """The host loop this loop runs on (``"default"``, ``"tokio"``, …)."""
        return self._rust.host

    def __repr__(self):
        return (
            f"<{self.__class__.__name__} host={self._rust.host} "
            f"running={self.is_running()} closed={self.is_closed()} debug={self.get_debug()}>"
        )

    def _check_owner(self):
        if threading.get_ident() != self._owner_ident:
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other "
                "than the current one (a oneloop loop belongs to the thread "
                "that created it; use call_soon_threadsafe)"
            )

    # -- time and scheduling: oneloop's ready queue and timer heap --------

    def time(self):
        return self._rust.time()

    def _handle(self, callback, args, context):
        """asyncio's ``Handle``, one that times its run in debug mode."""
        cls = _DebugHandle if self._debug else events.Handle
        return cls(callback, args, self, context)

    def _call_soon(self, callback, args, context):
        self._check_owner()
        handle = self._handle(callback, args, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._rust.call_soon(handle)
        return handle

    def _add_callback(self, handle):
        # asyncio's signal path (_handle_signal) queues ready handles here.
        if not handle._cancelled:
            self._rust.call_soon(handle)

    def call_at(self, when, callback, *args, context=None):
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        self._check_owner()
        if self._debug:
            self._check_callback(callback, "call_at")
        timer = (_DebugTimerHandle if self._debug else _TimerHandle)(
            when, callback, args, self, context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        timer._oneloop_timer = self._rust.call_at(float(when), timer)
        timer._scheduled = True
        return timer

    def _timer_handle_cancelled(self, handle):
        timer = getattr(handle, "_oneloop_timer", None)
        if timer is None:
            return
        if threading.get_ident() != self._owner_ident:
            # TimerHandle.cancel() from another thread (asyncio allows it:
            # the handle is only marked). The oneloop timer belongs to the
            # loop's thread: it stays queued, and when due finds the handle
            # cancelled and runs nothing, as asyncio's heap keeps a
            # cancelled handle until it is due.
            return
        handle._oneloop_timer = None
        timer.cancel()

    def call_soon_threadsafe(self, callback, *args, context=None):
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle = self._handle(callback, args, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._rust_remote.call_soon_threadsafe(handle)
        return handle

    # -- fds: the selector above turns these into oneloop watches ---------

    def _add_reader(self, fd, callback, *args):
        self._check_owner()
        if not self._debug:
            return super()._add_reader(fd, callback, *args)
        return self._add_fd_handle(fd, 0, callback, args)

    def _add_writer(self, fd, callback, *args):
        self._check_owner()
        if not self._debug:
            return super()._add_writer(fd, callback, *args)
        return self._add_fd_handle(fd, 1, callback, args)

    def _add_fd_handle(self, fd, index, callback, args):
        # asyncio's _add_reader/_add_writer, with a handle that times its
        # runs (debug mode, see _DebugHandle).
        self._check_closed()
        handle = self._handle(callback, args, None)
        mask = (selectors.EVENT_READ, selectors.EVENT_WRITE)[index]
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            data = (handle, None) if index == 0 else (None, handle)
            self._selector.register(fd, mask, data)
        else:
            data = list(key.data)
            old, data[index] = data[index], handle
            self._selector.modify(fd, key.events | mask, tuple(data))
            if old is not None:
                old.cancel()
        return handle

    def _remove_reader(self, fd):
        self._check_owner()
        return super()._remove_reader(fd)

    def _remove_writer(self, fd):
        self._check_owner()
        return super()._remove_writer(fd)

    # -- transports: oneloop's Rust transports under asyncio's classes -----
    #
    # asyncio's connection code (create_connection, create_server and its
    # accept loop, create_unix_*, connect_accepted_socket, start_tls,
    # connect_*_pipe, subprocesses' pipes) makes its transports through
    # these factories; each gives it one whose data path is oneloop's.

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        self._check_owner()
        return _transports.SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        # asyncio's TLS (sslproto, a BufferedProtocol) over oneloop's socket.
        self._check_owner()
        ssl_protocol = sslproto.SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        _transports.SocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        self._check_owner()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return _transports.DatagramTransport(self, sock, protocol, address, waiter, extra)
        # oneloop's datagram transport speaks IP; a Unix datagram socket
        # keeps asyncio's transport (its waits are still oneloop's).
        return super()._make_datagram_transport(sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        self._check_owner()
        return _transports.ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        self._check_owner()
        return _transports.WritePipeTransport(self, pipe, protocol, waiter, extra)

    # -- subprocesses: the exit watched by the loop itself -----------------

    async def _make_subprocess_transport(self, protocol, args, shell,
                                         stdin, stdout, stderr, bufsize,
                                         extra=None, **kwargs):
        # asyncio's, without the child watcher: the loop watches the child's
        # exit itself, through oneloop (a pidfd, readable once the child
        # exited, on oneloop's fd watching), so a subprocess needs no SIGCHLD
        # handler and no thread on any host, and works from any thread's
        # loop. Child watchers set on the policy are not used (as uvloop).
        self._check_closed()
        self._check_owner()
        waiter = self.create_future()
        transp = unix_events._UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs)
        self._watch_child(transp.get_pid(), transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _watch_child(self, pid, transp):
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError) as exc:
            if isinstance(exc, ProcessLookupError):
                # Reaped already by someone else's waitpid (as asyncio's
                # PidfdChildWatcher reports it).
                self._child_reaped_elsewhere(pid, transp)
                return
            # No pidfds (not Linux, a kernel before 5.3, a sandbox): a thread
            # waits for this child, as asyncio's ThreadedChildWatcher does.
            threading.Thread(
                target=self._wait_child_in_thread, args=(pid, transp),
                name=f"oneloop-waitpid-{pid}", daemon=True).start()
            return
        self._child_pidfds[pidfd] = pid
        self._add_reader(pidfd, self._child_exited, pidfd, pid, transp)

    def _child_exited(self, pidfd, pid, transp):
        self._remove_reader(pidfd)
        del self._child_pidfds[pidfd]
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)  # the pidfd says it exited: no wait
        except ChildProcessError:
            self._child_reaped_elsewhere(pid, transp)
            return
        transp._process_exited(os.waitstatus_to_exitcode(status))

    def _child_reaped_elsewhere(self, pid, transp):
        unix_events.logger.warning(
            "child process pid %d exit status already read: will report returncode 255", pid)
        self.call_soon(transp._process_exited, 255)

    def _wait_child_in_thread(self, pid, transp):
        try:
            _, status = os.waitpid(pid, 0)
            returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            unix_events.logger.warning(
                "child process pid %d exit status already read: will report returncode 255", pid)
            returncode = 255
        if not self.is_closed():
            try:
                self.call_soon_threadsafe(transp._process_exited, returncode)
            except RuntimeError:
                pass  # closed meanwhile

    def _close_child_watches(self):
        # A loop closed with children still running: stop watching them (the
        # transport's close() or __del__ kills and reaps its child, as
        # asyncio's).
        for pidfd in list(self._child_pidfds):
            self._remove_reader(pidfd)
            os.close(pidfd)
        self._child_pidfds.clear()

    # -- signals: oneloop's Loop::add_signal_handler ------------------------

    def add_signal_handler(self, sig, callback, *args):
        """asyncio's ``add_signal_handler``, through oneloop's signal
        handling on an owned loop: oneloop's C handler and self-pipe wake
        the host's wait and run the handle as a oneloop callback, on every
        host. asyncio's checks and errors: ``TypeError`` for a coroutine or
        a non-int, ``ValueError`` out of range, ``RuntimeError`` off the
        main thread, for a signal that cannot be caught (oneloop also
        refuses SIGSEGV, SIGBUS, SIGFPE and SIGILL, which asyncio accepts),
        and, unlike asyncio, while another loop of the process handles
        signals (oneloop has one owner of signal dispositions at a time).
        """
        if self._rust.attached:
            # The host owns signal dispositions (oneloop refuses them to an
            # attached loop): asyncio's own path, with a Python handler that
            # schedules the handle itself instead of asyncio's no-op, since
            # PyGObject's GLib.MainLoop.run() points the wakeup fd at its own
            # socket while it runs (asyncio's self-pipe then never sees the
            # signal). Python runs the handler on the main thread as soon
            # as any Python code runs, which either wakeup fd causes.
            super().add_signal_handler(sig, callback, *args)
            me = weakref.ref(self)

            def on_signal(signum, frame):
                lp = me()
                if lp is not None and not lp.is_closed():
                    lp._handle_signal(signum)

            signal.signal(sig, on_signal)
            return
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        self._check_owner()
        try:
            # As asyncio: raises ValueError off the main thread, and keeps
            # Python's own handlers waking the loop while handlers exist.
            signal.set_wakeup_fd(self._csock.fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))

        handle = self._handle(callback, args, None)
        old_handle = self._signal_handlers.get(sig)
        self._signal_handlers[sig] = handle
        try:
            # oneloop first: what it refuses (another loop handling signals,
            # a signal it cannot take) it refuses before anything changed,
            # so a refusal leaves every disposition as it was, another
            # loop's handler included.
            self._rust.add_signal_handler(sig, handle)
            if old_handle is None:
                # Python's view of the signal, as asyncio leaves it
                # (signal.getsignal() returns the no-op). signal.signal also
                # puts Python's C handler in the kernel, so oneloop takes the
                # signal back right after (adding again re-installs its C
                # handler, and removal gives back what was there first).
                # Not when replacing a handler: the view is already set.
                try:
                    signal.signal(sig, unix_events._sighandler_noop)
                    signal.siginterrupt(sig, False)
                finally:
                    self._rust.add_signal_handler(sig, handle)
        except (OSError, RuntimeError) as exc:
            if old_handle is None:
                del self._signal_handlers[sig]
                self._rust.remove_signal_handler(sig)
            else:
                self._signal_handlers[sig] = old_handle
            if not self._signal_handlers:
                self._release_wakeup_fd()
            if isinstance(exc, OSError) and exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def remove_signal_handler(self, sig):
        """asyncio's ``remove_signal_handler``: ``True`` if a handler was
        removed; the signal is then ``SIG_DFL`` (SIGINT Python's
        ``default_int_handler``), as asyncio leaves it."""
        if self._rust.attached:
            return super().remove_signal_handler(sig)
        self._check_signal(sig)
        if sig not in self._signal_handlers:
            return False
        self._check_owner()
        del self._signal_handlers[sig]
        self._rust.remove_signal_handler(sig)
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        if not self._signal_handlers:
            self._release_wakeup_fd()
        return True

    def _process_self_data(self, data):
        # The self-pipe gets signal numbers from the wakeup fd. On an owned
        # loop oneloop handles add_signal_handler's signals; on an attached
        # one the Python handler above does (asyncio would run the handle
        # a second time here).
        pass

    def _release_wakeup_fd(self):
        # asyncio sets it to -1 with the last handler gone; during a run the
        # loop keeps it on the self-pipe (_watch_signals) so that Ctrl-C
        # still wakes the wait, and run_forever gives it back at the end.
        fd = self._csock.fileno() if self.is_running() and self._csock is not None else -1
        try:
            signal.set_wakeup_fd(fd)
        except (ValueError, OSError) as exc:
            unix_events.logger.info("set_wakeup_fd(%d) failed: %s", fd, exc)

    # -- running ----------------------------------------------------------

    def run_forever(self):
        self._check_closed()
        self._check_running()
        self._check_owner()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        wakeup = self._watch_signals()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._rust.run_forever()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)
            self._unwatch_signals(wakeup)

    def _watch_signals(self):
        """Let Python signal handlers run while oneloop waits.

        The wait is in Rust with the GIL released, where CPython cannot run
        its signal handlers (Ctrl-C's KeyboardInterrupt, asyncio.Runner's
        SIGINT handler). On the main thread the signal module's wakeup fd is
        pointed at the self-pipe, which oneloop watches: a signal wakes the
        loop, and the self-pipe's reader is Python code, where the pending
        handler runs. Returns the wakeup fd to restore, or None.
        """
        if threading.current_thread() is not threading.main_thread() or self._csock is None:
            return None
        try:
            old = signal.set_wakeup_fd(self._csock.fileno())
        except (ValueError, OSError):
            return None
        if old not in (-1, self._csock.fileno()):
            # Someone else's wakeup fd (another library's): leave it.
            signal.set_wakeup_fd(old)
            return None
        return old

    def _unwatch_signals(self, old):
        if old is None or self._signal_handlers:
            # add_signal_handler() owns the wakeup fd while handlers exist.
            return
        if self._csock is not None and old == self._csock.fileno():
            # add_signal_handler() set it before the run; its handlers are
            # gone now, and asyncio leaves no wakeup fd then.
            old = -1
        try:
            signal.set_wakeup_fd(old)
        except (ValueError, OSError):
            pass

    def stop(self):
        if self._attached_state is not None:
            return
        if threading.get_ident() == self._owner_ident:
            self._rust.stop()
        else:
            # asyncio tolerates this (it only sets a flag); make it safe.
            self._rust_remote.stop()

    def close(self):
        if self._attached_state is not None and not self.is_closed():
            self._check_owner()
            if _oneloop.RustLoop.in_callback():
                raise RuntimeError(
                    "Cannot close an attached event loop from its own callbacks; "
                    "close it after the host loop returned"
                )
            self._leave_attached()
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._check_owner()
        self._close_child_watches()
        super().close()
        self._rust.close()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are ``OneloopEventLoop`` on ``host``."""

    def __init__(self, host="default"):
        super().__init__()
        self._host = host

    def new_event_loop(self):
        return OneloopEventLoop(self._host)


def new_event_loop(host="default", *, attach=False):
    """A new ``OneloopEventLoop`` on ``host`` (one of ``oneloop.HOSTS``).

    ``attach=True`` (glib only): attached to ``GLib.MainContext.default()``,
    which the application runs (see ``OneloopEventLoop``).
    """
    return OneloopEventLoop(host, attach=attach)


def run(main, *, host="default", debug=None):
    """``asyncio.run(main)`` on a oneloop loop on ``host``."""
    with asyncio.Runner(debug=debug, loop_factory=lambda: OneloopEventLoop(host)) as runner:
        return runner.run(main)
