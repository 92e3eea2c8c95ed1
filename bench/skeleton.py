"""The floor: the least a granian + aiohttp proxy can do (one pooled GET upstream, its body returned as is).

`granian --interface rsgi bench.skeleton:app` (the bench's `skeleton`) or `--interface asgi` (`skeleton_asgi`).
"""

import os

import aiohttp

UPSTREAM = os.environ.get("SKELETON_UPSTREAM", "http://127.0.0.1:9000/")


class Skeleton:
    session = None

    async def fetch(self) -> bytes:
        if self.session is None:  # created lazily: it needs the worker's running loop
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        async with self.session.get(UPSTREAM) as resp:
            return await resp.read()

    async def __rsgi__(self, scope, proto):
        proto.response_bytes(200, [("content-type", "application/json")], await self.fetch())

    async def __call__(self, scope, receive, send):  # ASGI
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        body = await self.fetch()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


app = Skeleton()
