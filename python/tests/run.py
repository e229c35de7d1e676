"""Run the Python tests and print pass/skip/fail counts per host and suite.

    python tests/run.py            # every host this build has
    ONELOOP_HOSTS=glib python tests/run.py

Exits non-zero if any test failed or errored, or if no test ran.
The last line is the plain summary ("N passed, N failed, N skipped").
"""

import collections
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MODULES = (
    "test_cpython_events",
    "test_oneloop",
    "test_programs",
    "test_attached",
    "test_edges",
    "test_transports",
    "test_signals",
    "test_gtk_example",
)


class _Counting(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts = collections.defaultdict(collections.Counter)

    def _key(self, test):
        cls = type(test)
        return (getattr(cls, "host", None) or _host_of(cls), cls.__module__)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.counts[self._key(test)]["passed"] += 1

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.counts[self._key(test)]["failed"] += 1

    def addError(self, test, err):
        super().addError(test, err)
        self.counts[self._key(test)]["failed"] += 1

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.counts[self._key(test)]["skipped"] += 1

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.counts[self._key(test)]["failed"] += 1

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.counts[self._key(test)]["failed"] += 1


def _host_of(cls):
    import oneloop

    for host in sorted(oneloop.HOSTS, key=len, reverse=True):
        tag = "".join(p.capitalize() for p in host.split("-"))
        if tag in cls.__name__:
            return host
    return "?"


def main():
    suite = unittest.defaultTestLoader.loadTestsFromNames(MODULES)
    runner = unittest.TextTestRunner(resultclass=_Counting, verbosity=1)
    result = runner.run(suite)
    total = collections.Counter()
    print()
    print(f"{'host':<10} {'suite':<22} {'passed':>6} {'skipped':>7} {'failed':>6}")
    for (host, module), c in sorted(result.counts.items()):
        print(f"{host:<10} {module:<22} {c['passed']:>6} {c['skipped']:>7} {c['failed']:>6}")
        total.update(c)
    print(f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    ok = result.wasSuccessful() and total["passed"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
