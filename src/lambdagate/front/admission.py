"""Admission control in front of the gateway: refuse what it must not take, before any work is done.

- more requests in flight in this worker than `max_in_flight` → 503 with Retry-After (no unbounded queue);
- a URL longer than `max_url_length` → 414; too many or too large headers → 431;
- a declared Content-Length above `max_body_bytes` → 413 (bodies without one are counted while read);
- an HTTP/1.1 request without a Host header → 400 (RFC 9112 3.2; Go's server refuses it the same way); an empty
  Host counts as none, as granian presents a missing one that way.

A request waiting for its body gives its in-flight place back meanwhile (`body_wait`, `body_read`): a client that
trickles a body ties up its own connection, not the worker's capacity for work. A body that is in when the worker is
at its cap gets the same 503.
"""

from __future__ import annotations

import logging

from lambdagate.asgi import Scope
from lambdagate.config.server_options import ServerOptions
from lambdagate.errors import RequestRejected
from lambdagate.front import Exchange, Handler
from lambdagate.pipeline.render import Reply, json_reply

log = logging.getLogger("lambdagate")
BUSY = "server busy, retry later"
RETRY_AFTER = ((b"retry-after", b"1"),)


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
        self.busy = json_reply(503, {"error": BUSY}, list(RETRY_AFTER))
        self.url_too_long = json_reply(414, {"error": "URL too long"})
        self.headers_too_large = json_reply(431, {"error": "request headers too large"})
        self.body_too_large = json_reply(413, {"error": f"request body larger than {self.max_body} bytes"})
        self.no_host = json_reply(400, {"error": "missing required Host header"})

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
        host = False
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"host":
                host = bool(value)  # granian gives a missing Host as an empty one
            elif name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return self.body_too_large
        if size > self.max_header_bytes:
            return self.headers_too_large
        if not host and scope.get("http_version") == "1.1":
            return self.no_host
        return None

    def body_wait(self) -> None:
        """The request waits for its body: its in-flight place is free meanwhile."""
        self.in_flight -= 1

    def body_read(self) -> bool:
        """The request takes its place back (always: `admitted` gives it back at the end); False when that puts the
        worker over its cap: the request is then refused as busy (`busy_after_body`)."""
        self.in_flight += 1
        return self.in_flight <= self.max_in_flight

    def busy_after_body(self, ex: Exchange) -> RequestRejected:
        log.warning(
            "refused %s %s after its body: %d requests in flight (max_in_flight)",
            ex.method,
            ex.path[:200],
            self.in_flight - 1,
        )
        return RequestRejected(503, BUSY, RETRY_AFTER)

    @property
    def refusals(self) -> list[Reply]:
        return [self.busy, self.url_too_long, self.headers_too_large, self.body_too_large, self.no_host]


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
        ex.admission = admission
        try:
            return await handler(ex)
        finally:
            admission.in_flight -= 1

    return admit
