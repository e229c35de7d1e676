"""The Python loop's benchmarks (issue 18): oneloop's asyncio loop on each
host against CPython's own loop and uvloop, same run, interleaved rounds.

    python bench/bench_python.py call_soon [--rounds 5]
    python bench/bench_python.py call_soon_ir
    python bench/bench_python.py echo [--rounds 3] [--secs 2] [--sizes 1024,16384,102400]
                                      [--modes protocol,streams] [--connections 10]
    python bench/bench_python.py echo_ir [--sizes 1024] [--modes protocol] [--secs 6]

Loops: asyncio, uvloop (if installed: ``pip install uvloop``; it is not a
test requirement) and oneloop:<host> for every host of the build;
``--loops`` picks some.

call_soon     callbacks per second: 200 000 callbacks, queued 1 000 at a time
              by a callback of the previous batch (median of the rounds).
call_soon_ir  user-space instructions per callback under callgrind: the
              difference between a run of 120 000 and one of 20 000
              callbacks, divided by 100 000, so start-up and interpreter
              teardown cancel out. Deterministic: the children run with
              PYTHONHASHSEED=0 (unless it is set), since string hashing
              moves the count by up to ~120 from run to run.
echo          TCP echo with the project's load tool (bench_echo_load, one
              blocking client thread per connection, strict
              request/response, every reply checked): the Python server
              (bench/echo_server.py) pinned to CPU 0, the load to CPU 1;
              per cell, requests per second and the server's CPU time per
              request; medians over rounds, each round visiting the cells
              in a rotated order; ratios to uvloop taken within a round.
echo_ir       user-space instructions per request of the server under
              callgrind: one connection, a warm-up run, then the counters
              are zeroed (callgrind_control -z), a measured run, a dump
              (callgrind_control -d); instructions / requests of the
              measured run.

Measure a release build: ``maturin build --release`` (``make python-test``
builds a debug one, for the tests); the driver refuses a debug build.
The load tool is built from the workspace: ``cargo build --release -p
oneloop-bench --bin bench_echo_load`` (``--load PATH`` to give another).
"""

import argparse
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SERVER = os.path.join(HERE, "echo_server.py")


def loops_available():
    names = ["asyncio"]
    try:
        import uvloop  # noqa: F401

        names.append("uvloop")
    except ImportError:
        print("uvloop is not installed: its rows are left out", file=sys.stderr)
    import oneloop

    names += [f"oneloop:{h}" for h in oneloop.HOSTS]
    return names


# -- call_soon --------------------------------------------------------------

CALL_SOON = r"""
import asyncio, sys, time
name, total = sys.argv[1], int(sys.argv[2])
if name == "asyncio":
    loop = asyncio.SelectorEventLoop()
elif name == "uvloop":
    import uvloop; loop = uvloop.new_event_loop()
else:
    import oneloop; loop = oneloop.new_event_loop(name.split(":", 1)[1])
left = total
def tick():
    global left
    left -= 1
def refill():
    if left <= 0:
        loop.stop()
        return
    for _ in range(1000):
        loop.call_soon(tick)
    loop.call_soon(refill)
loop.call_soon(refill)
t0 = time.perf_counter()
loop.run_forever()
print(total / (time.perf_counter() - t0))
loop.close()
"""


def call_soon(args):
    rows = {name: [] for name in args.loops}
    for r in range(args.rounds):
        order = args.loops[r % len(args.loops):] + args.loops[: r % len(args.loops)]
        for name in order:
            # cwd: the installed package, not python/oneloop (no extension there).
            out = subprocess.run(
                [sys.executable, "-c", CALL_SOON, name, "200000"],
                check=True, capture_output=True, text=True, cwd=HERE,
            ).stdout
            rows[name].append(float(out))
    print(f"call_soon: callbacks per second, median of {args.rounds} interleaved rounds")
    print()
    ref = rows.get("uvloop")
    print("| loop | callbacks/s | ÷ uvloop (median of per-round ratios) |")
    print("|---|---:|---:|")
    for name, vals in rows.items():
        ratio = ""
        if ref:
            ratio = f"{statistics.median(v / u for v, u in zip(vals, ref)):.2f}"
        print(f"| {name} | {statistics.median(vals):,.0f} | {ratio} |")


def callgrind_total(cmd, out_file):
    # A fixed hash seed: dict layouts, hence probe counts, follow it.
    env = {"PYTHONHASHSEED": "0", **os.environ}
    subprocess.run(
        ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out_file}", *cmd],
        check=True, capture_output=True, cwd=HERE, env=env,
    )
    return dump_total(out_file)


def dump_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no total in {path}")


def call_soon_ir(args):
    tmp = tempfile.mkdtemp(prefix="oneloop-cg-")
    print("call_soon: user-space instructions per callback (callgrind; "
          "(Ir(120 000) - Ir(20 000)) / 100 000)")
    print()
    print("| loop | instructions/callback | ÷ uvloop |")
    print("|---|---:|---:|")
    per = {}
    for name in args.loops:
        small = callgrind_total([sys.executable, "-c", CALL_SOON, name, "20000"],
                                os.path.join(tmp, "small.out"))
        big = callgrind_total([sys.executable, "-c", CALL_SOON, name, "120000"],
                              os.path.join(tmp, "big.out"))
        per[name] = (big - small) / 100_000
    for name, v in per.items():
        ratio = f"{v / per['uvloop']:.2f}" if "uvloop" in per else ""
        print(f"| {name} | {v:,.0f} | {ratio} |")
    shutil.rmtree(tmp, ignore_errors=True)


# -- echo -------------------------------------------------------------------


class Server:
    """An echo_server.py child, pinned, speaking the control protocol."""

    def __init__(self, loop, mode, cpu="0", valgrind_out=None):
        cmd = [sys.executable, SERVER, "--loop", loop, "--mode", mode]
        if valgrind_out:
            cmd = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={valgrind_out}", *cmd]
        if shutil.which("taskset") and cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"port (\d+)", line)
        if not m:
            raise RuntimeError(f"{loop}/{mode}: expected 'port N', got {line!r}")
        self.port = int(m.group(1))

    def cpu_ns(self):
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        return int(line.split()[1])

    def quit(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def run_load(load, port, size, secs, connections, cpu="1"):
    cmd = [load, "--port", str(port), "--size", str(size), "--secs", str(secs),
           "--connections", str(connections)]
    if shutil.which("taskset") and cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"requests (\d+) elapsed_ns (\d+)", out)
    if not m:
        raise RuntimeError(f"unexpected load output {out!r}")
    return int(m.group(1)), int(m.group(2))


def echo(args):
    cells = [(loop, mode) for mode in args.modes for loop in args.loops]
    results = {}  # (cell, size) -> list of (req/s, cpu us/req) per round
    servers = {cell: Server(*cell) for cell in cells}
    try:
        for size in args.sizes:  # warm-up: each server, each size
            for cell, srv in servers.items():
                run_load(args.load, srv.port, size, 0.5, args.connections)
        for r in range(args.rounds):
            for size in args.sizes:
                order = cells[r % len(cells):] + cells[: r % len(cells)]
                for cell in order:
                    srv = servers[cell]
                    run_load(args.load, srv.port, size, 0.25, args.connections)
                    c0 = srv.cpu_ns()
                    n, elapsed = run_load(args.load, srv.port, size, args.secs, args.connections)
                    c1 = srv.cpu_ns()
                    results.setdefault((cell, size), []).append(
                        (n / (elapsed / 1e9), (c1 - c0) / n / 1e3))
    finally:
        for srv in servers.values():
            srv.quit()
    print(f"TCP echo: {args.connections} connections, {args.rounds} rounds of {args.secs} s "
          "per cell and size; medians; ÷ uvloop = median of the per-round ratios")
    for mode in args.modes:
        print()
        print(f"**{mode}**")
        print()
        head = "| loop | " + " | ".join(
            f"{size_label(s)} req/s | {size_label(s)} CPU µs/req | ÷ uvloop CPU" for s in args.sizes)
        print(head + " |")
        print("|---|" + "---:|" * (3 * len(args.sizes)))
        for loop in args.loops:
            cols = []
            for size in args.sizes:
                vals = results[((loop, mode), size)]
                ref = results.get((("uvloop", mode), size))
                ratio = ""
                if ref:
                    ratio = f"{statistics.median(v[1] / u[1] for v, u in zip(vals, ref)):.2f}"
                cols += [f"{statistics.median(v[0] for v in vals):,.0f}",
                         f"{statistics.median(v[1] for v in vals):.2f}", ratio]
            print(f"| {loop} | " + " | ".join(cols) + " |")


def echo_ir(args):
    tmp = tempfile.mkdtemp(prefix="oneloop-cg-")
    rows = {}
    for mode in args.modes:
        for size in args.sizes:
            for loop in args.loops:
                out = os.path.join(tmp, "echo.%p")
                srv = Server(loop, mode, cpu=None, valgrind_out=out)
                try:
                    run_load(args.load, srv.port, size, args.warmup, 1, cpu=None)
                    subprocess.run(["callgrind_control", "-z", str(srv.proc.pid)],
                                   check=True, capture_output=True)
                    n, _ = run_load(args.load, srv.port, size, args.secs, 1, cpu=None)
                    before = set(glob.glob(os.path.join(tmp, "echo.*")))
                    subprocess.run(["callgrind_control", "-d", str(srv.proc.pid)],
                                   check=True, capture_output=True)
                    dumps = sorted(set(glob.glob(os.path.join(tmp, "echo.*"))) - before,
                                   key=os.path.getmtime)
                    if not dumps:
                        raise RuntimeError("callgrind_control -d wrote no dump")
                    rows[(mode, size, loop)] = (dump_total(dumps[-1]) / n, n)
                    if args.keep:
                        os.makedirs(args.keep, exist_ok=True)
                        shutil.copy(dumps[-1], os.path.join(
                            args.keep, f"echo-{mode}-{size}-{loop.replace(':', '-')}.out"))
                        with open(os.path.join(args.keep, f"echo-{mode}-{size}-{loop.replace(':', '-')}.n"), "w") as f:
                            f.write(f"{n}\n")
                finally:
                    srv.quit()
                    for f in glob.glob(os.path.join(tmp, "echo.*")):
                        os.unlink(f)
    print("TCP echo under callgrind: server user-space instructions per request "
          f"(1 connection; warm-up {args.warmup} s, counters zeroed, {args.secs} s measured)")
    for mode in args.modes:
        print()
        print(f"**{mode}**")
        print()
        print("| loop | " + " | ".join(f"{size_label(s)} instr/req | ÷ uvloop" for s in args.sizes) + " |")
        print("|---|" + "---:|" * (2 * len(args.sizes)))
        for loop in args.loops:
            cols = []
            for size in args.sizes:
                v, n = rows[(mode, size, loop)]
                ref = rows.get((mode, size, "uvloop"))
                cols += [f"{v:,.0f}", f"{v / ref[0]:.2f}" if ref else ""]
            print(f"| {loop} | " + " | ".join(cols) + " |")
    shutil.rmtree(tmp, ignore_errors=True)


def size_label(size):
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("call_soon", "call_soon_ir", "echo", "echo_ir"))
    ap.add_argument("--loops", help="comma-separated: asyncio,uvloop,oneloop:default,…")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=None)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--sizes", default="1024,16384,102400")
    ap.add_argument("--modes", default="protocol,streams")
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--keep", metavar="DIR",
                    help="echo_ir: copy each callgrind dump (and its request count) into DIR")
    ap.add_argument("--allow-debug", action="store_true", help="measure a debug build anyway")
    ap.add_argument("--load", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "bench_echo_load"))
    args = ap.parse_args()
    args.loops = args.loops.split(",") if args.loops else loops_available()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.modes = args.modes.split(",")
    from oneloop import _oneloop

    if _oneloop.BUILD_PROFILE != "release" and not args.allow_debug:
        raise SystemExit("the installed oneloop is a debug build (maturin build without --release): "
                         "measure a release build, or pass --allow-debug")
    if args.what in ("echo", "echo_ir") and not os.access(args.load, os.X_OK):
        raise SystemExit(f"no load tool at {args.load}: cargo build --release -p oneloop-bench "
                         "--bin bench_echo_load (or --load PATH)")
    if args.secs is None:
        args.secs = 6.0 if args.what == "echo_ir" else 2.0
    {"call_soon": call_soon, "call_soon_ir": call_soon_ir, "echo": echo, "echo_ir": echo_ir}[args.what](args)


if __name__ == "__main__":
    main()
