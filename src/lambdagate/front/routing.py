"""The routing step: find the route of a request and hand the exchange to it (or to the miss handler).

A request no route of its method takes goes, as in gin (KrakenD's router), through: the built-in prefixes
(`/__debug/`, `/__echo/`), the trailing-slash redirect, the fixed-path redirect (cleaned, case-insensitive), then
405 when another method has the path, else 404. The router options turn each of these off.
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdagate.front import Exchange, Handler
from lambdagate.pipeline.render import Reply
from lambdagate.router import Router, clean_path


@dataclass(frozen=True)
class MissRules:
    """The router options that decide what a miss becomes (config/router_options.py, gin's engine flags)."""

    redirect_trailing_slash: bool = True
    redirect_fixed_path: bool = True
    method_not_allowed: bool = True
    remove_extra_slash: bool = False


def routed(
    router: Router[Handler],
    miss: Handler,
    prefixes: tuple[tuple[str, Handler], ...] = (),
    rules: MissRules = MissRules(),
) -> Handler:
    """`prefixes` take every method of every path under them, and are only looked at when no route matches."""

    async def route(ex: Exchange) -> Reply:
        path = clean_path(ex.path) if rules.remove_extra_slash and ex.path.startswith("/") else ex.path
        match = router.match(ex.method, path)
        if match is not None and match.handler is not None:
            ex.params = match.params
            return await match.handler(ex)
        for prefix, handler in prefixes:
            if path.startswith(prefix):
                return await handler(ex)
        location = _redirect(router, rules, ex.method, path)
        if location:
            ex.location = location
        elif match is not None and rules.method_not_allowed:
            ex.allow = match.allow
        return await miss(ex)

    return route


def _redirect(router: Router[Handler], rules: MissRules, method: str, path: str) -> str | None:
    if method == "CONNECT" or path == "/":
        return None
    location = None
    if rules.redirect_trailing_slash:
        location = router.trailing_slash_twin(method, path)
    if location is None and rules.redirect_fixed_path:
        location = router.fixed_path(method, path)
    # Never a scheme-relative target ("//host/..."), which a browser would take to another site.
    if location is None or location.startswith(("//", "/\\")):
        return None
    return location
