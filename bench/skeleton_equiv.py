"""The floor plus the per-request work any KrakenD-compatible gateway must do (the bench's `skeleton_equiv`).

Like skeleton.py (ASGI), and also: X-Forwarded-For, X-Forwarded-Host and X-Request-Id to the upstream, the
reply decoded and re-encoded as JSON (KrakenD's `json` encoding), and Content-Type, X-KrakenD-Completed and
X-Request-Id on the reply. It separates what the features cost from what the gateway's structure costs.
"""

import itertools
import os

import aiohttp
import orjson
from multidict import CIMultiDict

UPSTREAM = os.environ.get("SKELETON_UPSTREAM", "http://127.0.0.1:9000/")


class Skeleton:
    session = None
    ids = itertools.count()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        if self.session is None:  # created lazily: it needs the worker's running loop
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100), headers={"User-Agent": "skeleton/1"}
            )
        request_id = f"w-{next(self.ids)}"
        headers = CIMultiDict()
        headers["x-forwarded-for"] = scope["client"][0]
        headers["x-forwarded-host"] = "127.0.0.1"
        headers["x-request-id"] = request_id
        async with self.session.get(UPSTREAM, headers=headers) as resp:
            body = orjson.dumps(orjson.loads(await resp.read()))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"x-krakend-completed", b"true"),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


app = Skeleton()
