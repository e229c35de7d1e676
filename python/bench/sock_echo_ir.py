"""User-space instructions per request of a ``loop.sock_recv`` /
``loop.sock_sendall`` echo server (1 KiB, one connection, strict
request/response), under callgrind: does a Rust ``sock_*`` pay?

    python bench/sock_echo_ir.py [--loops asyncio,uvloop,oneloop:default]

Per loop: (Ir(server, 12 000 requests) - Ir(server, 2 000)) / 10 000, so
start-up cancels out. The client is a child process valgrind does not
trace (--trace-children=no): only the server's instructions are counted.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

SERVER = r"""
import asyncio, socket, subprocess, sys
name, n = sys.argv[1], int(sys.argv[2])
CLIENT = '''
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
msg = bytes(range(256)) * 4
for _ in range(int(sys.argv[2])):
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        got += s.recv(65536)
    assert got == msg
'''
lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen()
client = subprocess.Popen([sys.executable, "-c", CLIENT, str(lsock.getsockname()[1]), str(n)])
conn, _ = lsock.accept()
conn.setblocking(False)
if name == "asyncio":
    loop = asyncio.new_event_loop()
elif name == "uvloop":
    import uvloop
    loop = uvloop.new_event_loop()
else:
    import oneloop
    loop = oneloop.new_event_loop(name.split(":", 1)[1])

async def serve():
    for _ in range(n):
        data = await loop.sock_recv(conn, 65536)
        await loop.sock_sendall(conn, data)

loop.run_until_complete(serve())
loop.close()
assert client.wait() == 0
"""


def total(name, n, out):
    subprocess.run(["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, "-c", SERVER, name, str(n)], check=True)
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no total in {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", default="asyncio,uvloop,oneloop:default")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="oneloop-sock-")
    print("| loop | sock_recv + sock_sendall, 1 KiB: instructions/request | ÷ uvloop |")
    print("|---|---:|---:|")
    per = {}
    for name in args.loops.split(","):
        small = total(name, 2000, os.path.join(tmp, "small.out"))
        big = total(name, 12000, os.path.join(tmp, "big.out"))
        per[name] = (big - small) / 10_000
    for name, v in per.items():
        ratio = f"{v / per['uvloop']:.2f}" if "uvloop" in per else ""
        print(f"| {name} | {v:,.0f} | {ratio} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
