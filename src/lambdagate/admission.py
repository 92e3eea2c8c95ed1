"""Admission control in front of the gateway: refuse what it must not take, before any work is done.

- more requests in flight in this worker than `max_in_flight` → 503 with Retry-After (no unbounded queue);
- a URL longer than `max_url_length` → 414; too many or too large headers → 431;
- a declared Content-Length above `max_body_bytes` → 413 (bodies without one are counted while read).
"""

from __future__ import annotations

import logging

from lambdagate.config.server_options import ServerOptions
from lambdagate.pipeline.render import json_reply

log = logging.getLogger("lambdagate")


def _refusal(status: int, message: str, *extra: tuple[bytes, bytes]) -> tuple[dict, dict]:
    """The two ASGI messages of a refusal: the same JSON error reply as the gateway's own."""
    reply = json_reply(status, {"error": message}, list(extra))
    return ({"type": "http.response.start", "status": status, "headers": reply.headers},
            {"type": "http.response.body", "body": reply.body})


class Admission:
    """The gateway calls `check` before anything else and counts `in_flight` around each request."""

    def __init__(self, options: ServerOptions) -> None:
        self.in_flight = 0
        self.stats = None  # telemetry.metrics.EndpointStats counting refusals, when metrics are on
        self.max_in_flight = options.max_in_flight
        self.max_url = options.max_url_length
        self.max_header_count = options.max_header_count
        self.max_header_bytes = options.max_header_bytes
        self.max_body = options.max_body_bytes
        # Built once: the replies never change.
        self.busy = _refusal(503, "server busy, retry later", (b"retry-after", b"1"))
        self.url_too_long = _refusal(414, "URL too long")
        self.headers_too_large = _refusal(431, "request headers too large")
        self.body_too_large = _refusal(413, f"request body larger than {self.max_body} bytes")

    def check(self, scope: dict) -> tuple[dict, dict] | None:
        """The two ASGI messages of a refusal, or None when the request may go on."""
        if self.in_flight >= self.max_in_flight:
            log.warning("refused %s %s: %d requests in flight (max_in_flight)", scope["method"], scope["path"][:200],
                        self.in_flight)
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
