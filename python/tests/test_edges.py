"""The bad-input edges of issue 18 on every host: fds closed behind the
loop's back, a loop garbage-collected while a Rust host still runs (in a
child under ``PYTHONMALLOC=debug``), subprocesses on a loop that is not the
main thread's.

No sleeping and hoping: waits are for events the test causes, bounded by
deadlines whose expiry is the failure.
"""

import asyncio
import os
import resource
import socket
import subprocess
import sys
import textwrap
import threading
import time
import unittest

import oneloop
from _per_host import per_host



def _thread_cpu():
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime


class _Base:
    host = None

    def setUp(self):
        self.loop = oneloop.new_event_loop(self.host)
        self.addCleanup(self._close)

    def _close(self):
        if not self.loop.is_closed():
            self.loop.close()


class ClosedFdTests(_Base):
    def _close_behind(self, sock):
        """Close `sock`'s fd without telling the loop; return its number."""
        fd = sock.detach()
        os.close(fd)
        return fd

    def test_closed_fd_is_forgotten_not_spun_on(self):
        # epoll forgets a closed fd, so asyncio's own loop never calls its
        # reader again; GLib's poll reports it (POLLNVAL) on every iteration
        # and tokio's registration keeps it ready: the loop must not call
        # the handles in a busy loop (it did, before fd_ready checked).
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        b.send(b"pending")  # readable at close time, too
        calls = []
        fd = a.fileno()
        self.loop.add_reader(fd, calls.append, "r")
        self.loop.add_writer(fd, calls.append, "w")
        self._close_behind(a)

        fired = []
        self.loop.call_later(0.3, lambda: (fired.append(self.loop.time()), self.loop.stop()))
        t0, cpu0 = self.loop.time(), _thread_cpu()
        stopper = threading.Timer(10, self.loop.stop)
        stopper.start()
        self.loop.run_forever()
        stopper.cancel()
        cpu = _thread_cpu() - cpu0
        self.assertEqual(len(fired), 1, "the 0.3 s timer did not end the run")
        self.assertLess(fired[0] - t0, 5.0)
        self.assertEqual(calls, [], "a handle of a closed fd ran")
        # A spinning loop burns the whole 0.3 s; an idle one almost nothing.
        self.assertLess(cpu, 0.1, f"the loop thread used {cpu:.3f} s CPU in 0.3 s idle")
        # Removing it afterwards is harmless, as with asyncio's epoll loop.
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)

    def test_fd_number_reused_after_close_behind(self):
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        stale = []
        fd = a.fileno()
        self.loop.add_reader(fd, stale.append, 1)
        self._close_behind(a)
        # The lowest free number is reused by the next socket.
        c, d = socket.socketpair()
        self.addCleanup(c.close)
        self.addCleanup(d.close)
        self.assertIn(fd, (c.fileno(), d.fileno()))
        reader, writer = (c, d) if c.fileno() == fd else (d, c)
        got = []

        def on_read():
            got.append(reader.recv(100))
            self.loop.stop()

        self.loop.add_reader(fd, on_read)
        self.loop.call_soon(writer.send, b"new file, same number")
        self.loop.call_later(10, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(got, [b"new file, same number"])
        self.assertEqual(stale, [])
        self.assertTrue(self.loop.remove_reader(fd))


# The child of GcTests: run under PYTHONMALLOC=debug -X dev, so a Python
# object freed while Rust still uses it is caught by the debug allocator
# (its 0xDD fill) or crashes the child; it prints "ok" at the end.
_GC_CHILD = textwrap.dedent(
    """
    import asyncio, gc, socket, sys, threading, warnings, weakref
    import oneloop

    host = sys.argv[1]
    warnings.simplefilter("ignore", ResourceWarning)

    def doomed_loop():
        # An unclosed loop with work of every kind queued, in a reference
        # cycle so that only the collector frees it.
        lp = oneloop.new_event_loop(host)
        a, b = socket.socketpair()
        b.send(b"x" * 100)
        lp.add_reader(a.fileno(), lambda: None)
        lp.add_writer(b.fileno(), lambda: None)
        lp.call_later(0.001, print, "never")
        lp.call_soon(print, "never")
        lp.create_task(asyncio.sleep(60))
        lp.cycle = lp
        lp.socks = (a, b)
        return lp

    class NoLoop:
        # What a Handle needs of its loop, without a strong ref to the real one.
        def get_debug(self):
            return False

    def handle(_):
        return asyncio.Handle(len, ((),), NoLoop())

    def hammer(remote, h, stop, seen):
        # Another thread keeps calling into the loop's thread-safe half.
        while not stop.is_set():
            try:
                remote.call_soon_threadsafe(h)
            except RuntimeError as e:
                seen.append(str(e))
                return

    # 1. Collected inside a callback of another loop that is running on the
    #    same host (the Rust host, and for async-io its reactor thread, go on).
    lp = doomed_loop()
    ref = weakref.ref(lp)
    stop, seen = threading.Event(), []
    t = threading.Thread(target=hammer, args=(lp._rust_remote, handle(None), stop, seen))
    t.start()
    del lp
    other = oneloop.new_event_loop(host)
    after = []
    def collect():
        gc.collect()
        after.append(ref() is None)
    other.call_later(0.01, collect)
    other.call_later(0.05, lambda: (after.append("timer"), other.stop()))
    other.call_later(20, other.stop)
    other.run_forever()
    t.join(10)
    stop.set()
    assert after == [True, "timer"], after
    assert not t.is_alive(), "hammer thread did not see the close"
    assert seen and "closed" in seen[0], seen
    other.close()

    # 2. Its last reference dropped, and the collector run, on another
    #    thread: there the Rust half shows the collector nothing (a Loop is
    #    !Send and must not be touched), so the cycle looks alive and stays;
    #    the owner thread's next collection frees and closes it.
    lp = doomed_loop()
    ref = weakref.ref(lp)
    remote = lp._rust_remote
    box = [lp]
    del lp
    elsewhere = []
    def drop_elsewhere():
        box.clear()
        gc.collect()
        elsewhere.append(ref() is not None)
    t = threading.Thread(target=drop_elsewhere)
    t.start()
    t.join(10)
    assert elsewhere == [True], elsewhere
    remote.call_soon_threadsafe(handle(None))  # still open: queued
    gc.collect()
    assert ref() is None
    try:
        remote.call_soon_threadsafe(handle(None))
        raise AssertionError("a collected loop's remote still took a call")
    except RuntimeError as e:
        assert "closed" in str(e), e
    del remote
    gc.collect()

    # 3. Collected while its own run_forever is on the stack? It cannot be:
    #    the running frame holds it. Dropped mid-run by every other holder,
    #    it keeps running and is collected after.
    lp = oneloop.new_event_loop(host)
    ref = weakref.ref(lp)
    def drop_refs():
        asyncio.get_running_loop().call_soon(gc.collect)
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)
    lp.call_soon(drop_refs)
    lp.cycle = lp
    run = lp.run_forever
    del lp
    run()
    del run
    gc.collect()
    assert ref() is None
    print("ok", flush=True)
    """
)


class GcTests(unittest.TestCase):
    host = None

    def test_collected_while_a_rust_host_runs_under_debug_malloc(self):
        env = dict(os.environ, PYTHONMALLOC="debug", PYTHONFAULTHANDLER="1")
        proc = subprocess.run(
            [sys.executable, "-X", "dev", "-c", _GC_CHILD, self.host],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertEqual(proc.stdout.strip().splitlines()[-1:], ["ok"], proc.stdout)
        for bad in ("Fatal Python error", "Debug memory block", "Traceback"):
            self.assertNotIn(bad, proc.stderr, proc.stderr[-3000:])


class ThreadSubprocessTests(unittest.TestCase):
    host = None

    def test_subprocess_on_a_loop_off_the_main_thread(self):
        # asyncio's default child watcher (ThreadedChildWatcher in 3.11)
        # waits in a thread of its own, so a loop on any thread can run
        # subprocesses; two threads at once, each with its own loop.
        code = "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1]); sys.exit(7)"

        async def child(i):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            payload = bytes(range(256)) * (64 * (i + 1))
            out, _ = await proc.communicate(payload)
            return out == payload[::-1], proc.returncode

        async def main():
            async with asyncio.timeout(30):
                return await asyncio.gather(*(child(i) for i in range(3)))

        results, errors = {}, []

        def worker(name):
            try:
                self.assertIsNot(threading.current_thread(), threading.main_thread())
                results[name] = oneloop.run(main(), host=self.host)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(45)
        self.assertFalse(any(t.is_alive() for t in threads), "a thread's loop is stuck")
        self.assertEqual(errors, [])
        self.assertEqual(results, {n: [(True, 7)] * 3 for n in ("a", "b")})


per_host(globals(), ClosedFdTests, GcTests, ThreadSubprocessTests)


if __name__ == "__main__":
    unittest.main()
