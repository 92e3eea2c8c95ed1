"""The floor on pyreqwest (Rust, reqwest), for choosing the gateway's client by measurement: the skeleton with
`pyreqwest.client.ClientBuilder` instead of aiohttp. Only run when pyreqwest is installed (not a dependency):
`python bench/run.py compare --scenarios skeleton_pyreqwest,skeleton_fast,...`.
"""

import os

from pyreqwest.client import ClientBuilder

UPSTREAM = os.environ.get("SKELETON_UPSTREAM", "http://127.0.0.1:9000/")


class Skeleton:
    client = None

    async def __rsgi__(self, scope, proto):
        if self.client is None:  # created lazily: it needs the worker's running loop
            self.client = ClientBuilder().http1_only().build()
        resp = await self.client.get(UPSTREAM).build().send()
        proto.response_bytes(200, [("content-type", "application/json")], await resp.bytes())


app = Skeleton()
