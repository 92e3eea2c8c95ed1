"""The one backend call signature, as in Lura: `async (ProxyRequest) -> ProxyResponse`.

Every backend type is a factory producing such a callable; every feature (formatting, merging, deadlines)
is a wrapper around one or several of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable


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


@dataclass(slots=True)
class ProxyResponse:
    """A backend's answer. `data` is the decoded object; `body` is set instead for pass-through replies."""

    data: dict[str, Any] | None
    is_complete: bool = True
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None


Backend = Callable[[ProxyRequest], Awaitable[ProxyResponse]]
