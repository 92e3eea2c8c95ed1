"""The front side of the request path: what happens before the endpoint pipeline, as composable steps.

One call signature, as on the backend side: a `Handler` takes the request's `Exchange` and returns the `Reply`.
A `Step` wraps a handler into another one. `lambdagate.stack.build_stack` declares their order, once, at start-up;
a step that is not configured is simply not composed, so it costs nothing per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambdagate.asgi import Receive, Scope
from lambdagate.pipeline.encodings import first_header
from lambdagate.pipeline.render import Reply

if TYPE_CHECKING:
    from lambdagate.front.admission import Admission
    from lambdagate.telemetry.tracing import ServerSpan


@dataclass(slots=True)
class Exchange:
    """One client request as it travels through the front steps; steps fill in what they establish."""

    scope: Scope
    receive: Receive
    method: str
    path: str  # as the client sent it: percent-encoded, without the query string
    request_id: str = ""
    params: dict[str, str] = None  # type: ignore[assignment] - set by the router (decoded placeholder values)
    allow: str = ""  # the methods a path has, when it has none for this method (405)
    location: str = ""  # where the router redirects the request (gin's trailing-slash and fixed-path redirects)
    forwarded_ip: str = ""  # the client's address read from a trusted proxy's header (router forwarded_by_client_ip)
    span: ServerSpan | None = None
    calls: list[tuple[str, str, float]] | None = None  # backend calls, when the access log lists them
    # Set by guards: a validated token's claims, and headers for the backend request (after input_headers
    # filtering, so a guard can add what the client could not, e.g. propagated claims), by lower-case name. The
    # steps after the guard read them as the request's own (`header`).
    claims: dict[str, Any] | None = None
    backend_headers: dict[str, str] | None = None
    # The worker's admission, once the request holds one of its in-flight places (given back while the request
    # waits for its body: front.request.read_request_body).
    admission: Admission | None = None

    def header(self, name: str) -> str:
        """The request's header `name` (lower case) as KrakenD's later middlewares read it: a value an earlier guard
        set (krakend-jose's propagated claims replace the client's with `Header.Set`) over the client's first one;
        "" when neither has it (Go's Header.Get)."""
        guarded = self.backend_headers
        if guarded is not None:
            found = guarded.get(name)
            if found is not None:
                return found
        return first_header(self.scope["headers"], name.encode("latin-1"))

    @property
    def client_ip(self) -> str:
        if self.forwarded_ip:
            return self.forwarded_ip
        client = self.scope.get("client")
        return client[0] if client else ""


Handler = Callable[[Exchange], Awaitable[Reply]]
Step = Callable[[Handler], Handler]

__all__ = ["Exchange", "Handler", "Step", "Reply"]
