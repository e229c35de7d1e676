"""The transports through oneloop's Rust implementation: that they are the
ones asyncio's connection code gets, and asyncio's transport semantics
where the Rust data path could differ from ``selector_events``.

Each test runs on every host (``ONELOOP_HOSTS`` narrows it); each wait is
bounded by ``asyncio.timeout`` inside the loop.
"""

import asyncio
import errno
import gc
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest
from unittest import mock

from asyncio import selector_events
from test.test_asyncio import utils as test_utils

import oneloop
from _per_host import per_host
from oneloop import _oneloop, _transports



def _open_fds():
    return len(os.listdir("/proc/self/fd"))


class Record(asyncio.Protocol):
    """Records the calls it gets; keeps its transport."""

    def __init__(self, loop):
        self.calls = []
        self.data = bytearray()
        self.lost = loop.create_future()
        self.made = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.calls.append("made")
        self.made.set_result(None)

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.calls.append("eof")

    def connection_lost(self, exc):
        self.calls.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self):
        self.calls.append("pause")

    def resume_writing(self):
        self.calls.append("resume")


class _Base:
    host = None

    def setUp(self):
        self.loop = oneloop.new_event_loop(self.host)
        self.addCleanup(self._close)
        self.errors = []
        self.loop.set_exception_handler(lambda lp, ctx: self.errors.append(ctx))

    def _close(self):
        if not self.loop.is_closed():
            self.loop.close()

    def go(self, coro, seconds=20):
        async def bounded():
            async with asyncio.timeout(seconds):
                return await coro

        return self.loop.run_until_complete(bounded())

    async def tcp_pair(self, server_proto=None, client_proto=None):
        """A connected pair of transports (server side, client side)."""
        accepted = self.loop.create_future()

        def factory():
            p = (server_proto or Record)(self.loop)
            accepted.set_result(p)
            return p

        srv = await self.loop.create_server(factory, "127.0.0.1", 0)
        self.addCleanup(srv.close)
        port = srv.sockets[0].getsockname()[1]
        _, client = await self.loop.create_connection(
            lambda: (client_proto or Record)(self.loop), "127.0.0.1", port
        )
        server = await accepted
        self.addCleanup(self._finish, server, client)
        if hasattr(server, "made"):
            await server.made
        return server, client

    def _finish(self, *protocols):
        """Abort what a test left open and let connection_lost run, so
        that no transport outlives its loop (asyncio's ResourceWarning)."""
        if self.loop.is_closed():
            return
        for p in protocols:
            if p.transport is not None and not p.transport.is_closing():
                p.transport.abort()
        pending = [p.lost for p in protocols if not p.lost.done()]
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending, timeout=10))


class ClassTests(_Base):
    """asyncio's connection code gets oneloop's transports."""

    def test_tcp_both_sides_and_the_data_path(self):
        async def main():
            server, client = await self.tcp_pair()
            for p in (server, client):
                self.assertIsInstance(p.transport, _transports.SocketTransport)
                self.assertIsInstance(p.transport, asyncio.Transport)
                self.assertIsInstance(p.transport._rs, _oneloop.Stream)
            self.assertNotIsInstance(client.transport, selector_events._SelectorTransport)
            client.transport.write(b"ping")
            while bytes(server.data) != b"ping":
                await asyncio.sleep(0.001)
            client.transport.close()
            self.assertIsNone(await server.lost)

        self.go(main())

    def test_unix_streams_pipes_and_udp(self):
        async def main():
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "s")
                accepted = self.loop.create_future()

                def factory():
                    p = Record(self.loop)
                    accepted.set_result(p)
                    return p

                srv = await self.loop.create_unix_server(factory, path)
                tr, client = await self.loop.create_unix_connection(lambda: Record(self.loop), path)
                server = await accepted
                await server.made
                self.assertIsInstance(tr, _transports.SocketTransport)
                self.assertIsInstance(server.transport, _transports.SocketTransport)
                tr.close()
                await client.lost
                await server.lost
                srv.close()
                await srv.wait_closed()
            r, w = os.pipe()
            rt, _ = await self.loop.connect_read_pipe(lambda: Record(self.loop), os.fdopen(r, "rb", 0))
            wt, _ = await self.loop.connect_write_pipe(lambda: Record(self.loop), os.fdopen(w, "wb", 0))
            self.assertIsInstance(rt, _transports.ReadPipeTransport)
            self.assertIsInstance(wt, _transports.WritePipeTransport)
            wt.close()
            await rt.get_protocol().lost
            udp, _ = await self.loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
            self.assertIsInstance(udp, _transports.DatagramTransport)
            self.assertIsInstance(udp, asyncio.Transport)
            udp.close()
            # A Unix datagram socket keeps asyncio's transport (oneloop's
            # speaks IP only); its waits are still oneloop's.
            with tempfile.TemporaryDirectory() as d:
                ux, _ = await self.loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=os.path.join(d, "u"),
                    family=socket.AF_UNIX)
                self.assertIsInstance(ux, selector_events._SelectorDatagramTransport)
                ux.close()

        self.go(main())

    def test_subprocess_pipes_and_tls_ride_on_oneloops_transports(self):
        async def main():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            pipes = proc._transport._pipes
            self.assertIsInstance(pipes[0].pipe, _transports.WritePipeTransport)
            self.assertIsInstance(pipes[1].pipe, _transports.ReadPipeTransport)
            out, _ = await proc.communicate(b"through oneloop's pipes")
            self.assertEqual(out, b"through oneloop's pipes")

            server_ctx = test_utils.simple_server_sslcontext()
            client_ctx = test_utils.simple_client_sslcontext()
            seen = self.loop.create_future()

            async def handle(reader, writer):
                seen.set_result(writer.transport)
                writer.write(await reader.readexactly(5))
                await writer.drain()
                writer.close()

            srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
            port = srv.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="")
            writer.write(b"hello")
            self.assertEqual(await reader.readexactly(5), b"hello")
            raw = writer.transport._ssl_protocol._transport
            self.assertIsInstance(raw, _transports.SocketTransport)
            self.assertIsInstance((await seen)._ssl_protocol._transport, _transports.SocketTransport)
            writer.close()
            await writer.wait_closed()
            srv.close()
            await srv.wait_closed()

        self.go(main())


    def test_subprocess_exit_is_watched_by_the_loop_itself(self):
        # No child watcher (asyncio's would be asked for through
        # events.get_child_watcher), no thread (ThreadedChildWatcher starts
        # one per child), no SIGCHLD handler: a pidfd on oneloop's fd
        # watching. Shown to fail on asyncio's _make_subprocess_transport.
        sigchld = signal.getsignal(signal.SIGCHLD)

        async def main():
            threads = threading.active_count()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(7)",
                stdin=asyncio.subprocess.PIPE)
            self.assertEqual(list(self.loop._child_pidfds.values()), [proc.pid])
            self.assertEqual(threading.active_count(), threads)
            proc.stdin.close()
            self.assertEqual(await proc.wait(), 7)
            self.assertEqual(self.loop._child_pidfds, {})
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import time; time.sleep(60)")
            proc.kill()
            self.assertEqual(await proc.wait(), -signal.SIGKILL)

        with mock.patch("asyncio.events.get_child_watcher",
                        side_effect=AssertionError("a child watcher was asked for")):
            self.go(main())
        self.assertEqual(signal.getsignal(signal.SIGCHLD), sigchld)


    def test_subprocess_exit_without_pidfds_waits_in_a_thread(self):
        # Where os.pidfd_open fails (no pidfds: not Linux, an old kernel, a
        # sandbox), a thread waits for the child, as asyncio's
        # ThreadedChildWatcher; its name says whose it is.
        names = []

        async def main():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(5)",
                stdin=asyncio.subprocess.PIPE)
            names.extend(t.name for t in threading.enumerate())
            self.assertEqual(self.loop._child_pidfds, {})
            proc.stdin.close()
            self.assertEqual(await proc.wait(), 5)
            return proc.pid

        with mock.patch("oneloop._loop.os.pidfd_open", side_effect=OSError(errno.ENOSYS, "no")):
            pid = self.go(main())
        self.assertIn(f"oneloop-waitpid-{pid}", names)

    def test_closing_the_loop_stops_watching_a_running_child(self):
        async def main():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import time; time.sleep(60)")
            self.assertEqual(len(self.loop._child_pidfds), 1)
            return proc, next(iter(self.loop._child_pidfds))

        proc, pidfd = self.go(main())
        transport = proc._transport
        self.loop.close()
        self.assertEqual(self.loop._child_pidfds, {})
        try:  # closed with the loop (or the number reused by another file)
            link = os.readlink(f"/proc/self/fd/{pidfd}")
        except FileNotFoundError:
            link = None
        self.assertNotEqual(link, "anon_inode:[pidfd]")
        proc._transport = None
        with self.assertWarns(ResourceWarning):
            transport.__del__()  # asyncio's: kills the child
        os.waitpid(proc.pid, 0)


class SemanticsTests(_Base):
    """asyncio's transport behaviour on the Rust data path."""

    def test_repr_of_a_transport_never_constructed(self):
        # __repr__ (and so __del__'s warning) of a half-built transport: the
        # socket transport's `_rs` is a slot, which hides the class default.
        t = _transports.SocketTransport.__new__(_transports.SocketTransport)
        self.assertEqual(repr(t), "<SocketTransport closed fd=None>")

    def test_buffered_protocol_gets_everything_through_small_buffers(self):
        payload = os.urandom(100_000)

        class Small(asyncio.BufferedProtocol):
            def __init__(self, loop):
                self.buf = bytearray(7)
                self.got = bytearray()
                self.hints = set()
                self.lost = loop.create_future()
                self.transport = None

            def connection_made(self, transport):
                self.transport = transport

            def get_buffer(self, sizehint):
                self.hints.add(sizehint > 0)
                return self.buf

            def buffer_updated(self, nbytes):
                self.got += self.buf[:nbytes]

            def eof_received(self):
                return False

            def connection_lost(self, exc):
                self.lost.set_result(exc)

        async def main():
            server, client = await self.tcp_pair(server_proto=Small)
            client.transport.write(payload)
            client.transport.write_eof()
            self.assertIsNone(await server.lost)
            self.assertEqual(bytes(server.got), payload)

        self.go(main())

    def test_a_failing_data_received_is_reported_and_aborts(self):
        class Fails(Record):
            def data_received(self, data):
                raise ValueError("bad data")

        async def main():
            server, client = await self.tcp_pair(server_proto=Fails)
            client.transport.write(b"x")
            exc = await server.lost
            self.assertIsInstance(exc, ValueError)
            self.assertIsNone(await client.lost)

        self.go(main())
        [ctx] = self.errors
        self.assertEqual(ctx["message"], "Fatal error: protocol.data_received() call failed.")
        self.assertIsInstance(ctx["exception"], ValueError)
        self.assertIsInstance(ctx["transport"], _transports.SocketTransport)
        self.assertIsInstance(ctx["protocol"], Fails)

    def test_set_protocol_from_the_lookup_of_data_received(self):
        # A protocol that has no data_received when the transport takes it
        # is asked for one at each read, as asyncio does; that lookup is
        # Python code (here the __getattr__ of a proxy that hands the
        # connection over to its real protocol) and may call
        # set_protocol(). It ran while the transport's protocol slot was
        # borrowed, so set_protocol() panicked ("RefCell already
        # borrowed") into Python.
        class Proxy:
            def __init__(self, loop):
                self.inner = Record(loop)
                self.lost = self.inner.lost
                self.transport = None

            def connection_made(self, transport):
                self.transport = transport

            def __getattr__(self, name):
                if name != "data_received" or self.transport is None:
                    raise AttributeError(name)
                self.transport.set_protocol(self.inner)
                return self.inner.data_received

        async def main():
            server, client = await self.tcp_pair(server_proto=Proxy)
            client.transport.write(b"hello")
            while len(server.inner.data) < 5 and not server.lost.done():
                await asyncio.sleep(0.001)
            self.assertEqual(bytes(server.inner.data), b"hello")
            self.assertIs(server.transport.get_protocol(), server.inner)

        self.go(main())
        self.assertEqual(self.errors, [])

    def test_keyboard_interrupt_from_data_received_leaves_the_run(self):
        class Interrupts(Record):
            def data_received(self, data):
                raise KeyboardInterrupt

        pair = []

        async def main():
            pair.extend(await self.tcp_pair(server_proto=Interrupts))
            pair[1].transport.write(b"x")
            await asyncio.sleep(10)

        with self.assertRaises(KeyboardInterrupt):
            self.go(main())
        # The loop can run again; the aborted connection finishes.
        server, client = pair
        client.transport.close()
        self.loop.run_until_complete(asyncio.wait([server.lost, client.lost], timeout=10))
        self.assertIsInstance(server.lost.result(), KeyboardInterrupt)

    def test_keyboard_interrupt_from_pause_writing_comes_out_of_write(self):
        # A write() from a task that crosses the high-water mark calls
        # pause_writing before it returns; what that lets escape comes out
        # of write(), as in asyncio (not through oneloop to the run).
        class Pauses(Record):
            def pause_writing(self):
                raise KeyboardInterrupt("from pause_writing")

        async def main():
            server, client = await self.tcp_pair(client_proto=Pauses)
            server.transport.pause_reading()
            client.transport.set_write_buffer_limits(high=1)
            try:
                for _ in range(10_000):
                    client.transport.write(b"z" * 65536)
            except KeyboardInterrupt as e:
                return e
            return None

        caught = self.go(main())
        self.assertIsInstance(caught, KeyboardInterrupt)
        self.assertEqual(str(caught), "from pause_writing")

    def test_write_checks_as_asyncio(self):
        async def main():
            _, client = await self.tcp_pair()
            with self.assertRaisesRegex(TypeError, "data argument must be a bytes-like object, not 'str'"):
                client.transport.write("text")
            client.transport.write(memoryview(b"abc"))
            client.transport.write(bytearray(b"def"))
            client.transport.writelines([b"g", memoryview(b"h"), bytearray(b"i")])
            client.transport.write_eof()
            with self.assertRaisesRegex(RuntimeError, "Cannot call write\\(\\) after write_eof\\(\\)"):
                client.transport.write(b"more")
            with self.assertRaisesRegex(ValueError, "high .* must be >= low .* must be >= 0"):
                client.transport.set_write_buffer_limits(high=1, low=2)
            client.transport.close()

        self.go(main())

    def test_the_data_path_is_the_class_and_refuses_writes_during_sendfile(self):
        async def main():
            _, client = await self.tcp_pair()
            t = client.transport
            # C methods of the class (CPython specialises their calls), not
            # attributes of the instance; sendfile's refusal keeps it so.
            for name in ("write", "writelines", "is_closing", "get_write_buffer_size"):
                self.assertEqual(type(vars(type(t))[name]).__name__, "method_descriptor", name)
            waiter = t._make_empty_waiter()
            await waiter
            for call in (lambda: t.write(b"x"), lambda: t.writelines([b"x"])):
                with self.assertRaisesRegex(RuntimeError, "unable to write; sendfile is in progress"):
                    call()
            with self.assertRaisesRegex(TypeError, "data argument must be a bytes-like object"):
                t.write("text")
            t._reset_empty_waiter()
            self.assertNotIn("write", vars(t))
            t.write(b"after")
            # Whatever else _rs holds gets the call, as the Python methods did.
            rs, seen = t._rs, []

            class Stand:
                def write(self, data):
                    seen.append(data)

                def is_closing(self):
                    return "asked"

            t._rs = Stand()
            try:
                t.write(b"stand")
                self.assertEqual(t.is_closing(), "asked")
            finally:
                t._rs = rs
            self.assertEqual(seen, [b"stand"])
            t.close()
            await client.lost
            self.assertTrue(t.is_closing())

        self.go(main())

    def test_flow_control_pauses_and_resumes_the_protocol(self):
        async def main():
            server, client = await self.tcp_pair()
            server.transport.pause_reading()
            self.assertFalse(server.transport.is_reading())
            client.transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
            chunk = b"z" * 65536
            while "pause" not in client.calls:
                client.transport.write(chunk)
            self.assertTrue(client.transport._protocol_paused)
            self.assertGreater(client.transport.get_write_buffer_size(), 64 * 1024)
            server.transport.resume_reading()
            while "resume" not in client.calls:
                await asyncio.sleep(0.001)
            self.assertLessEqual(client.transport.get_write_buffer_size(), 16 * 1024)
            client.transport.close()
            await server.lost

        self.go(main())

    def test_close_before_connection_made_still_makes_then_loses(self):
        async def main():
            a, b = socket.socketpair()
            self.addCleanup(b.close)
            proto = Record(self.loop)
            waiter = self.loop.create_future()
            tr = self.loop._make_socket_transport(a, proto, waiter)
            tr.close()
            self.assertTrue(tr.is_closing())
            self.assertIsNone(await proto.lost)
            self.assertEqual(proto.calls, ["made", "lost"])
            self.assertEqual(a.fileno(), -1)

        self.go(main())

    def test_connection_lost_closes_the_socket_and_the_duplicate(self):
        async def main():
            before = _open_fds()
            server, client = await self.tcp_pair()
            sock = client.transport.get_extra_info("socket")
            self.assertIsNotNone(sock.getsockname())
            client.transport.close()
            await client.lost
            await server.lost
            self.assertEqual(sock.fileno(), -1)
            return before

        before = self.go(main())
        gc.collect()
        # The listening socket (closed by the cleanup) is the one left.
        self.assertLessEqual(_open_fds(), before + 1)

    def test_close_from_another_thread_reaches_the_loop(self):
        async def main():
            server, client = await self.tcp_pair()
            errors = []

            def other():
                try:
                    self.assertFalse(client.transport.is_closing())
                    client.transport.close()
                except BaseException as e:  # noqa: BLE001 - checked below
                    errors.append(e)

            t = threading.Thread(target=other)
            t.start()
            await self.loop.run_in_executor(None, t.join)
            self.assertEqual(errors, [])
            self.assertIsNone(await client.lost)
            self.assertIsNone(await server.lost)

        self.go(main())

    def test_udp_sendto_receive_and_error_received(self):
        class Udp(asyncio.DatagramProtocol):
            def __init__(self, loop):
                self.got = loop.create_future()
                self.error = loop.create_future()

            def datagram_received(self, data, addr):
                if not self.got.done():
                    self.got.set_result((data, addr))

            def error_received(self, exc):
                if not self.error.done():
                    self.error.set_result(exc)

        async def main():
            a, pa = await self.loop.create_datagram_endpoint(
                lambda: Udp(self.loop), local_addr=("127.0.0.1", 0))
            b, pb = await self.loop.create_datagram_endpoint(
                lambda: Udp(self.loop), local_addr=("127.0.0.1", 0))
            b.sendto(b"hello", a.get_extra_info("sockname"))
            data, addr = await pa.got
            self.assertEqual((data, addr), (b"hello", b.get_extra_info("sockname")))
            with self.assertRaisesRegex(TypeError, "bytes-like"):
                b.sendto("text", addr)
            # A connected endpoint to a closed port: the ICMP error comes
            # back as error_received(ConnectionRefusedError).
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()
            probe.close()
            c, pc = await self.loop.create_datagram_endpoint(
                lambda: Udp(self.loop), remote_addr=closed)
            with self.assertRaisesRegex(ValueError, "Invalid address"):
                c.sendto(b"x", ("127.0.0.1", 1))
            while not pc.error.done():
                c.sendto(b"anyone?")
                await asyncio.sleep(0.01)
            self.assertIsInstance(pc.error.result(), ConnectionRefusedError)
            for t in (a, b, c):
                t.close()

        self.go(main())


    def test_udp_write_buffer_limits_as_asyncio(self):
        # asyncio's defaults, rules and ValueError, read back from oneloop's
        # DatagramTransport (they were fixed at 16/64 KiB before).
        async def main():
            t, _ = await self.loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
            self.assertEqual(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024))
            t.set_write_buffer_limits(high=1000)
            self.assertEqual(t.get_write_buffer_limits(), (250, 1000))
            t.set_write_buffer_limits(low=100)
            self.assertEqual(t.get_write_buffer_limits(), (100, 400))
            t.set_write_buffer_limits(high=0)
            self.assertEqual(t.get_write_buffer_limits(), (0, 0))
            with self.assertRaisesRegex(ValueError, "must be >="):
                t.set_write_buffer_limits(high=10, low=20)
            with self.assertRaisesRegex(ValueError, "must be >="):
                t.set_write_buffer_limits(low=-1)
            self.assertEqual(t.get_write_buffer_limits(), (0, 0))
            t.set_write_buffer_limits()
            self.assertEqual(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024))
            t.close()

        self.go(main())


_GC_CHILD = textwrap.dedent(
    """
    import asyncio, gc, sys, weakref
    import oneloop

    host = sys.argv[1]

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(data)

    def leave_open():
        loop = oneloop.new_event_loop(host)
        async def main():
            srv = await loop.create_server(Echo, "127.0.0.1", 0)
            port = srv.sockets[0].getsockname()[1]
            tr, proto = await loop.create_connection(Echo, "127.0.0.1", port)
            tr.write(b"ping")
            await asyncio.sleep(0.05)
            return srv
        srv = loop.run_until_complete(main())
        return weakref.ref(loop), weakref.ref(srv)

    ref, srv = leave_open()
    for _ in range(3):
        gc.collect()
    print("loop collected" if ref() is None else "loop LEAKED")
    print("server collected" if srv() is None else "server LEAKED")
    """
)


class GcTests(unittest.TestCase):
    host = None

    def test_an_unclosed_loop_with_open_connections_is_collected(self):
        # The Python transports of live connections are held by the loop's
        # registry, shown to the collector: a loop dropped with a server and
        # a connection open is still collected (asyncio's own loop is).
        env = dict(os.environ, PYTHONMALLOC="debug", PYTHONFAULTHANDLER="1")
        proc = subprocess.run(
            [sys.executable, "-X", "dev", "-W", "ignore::ResourceWarning", "-c", _GC_CHILD, self.host],
            env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertEqual(proc.stdout.split("\n")[:2], ["loop collected", "server collected"],
                         proc.stdout + proc.stderr[-3000:])
        for bad in ("Fatal Python error", "Debug memory block"):
            self.assertNotIn(bad, proc.stderr, proc.stderr[-3000:])


per_host(globals(), ClassTests, SemanticsTests, GcTests)


if __name__ == "__main__":
    unittest.main()
