"""CPython's own event-loop tests, run on the oneloop loop, once per host.

The tests are CPython's ``test.test_asyncio.test_events.EventLoopTestsMixin``
(through ``UnixEventLoopTestsMixin``, which adds the child watcher the Unix
variants use) and ``SubprocessTestsMixin``, unchanged; only
``create_event_loop`` differs, as in PyGObject's ``tests/test_events.py``.
A test is skipped only where it inspects a CPython implementation detail
rather than loop behaviour; each skip says which.

Run: ``python -m unittest -v tests.test_cpython_events`` (from ``python/``),
or ``ONELOOP_HOSTS=default,glib`` to pick hosts.
"""

import os
import unittest

from test.test_asyncio import test_events
from test.test_asyncio import utils as test_utils

import oneloop

# CPython test modules reset the policy in their teardown; this is what
# their own runner does too (test_asyncio/__init__.py's load_tests).
def tearDownModule():
    import asyncio
    asyncio.set_event_loop_policy(None)


# Tests whose subject is CPython's own loop implementation, with the reason.
# Everything not listed here runs, unchanged.
IMPLEMENTATION_DETAILS = {
    "test_timeout_rounding": (
        "counts calls of BaseEventLoop._run_once(), CPython's loop iteration; "
        "oneloop's scheduler iterates in Rust and never calls _run_once, so "
        "the test would pass without checking anything. Timer rounding is "
        "checked by tests/test_oneloop.py::TimerTests instead."
    ),
}


def _hosts():
    wanted = os.environ.get("ONELOOP_HOSTS")
    if not wanted:
        return oneloop.HOSTS
    return tuple(h for h in wanted.split(",") if h)


def _class_name(host):
    return "".join(part.capitalize() for part in host.split("-"))


def _make_tests(host):
    class Mixin:
        def create_event_loop(self):
            return oneloop.new_event_loop(host)

    namespace = {"host": host}
    for name, reason in IMPLEMENTATION_DETAILS.items():
        namespace[name] = unittest.skip(reason)(lambda self: None)

    # The same bases as CPython's EPollEventLoopTests, with our loop.
    return type(
        f"Oneloop{_class_name(host)}EventLoopTests",
        (
            Mixin,
            test_events.UnixEventLoopTestsMixin,
            test_events.SubprocessTestsMixin,
            test_utils.TestCase,
        ),
        namespace,
    )


for _host in _hosts():
    _cls = _make_tests(_host)
    _cls.__module__ = __name__
    globals()[_cls.__name__] = _cls
del _host, _cls


if __name__ == "__main__":
    unittest.main()
