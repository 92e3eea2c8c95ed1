"""The floor on the fast client: the skeleton (one pooled GET upstream, its body returned as is) on
lambdagate.client.fast instead of aiohttp. `granian --interface rsgi bench.skeleton_fast:app`; the bench's
`skeleton_fast`.
"""

import os

from multidict import CIMultiDict
from yarl import URL

from lambdagate.client.fast import FastClient

UPSTREAM = URL(os.environ.get("SKELETON_UPSTREAM", "http://127.0.0.1:9000/"))
HEADERS = CIMultiDict()


class Skeleton:
    client = None

    async def __rsgi__(self, scope, proto):
        if self.client is None:  # created lazily: it needs the worker's running loop
            self.client = FastClient()
        reply = await self.client.request("GET", UPSTREAM, HEADERS, None, limit=1 << 24)
        proto.response_bytes(200, [("content-type", "application/json")], reply.body)


app = Skeleton()
