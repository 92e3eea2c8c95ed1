"""The floor on the fast client: the skeleton (one pooled GET upstream, its body returned as is) on
lambdagate.client.fast instead of aiohttp. `granian --interface rsgi bench.skeleton_fast:app`; the bench's
`skeleton_fast` (`--interface asgi`: `skeleton_fast_asgi`, the interface the gateway serves).
"""

import os

from multidict import CIMultiDict
from yarl import URL

from lambdagate.client.fast import FastClient

UPSTREAM = URL(os.environ.get("SKELETON_UPSTREAM", "http://127.0.0.1:9000/"))
HEADERS = CIMultiDict()


class Skeleton:
    client = None

    async def fetch(self) -> bytes:
        if self.client is None:  # created lazily: it needs the worker's running loop
            self.client = FastClient()
        return (await self.client.request("GET", UPSTREAM, HEADERS, None, limit=1 << 24)).body

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
