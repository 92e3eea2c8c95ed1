"""Admission control in front of the gateway: refuse what it must not take, before any work is done.

- more requests in flight in this worker than `max_in_flight` → 503 with Retry-After (no unbounded queue);
- a URL longer than `max_url_length` → 414; too many or too large headers → 431;
- a declared Content-Length above `max_body_bytes` → 413 (bodies without one are counted while read).
"""

from __future__ import annotations

import logging

from lambdagate.asgi import Scope
from lambdagate.config.server_options import ServerOptions
from lambdagate.front import Exchange, Handler
from lambdagate.pipeline.render import Reply, json_reply

log = logging.getLogger("lambdagate")


class Admission:
    """Checked before anything else; counts the requests in flight in this worker."""

    def __init__(self, options: ServerOptions) -> None:
        self.in_flight = 0
        self.max_in_flight = options.max_in_flight
        self.max_url = options.max_url_length
        self.max_header_count = options.max_header_count
        self.max_header_bytes = options.max_header_bytes
        self.max_body = options.max_body_bytes
        # Built once: the replies never change.
        self.busy = json_reply(503, {"error": "server busy, retry later"}, [(b"retry-after", b"1")])
        self.url_too_long = json_reply(414, {"error": "URL too long"})
        self.headers_too_large = json_reply(431, {"error": "request headers too large"})
        self.body_too_large = json_reply(413, {"error": f"request body larger than {self.max_body} bytes"})

    def check(self, scope: Scope) -> Reply | None:
        """The refusal, or None when the request may go on."""
        if self.in_flight >= self.max_in_flight:
            log.warning(
                "refused %s %s: %d requests in flight (max_in_flight)",
                scope["method"],
                scope["path"][:200],
                self.in_flight,
            )
            return self.busy
        raw_path = scope.get("raw_path") or b""
        if len(raw_path) + len(scope["query_string"]) > self.max_url:
            return self.url_too_long
        headers = scope["headers"]
        if len(headers) > self.max_header_count:
            return self.headers_too_large
        size = 0
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return self.body_too_large
        if size > self.max_header_bytes:
            return self.headers_too_large
        return None

    @property
    def refusals(self) -> list[Reply]:
        return [self.busy, self.url_too_long, self.headers_too_large, self.body_too_large]


def answering(reply: Reply) -> Handler:
    """A handler that always gives the same prebuilt reply."""

    async def answer(ex: Exchange) -> Reply:
        return reply

    return answer


def admitted(handler: Handler, admission: Admission, refused: dict[int, Handler]) -> Handler:
    """The outermost step. A refused request goes to the handler of its refusal's status (which logs and counts
    it, see `answering`); the rest to `handler`, counted in flight."""

    async def admit(ex: Exchange) -> Reply:
        refusal = admission.check(ex.scope)
        if refusal is not None:
            ex.path = ex.path[:200]  # it may be what was refused
            return await refused[refusal.status](ex)
        admission.in_flight += 1
        try:
            return await handler(ex)
        finally:
            admission.in_flight -= 1

    return admit
