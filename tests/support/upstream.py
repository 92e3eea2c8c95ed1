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
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

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
    app.router.add_get("/delayed/{ms}/{name}", delayed)
    app.router.add_route("*", "/digest", digest)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/cookies", cookies)
    app.router.add_get("/deep/{n}", deep)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
