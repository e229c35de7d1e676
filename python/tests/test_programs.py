"""Real asyncio programs on every host: aiohttp and websockets, server and
client on one oneloop loop, exchanging data the test checks.

aiohttp and websockets are installed into the venv by ``make python-test``;
without them this module fails to import, which run.py counts as a failure
(these tests are evidence, so they must not pass by being absent).

Deadlines, not sleeps: each program runs under ``asyncio.timeout`` inside
the loop, and under a thread that stops the loop from outside if the loop
itself is stuck (then ``run_until_complete`` raises and the test fails).
"""

import asyncio
import hashlib
import os
import ssl
import threading
import unittest

import aiohttp
import websockets
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from test.test_asyncio import utils as test_utils

import oneloop
from _per_host import per_host

DEADLINE = 30.0



class _Base:
    host = None

    def setUp(self):
        self.loop = oneloop.new_event_loop(self.host)
        asyncio.set_event_loop(self.loop)
        self.addCleanup(self._close)

    def _close(self):
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()
        asyncio.set_event_loop(None)

    def run_program(self, coro):
        """Run `coro` on the loop, failing if it takes longer than DEADLINE."""
        self.assertEqual(self.loop.host, self.host)

        async def bounded():
            async with asyncio.timeout(DEADLINE):
                return await coro

        # If the loop cannot even fire its own timeout, stop it from outside.
        stopper = threading.Timer(DEADLINE + 5, self.loop.stop)
        stopper.daemon = True
        stopper.start()
        try:
            return self.loop.run_until_complete(bounded())
        finally:
            stopper.cancel()
        # (run_until_complete raises RuntimeError if the stopper fired)


class AiohttpTests(_Base):
    """An aiohttp web server and ClientSession on the same loop."""

    async def _serve(self, app):
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return runner, f"http://127.0.0.1:{port}"

    def _app(self):
        async def hello(request):
            return web.Response(text=f"hello {request.match_info['name']}")

        async def digest(request):
            body = await request.read()
            return web.json_response(
                {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            )

        async def stream(request):
            # A chunked response the server writes in pieces, with drains:
            # the transport's write buffer and flow control on this loop.
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            n = int(request.query["n"])
            for i in range(n):
                await resp.write(bytes([i % 256]) * 4096)
            await resp.write_eof()
            return resp

        async def ws(request):
            sock = web.WebSocketResponse()
            await sock.prepare(request)
            async for msg in sock:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await sock.send_str(msg.data.upper())
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await sock.send_bytes(msg.data[::-1])
            return sock

        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/hello/{name}", hello),
                web.post("/digest", digest),
                web.get("/stream", stream),
                web.get("/ws", ws),
            ]
        )
        return app

    def test_get_post_stream_and_websocket(self):
        async def main():
            runner, base = await self._serve(self._app())
            try:
                # "localhost" goes through getaddrinfo in the executor thread
                # and back through call_soon_threadsafe.
                base_by_name = base.replace("127.0.0.1", "localhost")
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{base}/hello/oneloop") as r:
                        self.assertEqual(r.status, 200)
                        self.assertEqual(await r.text(), "hello oneloop")
                    async with session.get(f"{base_by_name}/hello/dns") as r:
                        self.assertEqual(await r.text(), "hello dns")

                    # 16 concurrent uploads of 256 KiB each, different bodies.
                    bodies = [os.urandom(256 * 1024) for _ in range(16)]

                    async def upload(body):
                        async with session.post(f"{base}/digest", data=body) as r:
                            self.assertEqual(r.status, 200)
                            return await r.json()

                    answers = await asyncio.gather(*(upload(b) for b in bodies))
                    self.assertEqual(
                        answers,
                        [{"len": len(b), "sha256": hashlib.sha256(b).hexdigest()} for b in bodies],
                    )

                    # A 4 MiB chunked download read in small pieces.
                    n = 1024
                    expected = hashlib.sha256(
                        b"".join(bytes([i % 256]) * 4096 for i in range(n))
                    ).hexdigest()
                    got = hashlib.sha256()
                    size = 0
                    async with session.get(f"{base}/stream", params={"n": n}) as r:
                        async for chunk in r.content.iter_chunked(8192):
                            got.update(chunk)
                            size += len(chunk)
                    self.assertEqual(size, n * 4096)
                    self.assertEqual(got.hexdigest(), expected)

                    async with session.ws_connect(f"{base}/ws") as sock:
                        for i in range(20):
                            await sock.send_str(f"message {i}")
                            self.assertEqual(await sock.receive_str(), f"MESSAGE {i}")
                        payload = os.urandom(1024 * 1024)
                        await sock.send_bytes(payload)
                        self.assertEqual(await sock.receive_bytes(), payload[::-1])
                return len(answers)
            finally:
                await runner.cleanup()

        self.assertEqual(self.run_program(main()), 16)


class WebsocketsTests(_Base):
    """The websockets library's server and client, plain and over TLS."""

    async def _echo(self, sock):
        async for message in sock:
            if isinstance(message, str):
                await sock.send(message[::-1])
            else:
                await sock.send(hashlib.sha256(message).digest())

    async def _exchange(self, uri, **kwargs):
        async with ws_connect(uri, max_size=8 * 1024 * 1024, **kwargs) as sock:
            words = [f"word-{i}" * (i + 1) for i in range(50)]
            for w in words:
                await sock.send(w)
            replies = [await sock.recv() for _ in words]
            self.assertEqual(replies, [w[::-1] for w in words])
            blob = os.urandom(2 * 1024 * 1024)
            await sock.send(blob)
            self.assertEqual(await sock.recv(), hashlib.sha256(blob).digest())
            pong = await sock.ping(b"are you there")
            latency = await pong
            self.assertGreaterEqual(latency, 0)
        self.assertEqual(sock.close_code, 1000)
        return len(replies)

    def test_plain_concurrent_clients(self):
        async def main():
            async with ws_serve(self._echo, "127.0.0.1", 0, max_size=8 * 1024 * 1024) as server:
                port = server.sockets[0].getsockname()[1]
                uri = f"ws://127.0.0.1:{port}"
                counts = await asyncio.gather(*(self._exchange(uri) for _ in range(4)))
            return counts

        self.assertEqual(self.run_program(main()), [50] * 4)

    def test_tls(self):
        # Python's ssl over asyncio's sslproto, over this loop's fd watches.
        server_ctx = test_utils.simple_server_sslcontext()
        client_ctx = test_utils.simple_client_sslcontext()
        self.assertEqual(client_ctx.verify_mode, ssl.CERT_NONE)

        async def main():
            async with ws_serve(
                self._echo, "127.0.0.1", 0, ssl=server_ctx, max_size=8 * 1024 * 1024
            ) as server:
                port = server.sockets[0].getsockname()[1]
                return await self._exchange(f"wss://127.0.0.1:{port}", ssl=client_ctx)

        self.assertEqual(self.run_program(main()), 50)


per_host(globals(), AiohttpTests, WebsocketsTests)


if __name__ == "__main__":
    unittest.main()
