"""What an HTTP backend's status means (Lura's status handlers), and the `backend/http` namespace that changes it.

An answer other than 200 or 201 is a failed call, as in KrakenD ("invalid status code N"): the client gets the
endpoint's error (500 alone, a partial merge with others). `backend/http` changes that:

- `return_error_details: "name"`: the failed call answers `{"error_name": {"http_status_code": 404, "http_body":
  "...", "http_body_encoding": "text/plain"}}` as its data, incomplete, so it is merged with the other backends'
  data (Lura's NamedHTTPResponseError). The backend's formatting (allow, mapping, group...) does not apply to it.
- `return_error_code: true`: the failed call fails with the backend's status, which a single-backend endpoint
  passes to its client (Lura's ErrorHTTPStatusHandler). Ignored when `return_error_details` is given, as in Lura.

A `no-op` backend has no status rule: any final status is passed on as is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from multidict import CIMultiDictProxy
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import BackendConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext
from lambdagate.errors import BackendError
from lambdagate.proxy import ProxyResponse

NAMESPACE = "backend/http"
SUCCESS = frozenset({200, 201})  # Lura's DefaultHTTPStatusHandler: anything else is a failed call
# A failed call's (status, headers, body) → its response (error details), or BackendError raised.
OnFailure = Callable[[int, CIMultiDictProxy, bytes], ProxyResponse]


class HttpBackendOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    # KrakenD reads a non-empty string only; `true` (found in real configs) is accepted and does nothing there.
    return_error_details: StrictStr | StrictBool | None = None
    return_error_code: StrictBool = False


def parse(value: Any, ctx: NamespaceContext) -> HttpBackendOptions:
    options = parse_namespace_model(HttpBackendOptions, value, ctx, '{"return_error_details": "backend_a"}')
    details = options.return_error_details
    if details is not None and not (isinstance(details, str) and details):
        ctx.warnings.append(("return_error_details", 'KrakenD reads a name such as "backend_a" only: ignored'))
        if options.return_error_code:
            ctx.warnings.append(("return_error_code", 'ignored, as in KrakenD, next to "return_error_details"'))
    return options


HTTP_BACKEND_NAMESPACE = Namespace(NAMESPACE, "backend", parse, aliases=("github.com/devopsfaith/krakend/http",))


def on_failure(cfg: BackendConfig) -> OnFailure:
    """What a call answering anything but 200/201 gives, by the backend's `backend/http` options."""
    options: HttpBackendOptions | None = cfg.namespaces.get(NAMESPACE)
    details = options.return_error_details if options is not None else None
    if isinstance(details, str) and details:
        key = f"error_{details}"

        def with_details(status: int, headers: CIMultiDictProxy, body: bytes) -> ProxyResponse:
            return ProxyResponse.error_details(key, _details(status, headers, body), status)

        return with_details
    if options is not None and details is None and options.return_error_code:

        def with_code(status: int, headers: CIMultiDictProxy, body: bytes) -> ProxyResponse:
            raise BackendError("the backend failed", status=status, cause=f"invalid status code {status}")

        return with_code

    def failed(status: int, headers: CIMultiDictProxy, body: bytes) -> ProxyResponse:
        raise BackendError("the backend failed", cause=f"invalid status code {status}")

    return failed


def _details(status: int, headers: CIMultiDictProxy, body: bytes) -> dict[str, Any]:
    """Lura's HTTPResponseError as JSON: the body as text, empty values left out."""
    out: dict[str, Any] = {"http_status_code": status}
    if body:
        out["http_body"] = body.decode("utf-8", "replace")
    content_type = headers.get("Content-Type")
    if content_type:
        out["http_body_encoding"] = content_type
    return out
