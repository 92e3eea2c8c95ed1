"""A JWK set server for tests, run as its own process: `python -m tests.support.jwks_server PORT [CERT KEY]`
(with a certificate and its key: HTTPS).

Routes:
  GET  /jwks          the current set (application/json); each GET is counted
  PUT  /jwks          replace the set with the request's JSON body
  GET  /hang          never answers (up to 60 s)
  GET  /garbage       200 with a body that is not JSON
  GET  /empty         200 with {"keys": []}
  GET  /calls         {"jwks": n, "hang": n, "garbage": n}: the GETs so far
  GET  /hop/N         a redirect to /hop/N-1; /hop/0 redirects to /jwks
  GET  /redirect?to=U a redirect to U
  GET  /ready
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections import Counter

from aiohttp import web

calls: Counter[str] = Counter()
current: dict[str, bytes] = {"set": b'{"keys": []}'}


async def get_jwks(request: web.Request) -> web.Response:
    calls["jwks"] += 1
    return web.Response(body=current["set"], content_type="application/json")


async def put_jwks(request: web.Request) -> web.Response:
    current["set"] = await request.read()
    return web.json_response({"ok": True})


async def hang(request: web.Request) -> web.Response:
    calls["hang"] += 1
    await asyncio.sleep(60)
    return web.json_response({"keys": []})


async def garbage(request: web.Request) -> web.Response:
    calls["garbage"] += 1
    return web.Response(body=b"<html>not a key set", content_type="application/json")


async def empty(request: web.Request) -> web.Response:
    calls["empty"] += 1
    return web.json_response({"keys": []})


async def hop(request: web.Request) -> web.Response:
    left = int(request.match_info["n"])
    raise web.HTTPFound("/jwks" if left <= 0 else f"/hop/{left - 1}")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def counts(request: web.Request) -> web.Response:
    return web.json_response(dict(calls))


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


def make_app() -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)  # room for a set past the 1 MiB cap
    app.router.add_get("/jwks", get_jwks)
    app.router.add_put("/jwks", put_jwks)
    app.router.add_get("/hang", hang)
    app.router.add_get("/garbage", garbage)
    app.router.add_get("/empty", empty)
    app.router.add_get("/calls", counts)
    app.router.add_get("/hop/{n:[0-9]+}", hop)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/ready", ready)
    return app


if __name__ == "__main__":
    tls = None
    if len(sys.argv) == 4:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, ssl_context=tls)
