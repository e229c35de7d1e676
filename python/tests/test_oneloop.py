"""oneloop's own promises to Python code, beyond CPython's test suite.

Each test runs on every host (``ONELOOP_HOSTS`` narrows it). None of them
sleeps and hopes: a wait is either for an event the test causes, or bounded
by a watchdog whose firing is itself the failure.
"""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import unittest
import weakref
import gc

import oneloop
from _per_host import per_host



# The backend name oneloop reports for each host name.
BACKEND = {
    "default": "native",
    "tokio": "tokio",
    "glib": "glib",
    "calloop": "calloop",
    "smol": "smol",
}


def _oneloop_handle():
    from oneloop import _oneloop

    return _oneloop.Handle


class _Base:
    host = None

    def setUp(self):
        self.loop = oneloop.new_event_loop(self.host)
        self.addCleanup(self._close)

    def _close(self):
        if not self.loop.is_closed():
            self.loop.close()
        asyncio.set_event_loop(None)

    def watchdog(self, seconds=10.0):
        """Fail (by stopping the loop and recording it) if still running after `seconds`."""
        fired = []

        def fire():
            fired.append(True)
            self.loop.stop()

        handle = self.loop.call_later(seconds, fire)
        self.addCleanup(handle.cancel)
        return fired


class HostTests(_Base):
    def test_runs_on_the_requested_host(self):
        # The CPython suite is only evidence for a host if the loop is really on it.
        self.assertEqual(self.loop.host, self.host)
        self.assertEqual(self.loop._rust.backend_name, BACKEND[self.host])

    def test_unknown_host_is_a_value_error(self):
        with self.assertRaises(ValueError):
            oneloop.new_event_loop("no-such-host")


class CallbackTests(_Base):
    def test_exception_reaches_handler_with_asyncio_context(self):
        contexts = []
        self.loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))
        err = ValueError("boom")

        def bad():
            raise err

        handle = self.loop.call_soon(bad)
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(len(contexts), 1)
        lp, ctx = contexts[0]
        self.assertIs(lp, self.loop)
        self.assertIs(ctx["exception"], err)
        self.assertIs(ctx["handle"], handle)
        self.assertTrue(ctx["message"].startswith("Exception in callback"), ctx["message"])

    def test_call_soon_handles_are_rust_ones_and_keep_asyncio_semantics(self):
        import contextvars
        from asyncio import events
        from oneloop import _oneloop

        # Outside debug mode (the second pass of run.py runs with -X dev,
        # which turns it on for every new loop).
        self.loop.set_debug(False)
        var = contextvars.ContextVar("var", default="outside")
        ctx = contextvars.copy_context()
        ctx.run(var.set, "inside")
        seen = []
        h1 = self.loop.call_soon(lambda: seen.append(("ctx", var.get())), context=ctx)
        h2 = self.loop.call_soon(seen.append, "cancelled")
        h3 = self.loop.call_soon(lambda *a: seen.append(a), 1, 2)
        self.assertIsInstance(h1, _oneloop.Handle)
        self.assertIs(h1.get_context(), ctx)
        h2.cancel()
        self.assertTrue(h2.cancelled())
        self.assertIn("cancelled", repr(h2))
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, [("ctx", "inside"), (1, 2)])
        self.assertEqual(var.get(), "outside")
        self.assertFalse(h3.cancelled())
        # Debug mode: asyncio's own handles, which know where they were made.
        self.loop.set_debug(True)
        h4 = self.loop.call_soon(seen.append, "debug")
        self.assertIsInstance(h4, events.Handle)
        self.assertTrue(h4._source_traceback)
        self.loop.set_debug(False)
        self.assertIsInstance(self.loop.call_soon(seen.append, "again"), _oneloop.Handle)
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen[-2:], ["debug", "again"])

    def test_call_soon_arguments_are_parsed_as_asyncio_parses_them(self):
        # call_soon is a C function that parses its own arguments: the same
        # outcomes as asyncio's BaseEventLoop.call_soon, message and all.
        self.loop.set_debug(False)
        seen = []

        def cb(*args):
            seen.append(args)

        def outcomes(lp):
            calls = [
                lambda: lp.call_soon(callback=cb),
                lambda: lp.call_soon(cb, "kw", context=None),
                lambda: lp.call_soon(),
                lambda: lp.call_soon(cb, 1, when=2),
                lambda: lp.call_soon(cb, callback=cb),
            ]
            out = []
            for call in calls:
                try:
                    call()
                    out.append("ok")
                except TypeError as e:
                    out.append(str(e).replace("BaseEventLoop.", ""))
            return out

        ref = asyncio.SelectorEventLoop()
        self.addCleanup(ref.close)
        expected = outcomes(ref)
        self.assertEqual(outcomes(self.loop), expected)
        self.assertEqual(expected[:2], ["ok", "ok"])
        self.assertEqual(len(set(expected[2:])), 3, expected)
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, [(), ("kw",)])

    def test_call_soon_called_with_no_argument_through_the_c_api_raises(self):
        # CPython may call a fastcall method with `args == NULL` when there
        # is no argument at all (`PyObject_CallNoArgs`, as a defaultdict's
        # factory is called): a TypeError, as with any other call, never a
        # crash. In a child: the failure this guards against is an abort.
        code = textwrap.dedent(
            f"""
            import collections, oneloop
            lp = oneloop.new_event_loop({self.host!r})
            lp.set_debug(False)
            try:
                collections.defaultdict(lp.call_soon)[0]
            except TypeError as e:
                print("TypeError", e, flush=True)
            lp.close()
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertIn("missing 1 required positional argument", proc.stdout)

    def test_create_future_and_get_debug_keep_asyncio_semantics(self):
        from asyncio import events, futures
        from unittest import mock

        # Outside debug mode (see above): C methods of the loop's type.
        self.loop.set_debug(False)
        self.assertIs(type(self.loop.get_debug()), bool)
        self.assertFalse(self.loop.get_debug())
        fut = self.loop.create_future()
        self.assertIs(type(fut), asyncio.Future)
        self.assertIs(fut.get_loop(), self.loop)
        self.assertIsNone(fut._source_traceback)

        # asyncio's create_future finds futures.Future at each call.
        class MyFuture(asyncio.Future):
            pass

        with mock.patch.object(futures, "Future", MyFuture):
            self.assertIs(type(self.loop.create_future()), MyFuture)

        # _debug is asyncio's attribute, and code sets it directly: debug
        # mode then, with asyncio's own call_soon and create_future.
        self.loop._debug = 1
        self.assertIs(self.loop.get_debug(), True)
        self.assertTrue(self.loop.create_future()._source_traceback)
        self.assertIsInstance(self.loop.call_soon(lambda: None), events.Handle)
        self.loop._debug = False
        self.assertFalse(self.loop.get_debug())
        self.assertIsNone(self.loop.create_future()._source_traceback)
        self.assertIsInstance(self.loop.call_soon(lambda: None), _oneloop_handle())
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    def test_a_subclass_call_soon_is_called(self):
        calls = []

        class Mine(oneloop.OneloopEventLoop):
            def call_soon(self, callback, *args, context=None):
                calls.append(callback)
                return super().call_soon(callback, *args, context=context)

        loop = Mine(self.host)
        self.addCleanup(loop.close)
        loop.call_soon(loop.stop)
        loop.run_forever()
        self.assertEqual(calls[:1], [loop.stop])

    def test_exception_in_timer_and_reader_reach_handler(self):
        contexts = []
        self.loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)

        def bad_reader():
            self.loop.remove_reader(r)
            self.loop.stop()
            raise KeyError("reader")

        self.loop.call_later(0.001, lambda: 1 / 0)
        self.loop.call_later(0.002, os.write, w, b"x")
        self.loop.add_reader(r, bad_reader)
        fired = self.watchdog()
        self.loop.run_forever()
        self.assertFalse(fired)
        self.assertEqual(
            [type(c["exception"]) for c in contexts], [ZeroDivisionError, KeyError]
        )
        self.assertTrue(all({"message", "exception", "handle"} <= set(c) for c in contexts))

    def test_base_exceptions_leave_run_forever_and_keep_the_batch(self):
        for exc in (KeyboardInterrupt, SystemExit):
            with self.subTest(exc=exc.__name__):
                seen = []

                def raise_it():
                    raise exc()

                self.loop.call_soon(seen.append, "before")
                self.loop.call_soon(raise_it)
                self.loop.call_soon(seen.append, "after")
                with self.assertRaises(exc):
                    self.loop.run_forever()
                # asyncio: the rest of the batch did not run, and is not lost.
                self.assertEqual(seen, ["before"])
                self.assertFalse(self.loop.is_running())
                self.loop.call_soon(self.loop.stop)
                self.loop.run_forever()
                self.assertEqual(seen, ["before", "after"])

    def test_keyboard_interrupt_among_threadsafe_calls_keeps_the_rest(self):
        seen = []

        def raise_it():
            raise KeyboardInterrupt

        def post():
            self.loop.call_soon_threadsafe(raise_it)
            self.loop.call_soon_threadsafe(seen.append, 1)

        t = threading.Thread(target=post)
        t.start()
        t.join()
        with self.assertRaises(KeyboardInterrupt):
            self.loop.run_forever()
        self.assertEqual(seen, [])
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, [1])

    def test_keyboard_interrupt_out_of_run_until_complete(self):
        async def main():
            await asyncio.sleep(0)
            raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            self.loop.run_until_complete(main())

    def test_cancelled_callbacks_and_timers_do_not_run(self):
        ran = []
        self.loop.call_soon(ran.append, "soon").cancel()
        self.loop.call_later(0.001, ran.append, "timer").cancel()
        self.loop.call_later(0.005, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(ran, [])
        # A cancelled timer's closure is gone from the Rust heap's live count.
        ready, timers, fds, tasks = self.loop._rust.stats()
        self.assertEqual(ready, 0)

    def test_debug_mode_reports_slow_callbacks_as_asyncio(self):
        # asyncio's debug mode times every handle it runs (_run_once):
        # one taking slow_callback_duration or longer is logged, and
        # loop._current_handle is the handle while it runs. This loop runs
        # handles in Rust and never calls _run_once: it did neither.
        import logging

        self.loop.set_debug(True)
        self.loop.slow_callback_duration = 0.01
        current = []
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)

        def slow(what):
            current.append((what, self.loop._current_handle))
            time.sleep(0.02)

        def slow_reader():
            self.loop.remove_reader(r)
            slow("reader")

        soon = self.loop.call_soon(slow, "soon")
        later = self.loop.call_later(0, slow, "later")
        reader = self.loop._add_reader(r, slow_reader)
        os.write(w, b"x")
        fired = self.watchdog()
        with self.assertLogs("asyncio", logging.WARNING) as logs:
            self.loop.call_later(0.05, self.loop.stop)
            self.loop.run_forever()
        self.assertFalse(fired)
        self.assertEqual(
            sorted(current, key=lambda c: c[0]),
            [("later", later), ("reader", reader), ("soon", soon)],
        )
        took = [line for line in logs.output if "Executing" in line and " took " in line]
        self.assertEqual(len(took), 3, logs.output)
        self.assertIsNone(self.loop._current_handle)

    def test_call_soon_is_fifo_and_later_calls_wait_an_iteration(self):
        order = []

        def first():
            order.append(1)
            self.loop.call_soon(order.append, 4)

        self.loop.call_soon(first)
        self.loop.call_soon(order.append, 2)
        self.loop.call_soon(order.append, 3)
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(order, [1, 2, 3])
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(order, [1, 2, 3, 4])


class TimerTests(_Base):
    def test_timers_never_early_by_loop_time(self):
        # D7; replaces CPython's test_timeout_rounding, which counts
        # _run_once calls. Tiny delays must neither fire early nor busy-wait.
        late = []

        def check(when):
            late.append(self.loop.time() - when)

        for delay in (1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 0.0):
            when = self.loop.time() + delay
            self.loop.call_at(when, check, when)
        self.loop.call_later(0.02, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(len(late), 6)
        self.assertTrue(all(d >= 0 for d in late), late)

    def test_timers_fire_in_deadline_order_ties_in_scheduling_order(self):
        order = []
        now = self.loop.time()
        self.loop.call_at(now + 0.003, order.append, "c")
        self.loop.call_at(now + 0.001, order.append, "a1")
        self.loop.call_at(now + 0.001, order.append, "a2")
        self.loop.call_at(now + 0.002, order.append, "b")
        self.loop.call_at(now + 0.004, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(order, ["a1", "a2", "b", "c"])

    def test_loop_time_follows_time_monotonic(self):
        before = time.monotonic()
        t = self.loop.time()
        after = time.monotonic()
        self.assertLessEqual(before - 0.001, t)
        self.assertLessEqual(t, after + 0.001)


class ThreadTests(_Base):
    def test_a_timer_cancelled_from_another_thread_does_not_run(self):
        # asyncio's TimerHandle.cancel() from another thread marks the
        # handle cancelled and it never runs (as call_soon's handles here);
        # the oneloop timer behind it belongs to the loop's thread, which
        # must not make cancel() raise and leave the timer to fire anyway.
        ran, raised = [], []
        timer = self.loop.call_later(0.001, ran.append, "timer")

        def cancel():
            try:
                timer.cancel()
            except BaseException as exc:  # noqa: BLE001 (reported below)
                raised.append(exc)

        worker = threading.Thread(target=cancel)
        worker.start()
        worker.join()
        fired = self.watchdog()
        self.loop.call_later(0.01, self.loop.stop)
        self.loop.run_forever()
        self.assertFalse(fired)
        self.assertEqual(raised, [])
        self.assertTrue(timer.cancelled())
        self.assertEqual(ran, [])

    def test_gil_is_released_while_waiting(self):
        # The loop waits with only a 10 s watchdog armed. A Python thread
        # can only run (and stop the loop) if the wait released the GIL;
        # otherwise the watchdog stops it and the test fails.
        fired = self.watchdog(10.0)
        done = threading.Event()
        started = threading.Event()

        def worker():
            started.wait()
            total = sum(range(10000))  # pure Python: needs the GIL
            self.loop.call_soon_threadsafe(self.loop.stop)
            done.set()
            return total

        t = threading.Thread(target=worker)
        t.start()
        self.loop.call_soon(started.set)
        t0 = time.monotonic()
        self.loop.run_forever()
        t.join()
        self.assertFalse(fired, "the loop was not woken by the thread: GIL held while waiting?")
        self.assertTrue(done.is_set())
        self.assertLess(time.monotonic() - t0, 10.0)

    def test_threadsafe_calls_from_many_threads_all_run(self):
        n_threads, per = 4, 250
        seen = []
        fired = self.watchdog()

        def add(i):
            seen.append(i)
            if len(seen) == n_threads * per:
                self.loop.stop()

        def worker(k):
            for i in range(per):
                self.loop.call_soon_threadsafe(add, (k, i))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        self.loop.run_forever()
        for t in threads:
            t.join()
        self.assertFalse(fired)
        self.assertEqual(len(seen), n_threads * per)
        for k in range(n_threads):
            mine = [i for (kk, i) in seen if kk == k]
            self.assertEqual(mine, list(range(per)), "per-thread order kept")

    def test_loop_methods_from_another_thread_raise_runtime_error(self):
        errors = []

        def worker():
            for call in (
                lambda: self.loop.call_soon(print),
                lambda: self.loop.call_later(1, print),
                lambda: self.loop.call_at(0, print),
                lambda: self.loop.add_reader(0, print),
                lambda: self.loop.remove_reader(0),
                lambda: self.loop.run_forever(),
                lambda: self.loop.close(),
            ):
                try:
                    call()
                except RuntimeError as e:
                    errors.append(e)
                except BaseException as e:  # PanicException would land here
                    errors.append(("wrong type", e))

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        self.assertEqual(len(errors), 7)
        self.assertTrue(all(isinstance(e, RuntimeError) for e in errors), errors)


    def test_time_from_another_thread_and_after_close(self):
        # asyncio's debug mode reads loop.time() in executor threads.
        out = []
        t = threading.Thread(target=lambda: out.append(self.loop.time()))
        before = self.loop.time()
        t.start()
        t.join()
        after = self.loop.time()
        self.assertLessEqual(before, out[0] + 1e-5)
        self.assertLessEqual(out[0], after + 1e-5)
        self.loop.close()
        self.assertGreaterEqual(self.loop.time(), after)

    def test_debug_mode_getaddrinfo_in_executor(self):
        self.loop.set_debug(True)
        infos = self.loop.run_until_complete(self.loop.getaddrinfo("127.0.0.1", 80))
        self.assertTrue(infos)

    def test_stop_from_another_thread_goes_through_the_remote(self):
        # asyncio tolerates loop.stop() from another thread (it sets a flag);
        # here it is routed through oneloop's thread-safe stop.
        fired = self.watchdog()
        self.loop.call_soon(lambda: threading.Thread(target=self.loop.stop).start())
        self.loop.run_forever()
        self.assertFalse(fired)


class LifecycleTests(_Base):
    def test_closed_loop_refuses_work(self):
        self.loop.close()
        self.loop.close()  # idempotent
        self.assertTrue(self.loop._rust.is_closed())
        for call in (
            lambda: self.loop.call_soon(print),
            lambda: self.loop.call_later(0, print),
            lambda: self.loop.call_soon_threadsafe(print),
            lambda: self.loop.run_forever(),
        ):
            with self.assertRaises(RuntimeError):
                call()

    def test_stop_after_close_is_a_no_op_as_in_asyncio(self):
        # asyncio's stop() only sets a flag, so it never raises, closed loop
        # or not; shutdown code calls it late (a signal, an atexit hook, a
        # worker thread's finally) and must not get a RuntimeError.
        self.loop.close()
        self.loop.stop()
        raised = []

        def stop_elsewhere():
            try:
                self.loop.stop()
            except BaseException as exc:  # noqa: BLE001 (reported below)
                raised.append(exc)

        worker = threading.Thread(target=stop_elsewhere)
        worker.start()
        worker.join()
        self.assertEqual(raised, [])

    def _assert_collected(self, make):
        # The loop `make()` returns is collected although never closed
        # (asyncio's ResourceWarning aside): no other reference is left.
        import warnings

        ref = weakref.ref(make())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        self.assertIsNone(ref())

    def test_unclosed_loop_with_queued_callbacks_is_collected(self):
        # Queued call_soon handles wait beside oneloop's ready queue; the
        # loop shows them to the collector, so callbacks that refer back to
        # the loop (a bound method) do not keep an unclosed loop alive.
        def make():
            lp = oneloop.new_event_loop(self.host)
            lp.set_debug(False)
            for _ in range(3):
                lp.call_soon(lp.stop)
            lp.call_soon(lp.call_soon, lp.stop, 1)
            return lp

        self._assert_collected(make)

    def test_unclosed_loop_is_collected(self):
        # The self-pipe reader is a bound method of the loop, held from Rust;
        # the Rust loop shows it to the garbage collector, so an unclosed
        # loop is still collected.
        self._assert_collected(lambda: oneloop.new_event_loop(self.host))


class EntryPointTests(_Base):
    def test_run(self):
        async def main():
            lp = asyncio.get_running_loop()
            await asyncio.sleep(0.001)
            return type(lp), lp.host

        self.assertEqual(oneloop.run(main(), host=self.host), (oneloop.OneloopEventLoop, self.host))

    def test_runner_loop_factory(self):
        async def main():
            return asyncio.get_running_loop().host

        with asyncio.Runner(loop_factory=lambda: oneloop.new_event_loop(self.host)) as runner:
            self.assertEqual(runner.run(main()), self.host)

    def test_policy(self):
        asyncio.set_event_loop_policy(oneloop.EventLoopPolicy(self.host))
        self.addCleanup(asyncio.set_event_loop_policy, None)
        lp = asyncio.new_event_loop()
        self.addCleanup(lp.close)
        self.assertIsInstance(lp, oneloop.OneloopEventLoop)
        self.assertEqual(lp.host, self.host)

    def test_ctrl_c_while_waiting_raises_keyboard_interrupt(self):
        # A real SIGINT while oneloop waits in Rust (GIL released) must
        # reach Python: asyncio.Runner cancels the main task, so run()
        # raises KeyboardInterrupt. The child reports when it is waiting.
        code = textwrap.dedent(
            f"""
            import asyncio, functools, sys, oneloop
            async def main():
                asyncio.get_running_loop().call_soon(functools.partial(print, "waiting", flush=True))
                await asyncio.sleep(60)
            try:
                oneloop.run(main(), host={self.host!r})
            except KeyboardInterrupt:
                print("KeyboardInterrupt", flush=True)
                sys.exit(0)
            print("finished without interrupt", flush=True)
            sys.exit(1)
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
        )
        self.addCleanup(proc.kill)
        self.assertEqual(proc.stdout.readline().strip(), "waiting")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        self.assertEqual(out.strip(), "KeyboardInterrupt")
        self.assertEqual(proc.returncode, 0)
        self.assertLess(time.monotonic() - t0, 30)


@unittest.skipUnless("smol" in oneloop.HOSTS, "this build has no smol host")
class HostAliasTests(unittest.TestCase):
    host = "smol"

    def test_async_std_is_the_smol_host(self):
        # "async-std" was the smol host's name before 0.1; it stays accepted.
        loop = oneloop.new_event_loop("async-std")
        try:
            self.assertEqual(loop._rust.backend_name, "smol")
            self.assertEqual(loop.run_until_complete(asyncio.sleep(0, "ok")), "ok")
        finally:
            loop.close()
            asyncio.set_event_loop(None)


per_host(globals(), HostTests, CallbackTests, TimerTests, ThreadTests, LifecycleTests, EntryPointTests)


if __name__ == "__main__":
    unittest.main()
