"""A real HTTP upstream for tests, run as its own process: `python -m tests.support.upstream PORT`.

Routes:
  /echo/...            the request as JSON (method, path, query, headers, body)
  /json/{name}         {"name": name, "nested": {"a": 1, "b": {"c": 2}}, "items": [1, 2]}
  /array               [{"i": 0}, {"i": 1}]
  /scalar              42
  /text                plain text
  /invalid             not JSON
  /status/{code}       that status with a JSON body and a custom header
  /slow/{ms}           answers after ms milliseconds
  /big/{n}             n bytes of JSON string
  /delayed/{ms}/{name} {"name": name} after ms milliseconds
  /digest              {"sha256": ..., "length": ...} of the request body, and its Content-Type
  /gzip                a gzip-compressed JSON object (Content-Encoding: gzip)
  /cookies             two Set-Cookie headers and a JSON body
  /deep/{n}            JSON arrays nested n levels ([[[...]]])
  /cache/{kind}-{id}   {"name", "calls", "lang"} with the caching headers of `kind` (CACHE_KINDS); every call counted
  /cache-calls/{name}  {"calls": n}: how many calls /cache/{name} got
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import sys
import time
from email.utils import formatdate

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    query: dict[str, list[str]] = {}
    for k, v in request.query.items():
        query.setdefault(k, []).append(v)
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path.partition("?")[0],
            "query": query,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
    )


async def json_obj(request: web.Request) -> web.Response:
    return web.json_response({"name": request.match_info["name"], "nested": {"a": 1, "b": {"c": 2}}, "items": [1, 2]})


async def array(request: web.Request) -> web.Response:
    return web.json_response([{"i": 0}, {"i": 1}])


async def scalar(request: web.Request) -> web.Response:
    return web.json_response(42)


async def text(request: web.Request) -> web.Response:
    return web.Response(text="hello, text")


async def invalid(request: web.Request) -> web.Response:
    return web.Response(text="{not json", content_type="application/json")


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.json_response({"status": code}, status=code, headers={"X-Upstream": "yes", "Set-Cookie": "a=1"})


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.match_info["ms"]) / 1000)
    return web.json_response({"slow": True})


async def delayed(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.match_info["ms"]) / 1000)
    return web.json_response({"name": request.match_info["name"]})


async def digest(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "sha256": hashlib.sha256(body).hexdigest(),
            "length": len(body),
            "content_type": request.headers.get("Content-Type"),
        }
    )


async def big(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    return web.Response(body=b'"' + b"x" * n + b'"', content_type="application/json")


async def records(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    items = [{"id": i, "name": f"record {i}", "tags": ["a", "b", i], "nested": {"x": [1, 2, 3]}} for i in range(n)]
    return web.json_response({"records": items})


async def gzipped(request: web.Request) -> web.Response:
    resp = web.json_response({"zipped": "x" * 2000})
    resp.enable_compression(web.ContentCoding.gzip)
    return resp


async def cookies(request: web.Request) -> web.Response:
    resp = web.json_response({"cookies": 2})
    resp.headers.add("Set-Cookie", "a=1; Path=/")
    resp.headers.add("Set-Cookie", "b=2; Path=/")
    return resp


async def deep(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    return web.Response(body=b"[" * n + b"]" * n, content_type="application/json")


# The reply headers of /cache/{kind}-{id}, by kind.
CACHE_KINDS: dict[str, dict[str, str]] = {
    "fresh": {"Cache-Control": "max-age=60"},
    "short": {"Cache-Control": "max-age=1"},
    "smax": {"Cache-Control": "max-age=0, s-maxage=60"},
    "aged": {"Cache-Control": "max-age=60", "Age": "60"},
    "nostore": {"Cache-Control": "no-store, max-age=60"},
    "nocache": {"Cache-Control": "no-cache, max-age=60"},
    "private": {"Cache-Control": "private, max-age=60"},
    "public": {"Cache-Control": "public, max-age=60"},
    "vary": {"Cache-Control": "max-age=60", "Vary": "Accept-Language"},
    "varyall": {"Cache-Control": "max-age=60", "Vary": "*"},
    "cookie": {"Cache-Control": "max-age=60", "Set-Cookie": "s=1; Path=/"},
    "none": {},
    "big": {"Cache-Control": "max-age=60"},
}
cache_calls: collections.Counter[str] = collections.Counter()


async def cacheable(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = name.partition("-")[0]
    cache_calls[name] += 1
    headers = dict(CACHE_KINDS.get(kind, {}))
    if kind == "expires":
        headers = {"Date": formatdate(usegmt=True), "Expires": formatdate(time.time() + 60, usegmt=True)}
    body = {"name": name, "calls": cache_calls[name], "lang": request.headers.get("Accept-Language", "")}
    if kind == "big":
        body["pad"] = "x" * 2000
    return web.json_response(body, headers=headers)


async def cache_count(request: web.Request) -> web.Response:
    return web.json_response({"calls": cache_calls[request.match_info["name"]]})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_get("/json/{name}", json_obj)
    app.router.add_get("/array", array)
    app.router.add_get("/scalar", scalar)
    app.router.add_get("/text", text)
    app.router.add_get("/invalid", invalid)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow/{ms}", slow)
    app.router.add_get("/big/{n}", big)
    app.router.add_get("/records/{n}", records)
    app.router.add_get("/delayed/{ms}/{name}", delayed)
    app.router.add_route("*", "/digest", digest)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/cookies", cookies)
    app.router.add_get("/deep/{n}", deep)
    app.router.add_get("/cache/{name}", cacheable)
    app.router.add_get("/cache-calls/{name}", cache_count)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
