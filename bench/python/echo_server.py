"""The echo matrix's Python servers: asyncio's protocol (or streams) echo on
uvloop or on CPython's own loop, with the control channel of the Rust
servers (bench/src/echo/control.rs), so bench_echo_matrix drives them alike:

- prints ``port <N>`` once it listens on 127.0.0.1;
- a line ``cpu`` on stdin prints ``cpu_ns <N>``, the process CPU time
  (every thread, user + system: CLOCK_PROCESS_CPUTIME_ID);
- ``quit`` or the end of stdin prints ``cpu_ns <N>`` and exits 0.

    python echo_server.py --loop uvloop|asyncio [--server protocol|streams] [--port 0]

Like the Rust servers, it has TCP_NODELAY (asyncio and uvloop both set it
on their TCP transports) and reads up to 256 KiB per readable event (both
loops' read size, as oneloop's).
"""

import argparse
import asyncio
import os
import sys
import threading
import time


class Echo(asyncio.Protocol):
    """Every byte received is written back."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_stream(reader, writer):
    """The streams echo: read, write back, drain."""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()


def cpu_ns():
    return time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID)


def control():
    """Answer the driver on stdin until it says quit or goes away."""
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "cpu":
            print(f"cpu_ns {cpu_ns()}", flush=True)
        elif cmd == "quit":
            break
        else:
            print(f"echo_server.py: unknown command {cmd!r}", file=sys.stderr)
    print(f"cpu_ns {cpu_ns()}", flush=True)
    os._exit(0)


async def serve(kind, port):
    if kind == "protocol":
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    else:
        server = await asyncio.start_server(echo_stream, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    threading.Thread(target=control, name="echo-control", daemon=True).start()
    await server.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loop", choices=["uvloop", "asyncio"], required=True)
    p.add_argument("--server", choices=["protocol", "streams"], default="protocol")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    runner(serve(args.server, args.port))


if __name__ == "__main__":
    main()
