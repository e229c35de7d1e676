"""The GTK example (examples/gtk_aiohttp.py) drives itself under Xvfb: a
PyGObject GTK 4 window whose asyncio loop is the attached oneloop glib
loop, running an aiohttp server and client; the example checks its own
window (see its docstring) and exits 0 only if every check passed.

Needs ``xvfb-run`` (Debian's xvfb, which the workspace's
scripts/install-deps.sh installs) and GTK 4's typelib (gir1.2-gtk-4.0,
installed with libgtk-4-dev, and by python/system-deps.sh); without
xvfb-run the test is skipped, saying so.
"""

import os
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "gtk_aiohttp.py")


@unittest.skipUnless(shutil.which("xvfb-run"), "xvfb-run is not installed (Debian's xvfb)")
class GtkExampleTests(unittest.TestCase):
    host = "glib"

    def test_self_test_passes_under_xvfb(self):
        # The same interpreter flags as this run (-X dev in the second
        # pass; PYTHONMALLOC comes through the environment).
        flags = ["-X", "dev"] if sys.flags.dev_mode else []
        proc = subprocess.run(
            ["xvfb-run", "-a", "-s", "-screen 0 1024x768x24",
             sys.executable, *flags, EXAMPLE, "--self-test"],
            capture_output=True, text=True, timeout=90,
        )
        out = proc.stdout
        self.assertEqual(proc.returncode, 0, f"exit {proc.returncode}\n{out}\n{proc.stderr[-2000:]}")
        self.assertIn("gtk_aiohttp self-test: 10 passed, 0 failed", out, out)
        self.assertNotIn("FAIL", out, out)


if __name__ == "__main__":
    unittest.main()
