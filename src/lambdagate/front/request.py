"""Request building: from the client's request to the `ProxyRequest` the endpoint's backends see.

Only what the endpoint allows goes on: its `input_headers` and `input_query_strings`, and a body for methods that
carry one. Path parameters that could walk out of their segment upstream are refused here, before any backend.
Everything per endpoint is computed once, when the stack is built.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from lambdagate.errors import RequestRejected
from lambdagate.front import Exchange, Handler
from lambdagate.pipeline.encodings import first_header
from lambdagate.pipeline.render import Reply, json_reply
from lambdagate.proxy import ProxyRequest

if TYPE_CHECKING:
    from lambdagate.asgi import Receive
    from lambdagate.config.model import EndpointConfig
    from lambdagate.pipeline import EndpointPipeline

# Never forwarded, even with "*". They describe the client's connection, not the request (hop-by-hop, framing);
# or the gateway sets them itself (forwarding headers: a client must not choose the address a backend trusts);
# or they would break the backend call (Expect: 100-continue makes an upstream wait for a body that is not sent;
# Accept-Encoding: the gateway decodes backend replies itself).
NEVER_FORWARD = frozenset(
    {
        b"host",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-connection",
        b"accept-encoding",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-real-ip",
        b"forwarded",
    }
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_DECODING_LAYERS = 4
# The common case, decided by one C-speed match: no escape, no slash, no control character.
_PLAIN_PARAM = re.compile(r"[^%/\\\x00-\x1f\x7f]+")


async def read_body(receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole request body, at most `limit` bytes (else 413) and within `timeout` seconds (else 408)."""
    try:
        async with asyncio.timeout(timeout):
            return await _receive_body(receive, limit)
    except TimeoutError:
        raise RequestRejected(408, "request body not received in time") from None


async def read_request_body(ex: Exchange, limit: int, timeout: float) -> bytes:
    """`read_body` for an admitted request: its in-flight place is given back while it waits for the body (a client
    trickling a body holds no capacity), and taken again once the body is in: 503 when the worker is full by then."""
    admission = ex.admission
    if admission is None:
        return await read_body(ex.receive, limit, timeout)
    admission.body_wait()
    try:
        body = await read_body(ex.receive, limit, timeout)
    finally:
        fits = admission.body_read()
    if not fits:
        raise admission.busy_after_body(ex)
    return body


async def _receive_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestRejected(400, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestRejected(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def unsafe_param(value: str, allow_slash: bool) -> bool:
    """True when a path parameter could leave its segment once a backend decodes it: a control character, `.` or
    `..`, or (unless allowed) `/` or `\\`, after any number of percent-decodings (upstreams differ in how many)."""
    if _PLAIN_PARAM.fullmatch(value):
        return value in (".", "..")
    for _ in range(_MAX_DECODING_LAYERS):
        if any(ord(c) < 0x20 or c == "\x7f" for c in value):
            return True
        if allow_slash:
            if any(part in (".", "..") for part in value.replace("\\", "/").split("/")):
                return True
        elif value in (".", "..") or "/" in value or "\\" in value:
            return True
        if "%" not in value:
            return False
        decoded = unquote(value)
        if decoded == value:
            return False
        value = decoded
    return True  # still encoded after that many layers: nobody sends that in good faith


# What an endpoint without `input_headers` forwards: Content-Type, as Lura (server.HeadersToSend), so a backend can
# parse the body it gets.
DEFAULT_INPUT_HEADERS = ("Content-Type",)


class RequestRules:
    """An endpoint's request-side rules, precomputed."""

    __slots__ = ("all_headers", "headers", "all_query", "query", "reads_body", "allow_slash", "max_body", "timeout")

    def __init__(self, config: EndpointConfig, max_body: int, read_timeout: float, allow_slash: bool) -> None:
        names = config.input_headers or DEFAULT_INPUT_HEADERS
        self.all_headers = "*" in names
        self.headers = frozenset(h.lower().encode("latin-1") for h in names) - NEVER_FORWARD
        self.all_query = "*" in config.input_query_strings
        self.query = frozenset(config.input_query_strings)
        self.reads_body = config.method in _BODY_METHODS
        self.allow_slash = allow_slash
        self.max_body = max_body
        self.timeout = read_timeout

    def headers_of(self, raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], str]:
        """The allowed headers (repeated ones joined; Cookie with "; ") and the Host. Two Hosts are refused (400)."""
        headers: dict[str, str] = {}
        host: str | None = None
        dropped: frozenset[bytes] | None = None
        for name, value in raw:
            if name == b"host":
                if host is not None:
                    raise RequestRejected(400, "more than one Host header")
                host = value.decode("latin-1")
            elif name == b"connection":
                # Headers the client names in Connection are hop-by-hop for this request (RFC 9110 7.6.1).
                dropped = frozenset(t.strip().lower() for t in value.split(b",")) | (dropped or frozenset())
            elif self.all_headers and name not in NEVER_FORWARD or name in self.headers:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                if key in headers:
                    text = f"{headers[key]}{'; ' if key == 'cookie' else ', '}{text}"
                headers[key] = text
        if dropped:
            for name in dropped:
                headers.pop(name.decode("latin-1"), None)
        return headers, host or ""

    def query_of(self, query_string: bytes) -> list[tuple[str, str]]:
        if not (self.all_query or self.query) or not query_string:
            return []
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        return pairs if self.all_query else [p for p in pairs if p[0] in self.query]


def building_request(pipeline: EndpointPipeline, rules: RequestRules) -> Handler:
    """The last front step: build the endpoint's ProxyRequest and run its pipeline. Built in the worker's running
    loop, which serves its requests: its clock is read without `get_running_loop()` (a getpid syscall on 3.11)."""
    loop = asyncio.get_running_loop()

    async def build(ex: Exchange) -> Reply:
        for value in ex.params.values():
            if unsafe_param(value, rules.allow_slash):
                return json_reply(400, {"error": "invalid path parameter"})
        body = await read_request_body(ex, rules.max_body, rules.timeout) if rules.reads_body else b""
        scope = ex.scope
        headers, host = rules.headers_of(scope["headers"])
        if ex.backend_headers:
            headers.update(ex.backend_headers)
        req = ProxyRequest(
            method=ex.method,
            path=ex.path,
            params=ex.params,
            query=rules.query_of(scope["query_string"]),
            headers=headers,
            body=body,
            client_ip=ex.client_ip,
            request_id=ex.request_id,
            deadline=loop.time() + pipeline.timeout,
            host=host,
            scheme=scope.get("scheme", "http"),
            calls=ex.calls,
            claims=ex.claims,
        )
        if pipeline.negotiates:
            req.accept = first_header(scope["headers"], b"accept")
        return await pipeline(req)

    return build
