"""The gateway's own endpoints and replies, served by the router like any other route: `/__health` (or the router's
`health_path`), `/__debug/` and `/__echo/` (with `--debug`, or the service's `debug_endpoint` / `echo_endpoint`),
`auto_options`' OPTIONS, and the router's misses: 404, 405 and gin's redirects.

Their paths are reserved in the config (config.model.BUILTIN_PATHS / BUILTIN_PREFIXES), so no endpoint takes them.
"""

from __future__ import annotations

import html
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from lambdagate import __version__
from lambdagate.front import Exchange, Handler
from lambdagate.front.request import read_request_body
from lambdagate.pipeline.render import INCOMPLETE, JSON_TYPE, Reply, json_reply

# gin's own replies (KrakenD CE's router): exactly this body and Content-Type.
PLAIN = (b"content-type", b"text/plain")
TEXT_MISSES = {404: b"404 page not found", 405: b"405 method not allowed"}
JSON_MISSES = {404: {"error": "not found"}, 405: {"error": "method not allowed"}}
PONG = json_reply(200, {"message": "pong"})


def health(started: float) -> Handler:
    async def answer(ex: Exchange) -> Reply:
        return json_reply(
            200, {"status": "ok", "version": __version__, "uptime_s": round(time.monotonic() - started, 3)}
        )

    return answer


def echo(max_body: int, read_timeout: float) -> Handler:
    """Debug only: the request as the gateway received it."""

    async def answer(ex: Exchange) -> Reply:
        body = await read_request_body(ex, max_body, read_timeout)
        scope = ex.scope
        return json_reply(
            200,
            {
                "method": ex.method,
                "path": ex.path,
                "query": _multi(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
                "headers": _multi([(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]),
                "body": body.decode("utf-8", "replace"),
            },
        )

    return answer


def debug(max_body: int, read_timeout: float) -> Handler:
    """`/__debug/{anything}`, any method: reads the body and answers {"message": "pong"}, as KrakenD's."""

    async def answer(ex: Exchange) -> Reply:
        await read_request_body(ex, max_body, read_timeout)
        return PONG

    return answer


def auto_options(allow: str) -> Handler:
    """The router's `auto_options`: an empty 200 naming the path's methods."""
    reply = Reply(200, [(b"allow", allow.encode())], b"")

    async def answer(ex: Exchange) -> Reply:
        return reply

    return answer


def miss_bodies(error_format: str, error_body: dict[int, Any]) -> dict[int, tuple[tuple[bytes, bytes], bytes]]:
    """The router's 404 and 405 (Content-Type and body): krakend-ce's `error_body` when set, else gin's plain text,
    else (lambdagate/server `error_format: "json"`) JSON objects."""
    out = {}
    for status in (404, 405):
        if error_body.get(status) is not None:
            out[status] = (JSON_TYPE, orjson.dumps(error_body[status]))
        elif error_format == "json":
            out[status] = (JSON_TYPE, orjson.dumps(JSON_MISSES[status]))
        else:
            out[status] = (PLAIN, TEXT_MISSES[status])
    return out


def not_routed(bodies: dict[int, tuple[tuple[bytes, bytes], bytes]]) -> Handler:
    """The router's miss: a redirect when the router found one (`ex.location`), 404 for an unknown path, 405 with
    Allow for a known path and another method."""
    not_found = Reply(404, [bodies[404][0], INCOMPLETE], bodies[404][1])
    type_405, body_405 = bodies[405]

    async def answer(ex: Exchange) -> Reply:
        if ex.location:
            return redirect(ex.method, ex.location, ex.scope.get("query_string", b""))
        if ex.allow:
            return Reply(405, [type_405, (b"allow", ex.allow.encode()), INCOMPLETE], body_405)
        return not_found

    return answer


def redirect(method: str, location: str, query: bytes) -> Reply:
    """gin's redirect (Go's http.Redirect): 301 for GET, 307 otherwise; a small HTML body for GET only."""
    target = f"{location}?{query.decode('latin-1')}" if query else location
    headers = [(b"location", target.encode("latin-1"))]
    if method not in ("GET", "HEAD"):
        return Reply(307, headers, b"")
    headers.append((b"content-type", b"text/html; charset=utf-8"))
    status = 301 if method == "GET" else 307
    body = f'<a href="{html.escape(target)}">Moved Permanently</a>.\n\n'.encode() if method == "GET" else b""
    return Reply(status, headers, body)


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out
