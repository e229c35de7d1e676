"""A Python TCP echo server for the benchmarks, on any loop.

    python bench/echo_server.py --loop oneloop:default --mode protocol

--loop    asyncio (CPython's selector loop), uvloop, or oneloop:<host>
--mode    protocol (an asyncio.Protocol whose data_received writes back)
          or streams (asyncio.start_server, a task per connection doing
          read() then write() and drain())

It speaks the control protocol of the project's Rust echo servers
(bench/src/echo/control.rs), so the same driver runs both: it prints
``port <N>`` once it listens on 127.0.0.1, answers a line ``cpu`` on its
stdin with ``cpu_ns <N>`` (the process CPU time, every thread, user and
system), and exits on ``quit`` or at the end of stdin.
"""

import argparse
import asyncio
import os
import sys
import threading
import time


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_stream(reader, writer):
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def make_loop(name):
    if name == "asyncio":
        return asyncio.SelectorEventLoop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name.startswith("oneloop:"):
        import oneloop

        return oneloop.new_event_loop(name.split(":", 1)[1])
    raise SystemExit(f"unknown loop {name!r}")


def control(loop, stop):
    """The control channel, on a thread that sleeps in readline()."""
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "cpu":
            print(f"cpu_ns {time.process_time_ns()}", flush=True)
        elif cmd == "quit":
            break
        else:
            print(f"echo_server: unknown command {cmd!r}", file=sys.stderr, flush=True)
    print(f"cpu_ns {time.process_time_ns()}", flush=True)
    loop.call_soon_threadsafe(stop.set_result, None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", default="asyncio")
    ap.add_argument("--mode", choices=("protocol", "streams"), default="protocol")
    args = ap.parse_args()
    loop = make_loop(args.loop)
    asyncio.set_event_loop(loop)

    async def serve():
        if args.mode == "protocol":
            server = await loop.create_server(EchoProtocol, "127.0.0.1", 0)
        else:
            server = await asyncio.start_server(echo_stream, "127.0.0.1", 0)
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        stop = loop.create_future()
        threading.Thread(target=control, args=(loop, stop), daemon=True).start()
        await stop
        server.close()

    try:
        loop.run_until_complete(serve())
    finally:
        loop.close()
    # Skip interpreter teardown: the driver has its figures.
    os._exit(0)


if __name__ == "__main__":
    main()
