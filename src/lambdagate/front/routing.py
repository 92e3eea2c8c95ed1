"""The routing step: find the route of a request and hand the exchange to it (or to the miss handler)."""

from __future__ import annotations

from lambdagate.front import Exchange, Handler
from lambdagate.pipeline.render import Reply
from lambdagate.router import Router


def routed(router: Router[Handler], miss: Handler, prefixes: tuple[tuple[str, Handler], ...] = ()) -> Handler:
    """`prefixes` take every method of every path under them, and are only looked at when no route matches."""

    async def route(ex: Exchange) -> Reply:
        match = router.match(ex.method, ex.path)
        if match is None:
            for prefix, handler in prefixes:
                if ex.path.startswith(prefix):
                    return await handler(ex)
            return await miss(ex)
        if match.handler is None:
            ex.allow = match.allow
            return await miss(ex)
        ex.params = match.params
        return await match.handler(ex)

    return route
