"""The one backend call signature, as in Lura: `async (ProxyRequest) -> ProxyResponse`.

Every backend type is a factory producing such a callable; every feature (formatting, merging, deadlines)
is a wrapper around one or several of them.

Naming: a *Response* is what a backend, a function or AWS answered the gateway (`ProxyResponse`,
`pipeline.fanout.MergedResponse`, `backends.lambda_reply.FunctionHttpResponse`, `aws.invoke.InvokeResponse`);
a *Reply* is what the gateway sends its client (`pipeline.render.Reply`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ProxyRequest:
    method: str
    path: str
    params: dict[str, str]  # endpoint placeholder → decoded value, names as written in the endpoint
    query: list[tuple[str, str]]  # only what `input_query_strings` allows
    headers: dict[str, str]  # lower-case names, only what `input_headers` allows
    body: bytes
    client_ip: str
    request_id: str
    deadline: float  # absolute, on the event loop's clock
    host: str = ""  # the Host the client asked for (X-Forwarded-Host)
    scheme: str = "http"
    # Trace-context headers for this backend call (traceparent, tracestate, x-amzn-trace-id), set by the
    # tracing wrapper when tracing is on; each backend type puts them where its protocol carries them.
    trace_headers: dict[str, str] | None = None
    # (backend label, outcome, milliseconds) per backend call, for the access log; None when nobody reads it.
    calls: list[tuple[str, str, float]] | None = None
    # A validated token's claims (auth/validator), for backends that pass them on (e.g. API Gateway events).
    claims: dict[str, Any] | None = None
    # The client's Accept header, set only for a `negotiate` endpoint (the renderer picks the format by it).
    accept: str = ""
    # The gateway's forwarding headers a backend's own input_headers keeps (lower-case names of X-Forwarded-For,
    # X-Forwarded-Host, X-Forwarded-Via, User-Agent); None: all of them (pipeline/backend_inputs.py).
    gateway_headers: frozenset[str] | None = None
    # (method, encoded URL) of an HTTP backend's call when a `modifier/lua-backend` script changed its method, path
    # or URL; None: the backend's configured method and its url_pattern.
    backend_call: tuple[str, str] | None = None


@dataclass(slots=True)
class ProxyResponse:
    """A backend's answer. `data` is the decoded object; `body` is set instead for pass-through replies."""

    data: dict[str, Any] | None
    is_complete: bool = True
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None

    # Named constructors: each kind of answer states its completeness rule (X-KrakenD-Completed) here, once.
    @classmethod
    def decoded(cls, data: dict[str, Any]) -> ProxyResponse:
        """An HTTP backend's decoded reply: complete, whatever it holds (a 2xx answered)."""
        return cls(data, True)

    @classmethod
    def from_function(cls, data: dict[str, Any]) -> ProxyResponse:
        """A function's data: complete only when it holds something (an empty or null reply is incomplete)."""
        return cls(data, bool(data))

    @classmethod
    def passthrough(cls, status: int, headers: list[tuple[str, str]], body: bytes, *, complete: bool) -> ProxyResponse:
        """An HTTP reply the client gets as is (`no-op`, or a function's proxy reply on a single backend)."""
        return cls(None, complete, status, headers, body)

    @classmethod
    def error_details(cls, key: str, details: dict[str, Any], status: int) -> ProxyResponse:
        """A failed HTTP call's details as its data (backend/http `return_error_details`): incomplete, and with the
        backend's status, which keeps the backend's formatting off it (see `is_error_details`)."""
        return cls({key: details}, False, status)

    @property
    def is_error_details(self) -> bool:
        """Data with a failed call's status: only `error_details` makes these (other data answers 200)."""
        return self.body is None and self.status not in (200, 201)

    @classmethod
    def merged(cls, data: dict[str, Any], *, complete: bool) -> ProxyResponse:
        """Several backends' data merged: complete when each of them was."""
        return cls(data, complete)


Backend = Callable[[ProxyRequest], Awaitable[ProxyResponse]]
