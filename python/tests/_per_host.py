"""What every test module needs to run its tests on every host: the hosts
(``ONELOOP_HOSTS=default,glib`` narrows them) and one concrete test class
per host and base, named after both (``CallbackTests`` on glib is
``CallbackGlibTests``)."""

import os
import unittest

import oneloop


def hosts():
    wanted = os.environ.get("ONELOOP_HOSTS")
    return tuple(h for h in wanted.split(",") if h) if wanted else oneloop.HOSTS


def tag(host):
    """``"async-std"`` → ``"AsyncStd"``: a host as part of a class name."""
    return "".join(p.capitalize() for p in host.split("-"))


def per_host(namespace, *bases):
    """Put a subclass of each base for each host into ``namespace`` (a
    module's ``globals()``), with ``host`` set; a base that is not yet a
    ``TestCase`` becomes one. Then remove the bases themselves, so that the
    loader collects only the per-host classes."""
    for host in hosts():
        for base in bases:
            name = base.__name__.replace("Tests", f"{tag(host)}Tests")
            parents = (base,) if issubclass(base, unittest.TestCase) else (base, unittest.TestCase)
            namespace[name] = type(name, parents, {"host": host, "__module__": namespace["__name__"]})
    for base in bases:
        namespace.pop(base.__name__, None)
