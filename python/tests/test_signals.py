"""loop.add_signal_handler / remove_signal_handler through oneloop's signal
handling, on every host (``ONELOOP_HOSTS`` narrows it).

CPython's own signal tests (``test_unix_events.SelectorEventLoopSignalTests``)
patch the selector loop's ``signal`` module with mocks; these are the same
behaviours checked with real signals sent to this process. Every wait is
bounded by a watchdog whose firing is the failure.
"""

import asyncio
import os
import signal
import threading
import unittest

import oneloop
from _per_host import per_host



class _Base:
    host = None

    def setUp(self):
        self.loop = oneloop.new_event_loop(self.host)
        self.addCleanup(self._close)
        self.before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}

    def _close(self):
        if not self.loop.is_closed():
            self.loop.close()
        for s, h in self.before.items():
            signal.signal(s, h)

    def run_until(self, done, seconds=10.0):
        """Run the loop until the future `done` resolves; fail after `seconds`."""
        fired = []

        def fire():
            fired.append(True)
            self.loop.stop()

        dog = self.loop.call_later(seconds, fire)
        done.add_done_callback(lambda _: self.loop.stop())
        self.loop.run_forever()
        dog.cancel()
        self.assertFalse(fired, "watchdog fired: the signal handler never ran")
        return done.result()


class SignalTests(_Base):
    def test_handler_runs_as_a_loop_callback_with_its_args(self):
        got = self.loop.create_future()

        def handler(a, b):
            got.set_result((a, b, asyncio.get_running_loop()))

        self.loop.add_signal_handler(signal.SIGUSR1, handler, 1, "two")
        self.loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        self.assertEqual(self.run_until(got), (1, "two", self.loop))

    def test_signal_from_another_thread_wakes_the_wait_without_the_wakeup_fd(self):
        # Python's own path needs the signal module's wakeup fd to reach the
        # loop (asyncio's _process_self_data); with it cleared, only
        # oneloop's C handler and self-pipe can wake the host's wait. Shown
        # to fail (watchdog) with add_signal_handler on asyncio's path.
        got = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGUSR1, got.set_result, "woken")
        old = signal.set_wakeup_fd(-1)
        self.addCleanup(signal.set_wakeup_fd, old)
        main = threading.get_ident()
        self.loop.call_later(
            0.05,
            lambda: threading.Thread(
                target=signal.pthread_kill, args=(main, signal.SIGUSR1)
            ).start(),
        )
        # run_forever points the wakeup fd at the self-pipe again: clear it
        # from inside the run, before the signal is sent.
        self.loop.call_soon(signal.set_wakeup_fd, -1)
        self.assertEqual(self.run_until(got), "woken")

    def test_replace_remove_and_the_disposition_left_behind(self):
        calls = []
        self.loop.add_signal_handler(signal.SIGUSR1, calls.append, "first")
        self.assertIs(signal.getsignal(signal.SIGUSR1), asyncio.unix_events._sighandler_noop)
        self.loop.add_signal_handler(signal.SIGUSR1, calls.append, "second")
        got = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGUSR2, got.set_result, None)
        self.loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        self.loop.call_soon(self.loop.call_soon, os.kill, os.getpid(), signal.SIGUSR2)
        self.run_until(got)
        self.assertEqual(calls, ["second"])
        self.assertTrue(self.loop.remove_signal_handler(signal.SIGUSR1))
        self.assertFalse(self.loop.remove_signal_handler(signal.SIGUSR1))
        self.assertEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)
        self.assertTrue(self.loop.remove_signal_handler(signal.SIGUSR2))

    def test_sigint_handler_then_ctrl_c_again_after_removal(self):
        got = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGINT, got.set_result, "handled")
        self.loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
        self.assertEqual(self.run_until(got), "handled")  # no KeyboardInterrupt
        self.assertTrue(self.loop.remove_signal_handler(signal.SIGINT))
        self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)
        with self.assertRaises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass  # Python runs the handler between bytecodes

    def test_asyncio_errors(self):
        async def coro():
            pass

        with self.assertRaises(TypeError):
            self.loop.add_signal_handler(signal.SIGUSR1, coro)
        with self.assertRaises(TypeError):
            self.loop.add_signal_handler("USR1", print)
        with self.assertRaises(ValueError):
            self.loop.add_signal_handler(0, print)
        with self.assertRaises(ValueError):
            self.loop.add_signal_handler(signal.NSIG + 1, print)
        with self.assertRaises(ValueError):
            self.loop.remove_signal_handler(signal.NSIG + 1)
        for sig in (signal.SIGKILL, signal.SIGSTOP):
            with self.assertRaisesRegex(RuntimeError, f"sig {int(sig)} cannot be caught"):
                self.loop.add_signal_handler(sig, print)
            self.assertFalse(self.loop.remove_signal_handler(sig))
        self.assertEqual(self.loop._signal_handlers, {})

    def test_off_the_main_thread_is_a_runtime_error(self):
        errors = []

        def other():
            lp = oneloop.new_event_loop(self.host)
            try:
                lp.add_signal_handler(signal.SIGUSR1, print)
            except RuntimeError as e:
                errors.append(e)
            finally:
                lp.close()

        t = threading.Thread(target=other)
        t.start()
        t.join()
        self.assertEqual(len(errors), 1)
        self.assertEqual(signal.getsignal(signal.SIGUSR1), self.before[signal.SIGUSR1])

    def test_exception_in_handler_is_reported_and_cancelled_handle_removed(self):
        contexts = []
        self.loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        err = ValueError("boom")

        def bad():
            raise err

        self.loop.add_signal_handler(signal.SIGUSR1, bad)
        got = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGUSR2, got.set_result, None)
        self.loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        self.loop.call_soon(self.loop.call_soon, os.kill, os.getpid(), signal.SIGUSR2)
        self.run_until(got)
        self.assertEqual(len(contexts), 1)
        self.assertIs(contexts[0]["exception"], err)
        self.assertIn("handle", contexts[0])
        # asyncio: a cancelled handle is removed when its signal next comes.
        self.loop._signal_handlers[signal.SIGUSR1].cancel()
        got = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGUSR2, got.set_result, None)
        self.loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        self.loop.call_soon(self.loop.call_soon, os.kill, os.getpid(), signal.SIGUSR2)
        self.run_until(got)
        self.assertNotIn(signal.SIGUSR1, self.loop._signal_handlers)
        self.assertEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)

    def test_close_removes_the_handlers_and_another_loop_may_add_then(self):
        self.loop.add_signal_handler(signal.SIGUSR1, print)
        other = oneloop.new_event_loop(self.host)
        try:
            # oneloop: one loop of the process owns signal dispositions.
            with self.assertRaisesRegex(RuntimeError, "another event loop"):
                other.add_signal_handler(signal.SIGUSR2, print)
            self.assertEqual(other._signal_handlers, {})
            self.loop.close()
            self.assertEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)
            self.assertEqual(signal.set_wakeup_fd(-1), -1)
            got = other.create_future()
            other.add_signal_handler(signal.SIGUSR2, got.set_result, "other")
            other.call_soon(os.kill, os.getpid(), signal.SIGUSR2)
            other.call_later(10, other.stop)
            got.add_done_callback(lambda _: other.stop())
            other.run_forever()
            self.assertEqual(got.result(), "other")
        finally:
            other.close()
        self.assertEqual(signal.getsignal(signal.SIGUSR2), signal.SIG_DFL)

    def test_a_refused_add_on_another_loop_leaves_this_loops_handler_working(self):
        # Found in review: the refused loop used to set Python's view of the
        # signal (signal.signal, which replaces the C handler in the kernel)
        # before oneloop refused it, and its rollback could not put this
        # loop's C handler back: the handler below never ran again.
        got = self.loop.create_future()
        self.loop.add_signal_handler(signal.SIGUSR1, got.set_result, "this")
        other = oneloop.new_event_loop(self.host)
        try:
            with self.assertRaisesRegex(RuntimeError, "another event loop"):
                other.add_signal_handler(signal.SIGUSR1, print)
        finally:
            other.close()
        self.loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        self.assertEqual(self.run_until(got), "this")


per_host(globals(), SignalTests)


if __name__ == "__main__":
    unittest.main()
