"""Observation steps: request ids, error containment, server spans, metrics and the access log.

Each is composed only when configured (request ids and containment always are). They wrap a whole route, so a
route's refusals (a bad parameter, a body too large) are counted and logged as that route's.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from time import perf_counter
from typing import TYPE_CHECKING

from lambdagate.errors import RequestRejected
from lambdagate.front import Exchange, Handler
from lambdagate.pipeline.render import Reply, json_reply

if TYPE_CHECKING:
    from lambdagate.telemetry.logs import AccessLog
    from lambdagate.telemetry.metrics import EndpointStats
    from lambdagate.telemetry.tracing import Tracing

log = logging.getLogger("lambdagate")
# A client's X-Request-Id is kept when it is short and plain (it ends up in logs and backend headers).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


class RequestIds:
    """Generated ids: random per worker, then a counter (unique without a syscall per request)."""

    def __init__(self) -> None:
        self._prefix = f"{secrets.token_hex(4)}-"
        self._counter = itertools.count(1)

    def new(self) -> str:
        return self._prefix + str(next(self._counter))

    def of_client(self, ex: Exchange) -> str:
        """The client's X-Request-Id when it is plain, else a new one."""
        for name, value in ex.scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                if _REQUEST_ID.fullmatch(given):
                    return given
                log.debug(
                    "replaced the client's X-Request-Id %r: 1-128 characters of %s", given[:64], _REQUEST_ID.pattern
                )
                break
        return self.new()


def with_request_id(
    handler: Handler, ids: RequestIds, *, keep_client_id: bool = True, contain: bool = False
) -> Handler:
    """Every reply carries X-Request-Id: the client's own when it is plain, else a generated one.

    `contain`: also what `contained(handler)` does, in the same coroutine (one level less per request when no
    other observation step sits between the two)."""

    async def identified(ex: Exchange) -> Reply:
        ex.request_id = request_id = ids.of_client(ex) if keep_client_id else ids.new()
        reply = await handler(ex)
        # A new list: a reply's header list may be a renderer's, shared by every request of the endpoint.
        return Reply(reply.status, [*reply.headers, (b"x-request-id", request_id.encode())], reply.body)

    async def identified_safe(ex: Exchange) -> Reply:
        ex.request_id = request_id = ids.of_client(ex) if keep_client_id else ids.new()
        try:
            reply = await handler(ex)
        except Exception as exc:
            reply = failure_reply(ex, exc)
        return Reply(reply.status, [*reply.headers, (b"x-request-id", request_id.encode())], reply.body)

    return identified_safe if contain else identified


def failure_reply(ex: Exchange, exc: Exception) -> Reply:
    """What `contained` answers for an exception: a refusal its own 4xx, anything else a plain 500 (the traceback
    goes to the log)."""
    if isinstance(exc, RequestRejected):
        return json_reply(exc.status, {"error": exc.message}, list(exc.headers))
    log.error("unhandled error serving %s %s request_id=%s", ex.method, ex.path[:200], ex.request_id, exc_info=exc)
    return json_reply(500, {"error": "internal error"})


def contained(handler: Handler) -> Handler:
    """Exceptions become replies (`failure_reply`)."""

    async def safe(ex: Exchange) -> Reply:
        try:
            return await handler(ex)
        except Exception as exc:
            return failure_reply(ex, exc)

    return safe


def traced(handler: Handler, tracing: Tracing, route: str | None) -> Handler:
    """A server span per request (unless the path is in the tracing options' skip list)."""

    async def in_span(ex: Exchange) -> Reply:
        if tracing.skips(ex.path):
            return await handler(ex)
        ex.span = span = tracing.start_server_span(ex.method, route, ex.path, ex.scope["headers"])
        span.set_request_id(ex.request_id)
        reply = None
        try:
            reply = await handler(ex)
            return reply
        finally:
            span.end(reply.status if reply is not None else 500)

    return in_span


def measured(
    handler: Handler,
    stats: EndpointStats | None,
    access_log: AccessLog | None,
    route: str | None,
    *,
    counts: frozenset[int] | None = None,
) -> Handler:
    """Duration and status into the route's metrics series and one access-log line (each when on).

    `counts` limits the series to some statuses (the router's miss handler counts only its 404s and 405s).
    """

    async def timed(ex: Exchange) -> Reply:
        started = perf_counter()
        if access_log is not None:
            ex.calls = []
        reply = await handler(ex)
        seconds = perf_counter() - started
        if stats is not None and (counts is None or reply.status in counts):
            stats.observe(reply.status, seconds)
        if access_log is not None:
            span = ex.span
            access_log.write(
                ex.method,
                route,
                ex.path,
                reply.status,
                round(seconds * 1000, 2),
                len(reply.body),
                ex.request_id,
                ex.client_ip,
                ex.calls,
                span.trace_id if span is not None else None,
            )
        return reply

    return timed
