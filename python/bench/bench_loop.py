"""Crude same-run comparison: oneloop's loop (per host) vs CPython's loop
(and uvloop when installed). Not the issue's benchmark (no external load
tool, no callgrind): a first look, for docs/python.md.

    python bench/bench_loop.py [--rounds 3]

call_soon: 200 000 callbacks, each queued by the previous batch (1 000 at a
time), reported as callbacks per second.
echo: a 1 KiB ping-pong over loopback TCP between an asyncio Protocol server
and client on the same loop, 20 000 round trips, reported as round trips per
second and CPU microseconds per round trip.
"""

import argparse
import asyncio
import socket
import time

import oneloop

try:
    import uvloop
except ImportError:  # optional
    uvloop = None


def factories():
    yield "asyncio", asyncio.SelectorEventLoop
    if uvloop is not None:
        yield "uvloop", uvloop.new_event_loop
    for host in oneloop.HOSTS:
        yield f"oneloop:{host}", lambda host=host: oneloop.new_event_loop(host)


def bench_call_soon(loop, total=200_000, batch=1_000):
    left = total

    def tick():
        nonlocal left
        left -= 1

    def refill():
        if left <= 0:
            loop.stop()
            return
        for _ in range(batch):
            loop.call_soon(tick)
        loop.call_soon(refill)

    loop.call_soon(refill)
    t0 = time.perf_counter()
    loop.run_forever()
    return total / (time.perf_counter() - t0)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        self.t.write(data)


class Client(asyncio.Protocol):
    def __init__(self, n, size, done):
        self.n, self.size, self.done, self.got = n, size, done, 0
        self.msg = b"x" * size

    def connection_made(self, transport):
        self.t = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self.msg)

    def data_received(self, data):
        self.got += len(data)
        if self.got >= self.size:
            self.got -= self.size
            self.n -= 1
            if self.n == 0:
                self.done.set_result(None)
            else:
                self.t.write(self.msg)


def bench_echo(loop, n=20_000, size=1024):
    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        done = loop.create_future()
        tr, _ = await loop.create_connection(lambda: Client(n, size, done), "127.0.0.1", port)
        c0, t0 = time.process_time(), time.perf_counter()
        await done
        c1, t1 = time.process_time(), time.perf_counter()
        tr.close()
        srv.close()
        await srv.wait_closed()
        return n / (t1 - t0), (c1 - c0) / n * 1e6

    return loop.run_until_complete(main())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = {}
    for _ in range(args.rounds):  # interleaved rounds: same-run ratios
        for name, make in factories():
            loop = make()
            try:
                cs = bench_call_soon(loop)
                rt, cpu = bench_echo(loop)
            finally:
                loop.close()
            rows.setdefault(name, []).append((cs, rt, cpu))
    print(f"{'loop':<18} {'call_soon/s':>12} {'echo rt/s':>10} {'CPU us/rt':>10}   (median of {args.rounds})")
    for name, vals in rows.items():
        med = lambda i: sorted(v[i] for v in vals)[len(vals) // 2]
        print(f"{name:<18} {med(0):>12,.0f} {med(1):>10,.0f} {med(2):>10.1f}")


if __name__ == "__main__":
    main()
