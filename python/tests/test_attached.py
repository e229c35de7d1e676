"""Attached mode: an asyncio loop inside the GLib main context that a
PyGObject program runs itself, with ``GLib.MainLoop().run()``.

PyGObject (``gi``) is installed into the venv by ``make python-test``
(PyPI's PyGObject, built against Debian's GLib); without it this module
fails to import, which run.py counts as a failure.

Every wait is bounded: a GLib timeout quits the main loop after DEADLINE
seconds and records that it fired, which fails the test.
"""

import asyncio
import os
import signal
import socket
import threading
import unittest

import aiohttp
from aiohttp import web
from gi.repository import GLib

import oneloop

DEADLINE = 20.0


class AttachedGlibTests(unittest.TestCase):
    host = "glib"

    def setUp(self):
        self.assertIsNone(asyncio._get_running_loop())
        self.loop = oneloop.new_event_loop("glib", attach=True)
        self.addCleanup(self._close)
        self.main = GLib.MainLoop()  # on GLib.MainContext.default()
        self.errors = []
        self.loop.set_exception_handler(lambda lp, ctx: self.errors.append(ctx))

    def _close(self):
        if not self.loop.is_closed():
            self.loop.close()
        self.assertIsNone(asyncio._get_running_loop())

    def run_glib(self):
        """Run GLib's own main loop until something calls self.main.quit()."""
        expired = []

        def expire():
            expired.append(True)
            self.main.quit()
            return GLib.SOURCE_REMOVE

        guard = GLib.timeout_add(int(DEADLINE * 1000), expire)
        self.main.run()
        if not expired:
            GLib.source_remove(guard)
        self.assertFalse(expired, f"GLib's main loop still ran after {DEADLINE} s")

    def test_is_running_from_creation_and_not_runnable(self):
        self.assertTrue(self.loop.attached)
        self.assertTrue(self.loop.is_running())
        self.assertIs(asyncio.get_running_loop(), self.loop)
        self.assertEqual(self.loop._rust.backend_name, "glib")
        with self.assertRaises(RuntimeError):
            self.loop.run_forever()
        coro = asyncio.sleep(0)
        with self.assertRaises(RuntimeError):
            self.loop.run_until_complete(coro)
        coro.close()

    def test_glib_and_asyncio_callbacks_interleave_on_one_thread(self):
        # A chain that alternates between the two schedulers, each link
        # scheduled by the previous one on the other side: GLib idle and
        # timeout sources, asyncio call_soon and call_later. It completes
        # only if GLib's loop dispatches both, in causal order.
        trace = []
        threads = set()

        def note(who):
            trace.append(who)
            threads.add(threading.get_ident())

        def glib_step(i):
            note(f"glib{i}")
            self.assertIs(asyncio.get_running_loop(), self.loop)
            if i == 4:
                self.loop.call_soon(self.main.quit)
            elif i % 2:
                self.loop.call_soon(asyncio_step, i + 1)
            else:
                self.loop.call_later(0.002, asyncio_step, i + 1)
            return GLib.SOURCE_REMOVE

        def asyncio_step(i):
            note(f"asyncio{i}")
            if i % 2:
                GLib.idle_add(glib_step, i + 1)
            else:
                GLib.timeout_add(2, glib_step, i + 1)

        GLib.timeout_add(1, glib_step, 0)
        self.run_glib()
        self.assertEqual(
            trace, ["glib0", "asyncio1", "glib2", "asyncio3", "glib4"], trace
        )
        self.assertEqual(threads, {threading.get_ident()})
        self.assertEqual(self.errors, [])

    def test_glib_ticks_while_a_task_awaits(self):
        # A task sleeps 150 ms in asyncio while a 5 ms GLib timeout ticks:
        # neither side blocks the other, and a GLib callback resolves an
        # asyncio future the task awaits.
        ticks = []

        def tick():
            ticks.append(self.loop.time())
            return GLib.SOURCE_CONTINUE

        tick_id = GLib.timeout_add(5, tick)

        async def main():
            t0 = self.loop.time()
            await asyncio.sleep(0.15)
            during = [t for t in ticks if t >= t0]
            fut = self.loop.create_future()
            GLib.timeout_add(10, lambda: fut.set_result("from glib") or GLib.SOURCE_REMOVE)
            got = await asyncio.wait_for(fut, DEADLINE)
            return len(during), got

        task = self.loop.create_task(main())
        task.add_done_callback(lambda _: self.main.quit())
        self.run_glib()
        GLib.source_remove(tick_id)
        during, got = task.result()
        self.assertGreaterEqual(during, 5, ticks)
        self.assertEqual(got, "from glib")

    def test_threadsafe_call_wakes_the_glib_loop(self):
        got = []

        def from_thread():
            self.loop.call_soon_threadsafe(got.append, threading.get_ident())
            self.loop.call_soon_threadsafe(self.main.quit)

        GLib.idle_add(lambda: threading.Thread(target=from_thread).start() or GLib.SOURCE_REMOVE)
        self.run_glib()
        self.assertEqual(len(got), 1)
        self.assertNotEqual(got[0], threading.get_ident())

    def test_aiohttp_server_and_client_inside_glib(self):
        # A real program on the attached loop: sockets watched through
        # GLib's poll, DNS through the executor and back.
        async def hello(request):
            return web.Response(text="hello " + request.match_info["name"])

        async def main():
            app = web.Application()
            app.add_routes([web.get("/{name}", hello)])
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            try:
                async with aiohttp.ClientSession() as session:
                    texts = []
                    for name in ("glib", "gtk"):
                        async with session.get(f"http://localhost:{port}/{name}") as r:
                            texts.append(await r.text())
                    body = os.urandom(512 * 1024)
                    async with session.post(f"http://127.0.0.1:{port}/x", data=body) as r:
                        texts.append(r.status)  # 405: no POST route; the body was sent
                    return texts
            finally:
                await runner.cleanup()
                await self.loop.shutdown_default_executor()

        task = self.loop.create_task(main())
        task.add_done_callback(lambda _: self.main.quit())
        self.run_glib()
        self.assertEqual(task.result(), ["hello glib", "hello gtk", 405])

    def test_keyboard_interrupt_in_a_callback_is_reported(self):
        # It cannot unwind through GLib's dispatch: the exception handler
        # gets it, and the loop goes on.
        def interrupt():
            raise KeyboardInterrupt

        after = []
        self.loop.call_soon(interrupt)
        self.loop.call_soon(after.append, "next")
        self.loop.call_soon(self.main.quit)
        self.run_glib()
        self.assertEqual(after, ["next"])
        self.assertEqual(len(self.errors), 1, self.errors)
        self.assertIsInstance(self.errors[0]["exception"], KeyboardInterrupt)
        self.assertIn("attached", self.errors[0]["message"])

    def test_signal_handler_through_asyncios_path(self):
        # GLib owns signals here (oneloop refuses them to an attached loop):
        # add_signal_handler is asyncio's, Python's handler writing to the
        # self-pipe that oneloop watches, and removal leaves SIG_DFL.
        got = []

        def handler(arg):
            got.append((arg, asyncio.get_running_loop()))
            self.main.quit()

        self.loop.add_signal_handler(signal.SIGUSR1, handler, "usr1")
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.SIG_DFL)
        self.loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        self.run_glib()
        self.assertEqual(got, [("usr1", self.loop)])
        self.assertTrue(self.loop.remove_signal_handler(signal.SIGUSR1))
        self.assertEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)

    def test_close_inside_a_callback_is_refused_then_reattach(self):
        refused = []

        def try_close():
            try:
                self.loop.close()
            except RuntimeError as e:
                refused.append(str(e))
            self.main.quit()

        self.loop.call_soon(try_close)
        self.run_glib()
        self.assertEqual(len(refused), 1)
        self.assertFalse(self.loop.is_closed())
        self.assertIs(asyncio.get_running_loop(), self.loop)

        # One running loop per thread: refused by asyncio's running-loop
        # check, and by oneloop's own (PO-03) without it ...
        with self.assertRaises(RuntimeError):
            oneloop.new_event_loop("glib", attach=True)
        asyncio._set_running_loop(None)
        try:
            with self.assertRaises(RuntimeError):
                oneloop.new_event_loop("glib", attach=True)
        finally:
            asyncio._set_running_loop(self.loop)
        # ... and after close() the context is free for the next one.
        self.loop.close()
        self.assertIsNone(asyncio._get_running_loop())
        self.assertFalse(self.loop.is_running())
        again = oneloop.new_event_loop("glib", attach=True)
        try:
            done = []
            again.call_soon(done.append, 1)
            again.call_soon(self.main.quit)
            self.run_glib()
            self.assertEqual(done, [1])
        finally:
            again.close()

    def test_close_inside_a_protocol_callback_is_refused_and_changes_nothing(self):
        # A transport's protocol methods are callbacks of the loop too, run
        # by oneloop's transport rather than through a Handle. close() from
        # one must be refused before anything is torn down: it used to
        # close the Python half (is_closed() true, the running loop unset)
        # and then fail in oneloop, leaving the Rust loop attached to
        # GLib's context for good, so that no loop could attach again.
        refused = []
        # Whatever happens, leave GLib's context free for the next test.
        self.addCleanup(lambda: self.loop._rust.is_closed() or self.loop._rust.close())

        class Closer(asyncio.Protocol):
            def data_received(proto, data):
                try:
                    self.loop.close()
                except RuntimeError as e:
                    refused.append(str(e))
                self.main.quit()

        ours, peer = socket.socketpair()
        self.addCleanup(peer.close)
        ours.setblocking(False)

        async def connect():
            await self.loop.connect_accepted_socket(Closer, ours)
            peer.send(b"x")

        self.loop.create_task(connect())
        self.run_glib()
        self.assertEqual(len(refused), 1, refused)
        self.assertFalse(self.loop.is_closed())
        self.assertFalse(self.loop._rust.is_closed())
        self.assertIs(asyncio.get_running_loop(), self.loop)
        # Closed from outside the callbacks, the context takes another loop.
        self.loop.close()
        self.assertTrue(self.loop._rust.is_closed())
        oneloop.new_event_loop("glib", attach=True).close()

    def test_attach_is_only_for_glib(self):
        self.loop.close()
        for host in oneloop.HOSTS:
            if host != "glib":
                with self.subTest(host=host), self.assertRaises(ValueError):
                    oneloop.new_event_loop(host, attach=True)


if __name__ == "__main__":
    unittest.main()
