"""asyncio transports whose data path is oneloop's Rust transport.

Each class here is an ordinary subclass of asyncio's transport classes
(``isinstance(t, asyncio.Transport)`` holds, ``loop.sendfile``'s fallback
accepts it), and its data path is a ``oneloop._oneloop.Stream`` (or
``Datagram``): oneloop's ``Transport`` in Rust reads, buffers, writes and
does flow control, and calls the protocol's ``data_received`` (or a
``BufferedProtocol``'s ``get_buffer``/``buffer_updated``) directly.

The methods called on every read or write (``write``, ``is_closing``,
``get_write_buffer_size`` …) are the Rust object's own: on
``SocketTransport`` C methods of the class (so that CPython specialises
their calls, as for uvloop's), on the others bound into the instance; a
call is one C call, with no Python frame in between.

What happens once per connection, or rarely, is asyncio's own logic, kept
here in Python and called by the Rust side: ``_connection_made`` (the
protocol's ``connection_made``, then the waiter), ``_eof_received``,
``_connection_lost`` (then the socket or pipe is closed and the server
detached), ``_pause_writing``/``_resume_writing``, and
``_protocol_failed`` for a protocol method that raised (asyncio's
``_fatal_error``: reported, transport aborted).

oneloop watches a duplicate of the socket's or pipe's fd and closes it
itself; the Python socket or pipe object keeps its own fd, so that
``get_extra_info('socket')`` and ``'pipe'`` work as in asyncio, and is
closed after ``connection_lost``, as asyncio closes it.
"""

import errno
import os
import stat
import warnings
from asyncio import base_events, constants, futures, transports, trsock
from asyncio.log import logger

from . import _oneloop

__all__ = ["SocketTransport", "ReadPipeTransport", "WritePipeTransport", "DatagramTransport"]


def _socket_extra(extra, sock):
    """asyncio's socket transports' extra info: the socket, its own address
    and its peer's (``None`` where the call fails; a peername given by the
    caller is kept)."""
    extra["socket"] = trsock.TransportSocket(sock)
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    if "peername" not in extra:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None

class _RustTransport:
    """What every transport here shares (a mixin for asyncio's classes)."""

    # Defaults, for __del__ and __repr__ of a half-constructed transport.
    _rs = None
    _protocol = None
    _waiter = None
    _loop = None

    # The Rust object's methods bound into the instance (see the module docs).
    _BOUND = ("is_closing",)

    def _start(self, loop, fd, protocol, waiter, kind):
        self._protocol = protocol
        self._waiter = waiter
        self._bind(loop._rust.open_stream(self, fd, protocol, kind))

    def _bind(self, rs):
        self._rs = rs
        for name in self._BOUND:
            setattr(self, name, getattr(rs, name))

    def get_protocol(self):
        return self._protocol

    def set_protocol(self, protocol):
        self._rs.set_protocol(protocol)
        self._protocol = protocol

    def is_closing(self):
        return self._rs.is_closing()

    def close(self):
        self._rs.close()

    def abort(self):
        self._rs.abort()

    # -- called by the Rust side ------------------------------------------

    def _connection_made(self):
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, "Exception in callback protocol.connection_made()")
        finally:
            waiter, self._waiter = self._waiter, None
            if waiter is not None:
                futures._set_result_unless_cancelled(waiter, None)

    def _eof_received(self):
        try:
            return self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return True

    def _connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as err:
            self._report(err, "Exception in callback protocol.connection_lost()")
        finally:
            self._release()
            self._protocol = None
            self._loop = None

    def _pause_writing(self):
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, "protocol.pause_writing() failed")

    def _resume_writing(self):
        try:
            self._protocol.resume_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, "protocol.resume_writing() failed")

    def _protocol_failed(self, exc, message):
        self._fatal_error(exc, message)

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(exc, message)
        self._force_close(exc)

    def _force_close(self, exc):
        self._rs.fail(exc)

    def _report(self, exc, message):
        self._loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            }
        )

    # -- repr and collection ------------------------------------------------

    def _rust_state(self):
        """``(closing, reading, writing, bufsize)``, or None off the loop's thread."""
        # A slot (SocketTransport) hides the class's default: read it so.
        rs = getattr(self, "_rs", None)
        if rs is None:
            return None
        try:
            return rs.state()
        except RuntimeError:
            return None

    def _loop_open(self):
        return self._loop is not None and not self._loop.is_closed()


class SocketTransport(_RustTransport, transports._FlowControlMixin, transports.Transport):
    """A TCP or Unix stream socket (asyncio's ``_SelectorSocketTransport``)."""

    _start_tls_compatible = True
    # loop.sendfile() hands the socket to os.sendfile() once the buffer is
    # empty (asyncio's selector loop does the same, in _sendfile_native).
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    # The data path (write, writelines, is_closing, is_reading,
    # pause_reading, resume_reading, get_write_buffer_size) is C methods of
    # this class, installed below, which read the Rust object from this
    # slot: found and called as uvloop's methods are (see
    # oneloop/src/socket_methods.rs), with no instance attribute bound.
    __slots__ = ("_rs",)
    _BOUND = ()

    _sock = None
    _server = None
    _empty_waiter = None
    # While the empty waiter waits: the water marks to restore and whether
    # the protocol was paused before (see _make_empty_waiter).
    _drain_watch = None

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        self._rs = None
        transports.BaseTransport.__init__(self, extra)
        _socket_extra(self._extra, sock)
        self._loop = loop
        self._sock_fd = sock.fileno()
        base_events._set_nodelay(sock)
        # As asyncio's constructor: the server counts the connection first
        # (its _attach() refuses a closed server, and then nothing starts).
        if server is not None:
            server._attach()
        try:
            self._start(loop, self._sock_fd, protocol, waiter, "socket")
        except BaseException:
            if server is not None:
                server._detach()
            raise
        self._sock = sock
        self._server = server
        loop._transports[self._sock_fd] = self

    # _FlowControlMixin's slot, read from oneloop's transport (the
    # sendfile fallback reads it).
    @property
    def _protocol_paused(self):
        return self._rs.is_writing_paused()

    def write_eof(self):
        self._rs.write_eof()

    def can_write_eof(self):
        return True

    def get_write_buffer_limits(self):
        return self._rs.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._rs.set_write_buffer_limits(high, low)

    def _release(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        server, self._server = self._server, None
        if server is not None:
            server._detach()
        waiter = self._empty_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # -- native sendfile (asyncio's selector loop calls these) ------------

    def _make_empty_waiter(self):
        """A future done once everything written is sent; writes are
        refused until ``_reset_empty_waiter``."""
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = waiter = self._loop.create_future()
        self._rs.refuse_writes(True)
        if not self._rs.get_write_buffer_size():
            waiter.set_result(None)
        else:
            # oneloop's transport tells when its buffer drains to the low
            # water mark: with both marks at 0 that is "empty", and the
            # resume_writing that says so is taken here (_resume_writing),
            # as is the pause_writing the new marks may cause.
            self._drain_watch = (self._rs.get_write_buffer_limits(), self._rs.is_writing_paused())
            self._rs.set_write_buffer_limits(0, 0)
        return waiter

    def _reset_empty_waiter(self):
        self._empty_waiter = None
        self._end_drain_watch()
        self._rs.refuse_writes(False)

    def _end_drain_watch(self):
        watch, self._drain_watch = self._drain_watch, None
        if watch is None:
            return None
        (low, high), was_paused = watch
        self._rs.set_write_buffer_limits(high, low)
        return was_paused

    def _pause_writing(self):
        if self._drain_watch is not None:
            return
        super()._pause_writing()

    def _resume_writing(self):
        if self._drain_watch is not None:
            was_paused = self._end_drain_watch()
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if not was_paused:
                return
        super()._resume_writing()

    def __repr__(self):
        info = [self.__class__.__name__]
        state = self._rust_state()
        if self._sock is None:
            info.append("closed")
        elif state is not None and state[0]:
            info.append("closing")
        info.append(f"fd={getattr(self, '_sock_fd', None)}")
        if self._sock is not None and state is not None and self._loop_open():
            closing, reading, writing, bufsize = state
            info.append("read=polling" if reading else "read=idle")
            info.append(f"write=<{'polling' if writing else 'idle'}, bufsize={bufsize}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn):
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()


_oneloop.install_socket_methods(SocketTransport)


class _PipeTransport(_RustTransport):
    _pipe = None
    _fileno = None
    _what = "pipe"

    def _open_pipe(self, loop, pipe, protocol, waiter, extra, kind, message):
        transports.BaseTransport.__init__(self, extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        fileno = pipe.fileno()
        mode = os.fstat(fileno).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            raise ValueError(message)
        os.set_blocking(fileno, False)
        self._fileno = fileno
        self._start(loop, fileno, protocol, waiter, kind)
        self._pipe = pipe

    def _release(self):
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()

    def _describe(self, info, state):
        pass

    def __repr__(self):
        info = [self.__class__.__name__]
        state = self._rust_state()
        if self._pipe is None:
            info.append("closed")
        elif state is not None and state[0]:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        if self._pipe is not None and state is not None and self._loop_open():
            self._describe(info, state)
        elif self._pipe is not None:
            info.append("open")
        else:
            info.append("closed")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn):
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()


class ReadPipeTransport(_PipeTransport, transports.ReadTransport):
    """The read end of a pipe (asyncio's ``_UnixReadPipeTransport``)."""

    _BOUND = ("is_closing", "is_reading", "pause_reading", "resume_reading")

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        self._open_pipe(
            loop, pipe, protocol, waiter, extra, "read-pipe",
            "Pipe transport is for pipes/sockets only.",
        )

    def is_reading(self):
        return self._rs.is_reading()

    def pause_reading(self):
        self._rs.pause_reading()

    def resume_reading(self):
        self._rs.resume_reading()

    def _protocol_failed(self, exc, message):
        # asyncio's read pipe does not catch data_received(): the exception
        # reaches the handler of the callback, and the pipe stays open.
        self._report(exc, "Exception in callback protocol.data_received()")

    def _fatal_error(self, exc, message="Fatal error on pipe transport"):
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(exc, message)
        self._force_close(exc)

    def _describe(self, info, state):
        info.append("polling" if state[1] else "idle")


class WritePipeTransport(_PipeTransport, transports._FlowControlMixin, transports.WriteTransport):
    """The write end of a pipe (asyncio's ``_UnixWritePipeTransport``)."""

    _BOUND = ("write", "writelines", "is_closing", "get_write_buffer_size")

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        self._open_pipe(
            loop, pipe, protocol, waiter, extra, "write-pipe",
            "Pipe transport is only for pipes, sockets and character devices",
        )

    @property
    def _protocol_paused(self):
        return self._rs.is_writing_paused()

    def write(self, data):
        self._rs.write(data)

    def writelines(self, list_of_data):
        self._rs.writelines(list_of_data)

    def write_eof(self):
        self._rs.write_eof()

    def can_write_eof(self):
        return True

    def get_write_buffer_size(self):
        return self._rs.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._rs.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._rs.set_write_buffer_limits(high, low)

    def _describe(self, info, state):
        info.append("polling" if state[2] else "idle")
        info.append(f"bufsize={state[3]}")



class DatagramTransport(_RustTransport, transports._FlowControlMixin, transports.DatagramTransport):
    """A UDP endpoint, IPv4 or IPv6 (asyncio's ``_SelectorDatagramTransport``;
    like it, also an ``asyncio.Transport``)."""

    _BOUND = ("is_closing", "get_write_buffer_size")

    _sock = None

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        transports.BaseTransport.__init__(self, extra)
        _socket_extra(self._extra, sock)
        self._loop = loop
        self._sock_fd = sock.fileno()
        self._family = sock.family
        self._address = address
        self._protocol = protocol
        self._waiter = waiter
        self._bind(loop._rust.open_datagram(self, self._sock_fd, protocol, address))
        self._sock = sock
        loop._transports[self._sock_fd] = self

    @property
    def _protocol_paused(self):
        return False

    def sendto(self, data, addr=None):
        self._rs.sendto(data, addr, self._family)

    def get_write_buffer_size(self):
        return self._rs.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._rs.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._rs.set_write_buffer_limits(high, low)

    def _error_received(self, exc):
        try:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as err:
            self._report(err, "Exception in callback protocol.error_received()")

    def _protocol_failed(self, exc, method):
        # asyncio's datagram transport does not catch the protocol's
        # exceptions: they reach the callback's handler, and the endpoint
        # stays open.
        self._report(exc, f"Exception in callback protocol.{method}()")

    def _eof_received(self):
        return True

    def _release(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._rs is not None and self._rust_closing():
            info.append("closing")
        info.append(f"fd={getattr(self, '_sock_fd', None)}")
        return "<{}>".format(" ".join(info))

    def _rust_closing(self):
        try:
            return self._rs.is_closing()
        except RuntimeError:
            return False

    def __del__(self, _warn=warnings.warn):
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()
