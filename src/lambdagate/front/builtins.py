"""The gateway's own endpoints, served by the router like any other route: `/__health`, and `/__echo/` in debug mode.

Their paths are reserved in the config (config.model.BUILTIN_PATHS / BUILTIN_PREFIXES), so no endpoint takes them.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from lambdagate import __version__
from lambdagate.front import Exchange, Handler
from lambdagate.front.request import read_body
from lambdagate.pipeline.render import INCOMPLETE, Reply, json_reply

NOT_FOUND = json_reply(404, {"error": "not found"}, [INCOMPLETE])


def health(started: float) -> Handler:
    async def answer(ex: Exchange) -> Reply:
        return json_reply(
            200, {"status": "ok", "version": __version__, "uptime_s": round(time.monotonic() - started, 3)}
        )

    return answer


def echo(max_body: int, read_timeout: float) -> Handler:
    """Debug only: the request as the gateway received it."""

    async def answer(ex: Exchange) -> Reply:
        body = await read_body(ex.receive, max_body, read_timeout)
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


async def not_routed(ex: Exchange) -> Reply:
    """The router's miss: 404 for an unknown path, 405 with Allow for a known path and another method."""
    if ex.allow:
        return json_reply(405, {"error": "method not allowed"}, [(b"allow", ex.allow.encode()), INCOMPLETE])
    return NOT_FOUND


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out
