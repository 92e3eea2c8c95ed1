"""`lambdagate/server`: the gateway's own limits and timeouts, set in the service's extra_config.

```json
"extra_config": {"lambdagate/server": {"max_body_bytes": 10485760, "max_in_flight": 1024}}
```
Every field has a safe default, so most configs never mention the namespace.

KrakenD's own server keys at the service's top level (`read_timeout`, `read_header_timeout`, `idle_timeout`,
`max_header_bytes`) set the limits of the same names here, and `max_shutdown_wait_time` sets `shutdown_grace`;
when a key is set in both places, this namespace wins (it is lambdagate's own, and `check` warns about the pair).
KrakenD's 0 ("no limit", or Go's default size) keeps lambdagate's default: the limits here are never off.
`write_timeout` has no counterpart: it is accepted with a warning.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from lambdagate.config.durations import Duration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import ServiceConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext
from lambdagate.config.server_keys import TOP_LEVEL_OPTIONS

NAMESPACE = "lambdagate/server"
MiB = 1024 * 1024


class ServerOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    max_body_bytes: StrictInt = Field(default=10 * MiB, gt=0)  # larger request bodies get 413
    max_header_bytes: StrictInt = Field(default=64 * 1024, gt=0)  # all request headers together, else 431
    max_header_count: StrictInt = Field(default=100, gt=0)  # else 431
    max_url_length: StrictInt = Field(default=8192, gt=0)  # path + query, else 414
    max_in_flight: StrictInt = Field(default=1024, gt=0)  # per worker; beyond it new requests get 503
    max_backend_response_bytes: StrictInt = Field(default=16 * MiB, gt=0)  # larger backend replies fail the backend
    read_timeout: Duration = Field(default=30.0, gt=0)  # reading a request body, else 408
    # A connection is closed when no complete request head arrives within it from accept.
    read_header_timeout: Duration = Field(default=10.0, gt=0)
    idle_timeout: Duration = Field(default=60.0, gt=0)  # a keep-alive connection waiting for its next request
    # A reply over 1 MiB is sent in pieces; a piece the client's connection takes none of within it drops the
    # connection (a client that stops reading cannot keep a large reply in the worker's memory).
    send_timeout: Duration = Field(default=30.0, gt=0)
    # Per worker, and at most the descriptor limit less a reserve (supervisor.connection_cap).
    max_connections: StrictInt = Field(default=10_000, gt=0)
    shutdown_grace: Duration = Field(default=10.0, ge=0)  # in-flight requests may finish within it on stop/reload
    # The gateway's own error replies (router misses): KrakenD's plain text ("404 page not found"), or JSON objects
    # such as {"error": "not found"}.
    error_format: Literal["text", "json"] = "text"
    # validation/json-schema: fetch the remote $refs a schema names (once, when the config is read); off, such a
    # schema is refused, so the gateway never fetches a URL named in a config.
    allow_remote_schema_refs: StrictBool = False
    # modifier/lua-*: each run of a script (a request's pre, or its post) gets this much of the worker's CPU time,
    # and a script set's runtime this much memory beyond what its loaded sources use; past either, 500.
    lua_cpu_ms: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    lua_memory_bytes: StrictInt = Field(default=16 * MiB, gt=0)
    # The client of backend and Lambda calls: "fast" (asyncio Protocols with httptools) or "aiohttp", the fallback.
    # Not set: the LAMBDAGATE_HTTP_CLIENT environment variable, else "fast".
    http_client: Literal["fast", "aiohttp"] | None = None


def parse(value: Any, ctx: NamespaceContext) -> ServerOptions:
    options = parse_namespace_model(ServerOptions, value, ctx, '{"max_body_bytes": 10485760}')
    for top, name in TOP_LEVEL_OPTIONS.items():
        if name in options.model_fields_set and getattr(ctx.service, top):
            ctx.warnings.append((name, f"also set at the service's top level ({top}); this value wins"))
    return options


SERVER_OPTIONS = Namespace(NAMESPACE, "service", parse)


def server_options(service: ServiceConfig) -> ServerOptions:
    """The namespace's options, with the top-level KrakenD keys it does not set itself."""
    options: ServerOptions = service.namespaces.get(NAMESPACE) or ServerOptions()
    top = {
        name: value
        for key, name in TOP_LEVEL_OPTIONS.items()
        if name not in options.model_fields_set and (value := getattr(service, key))  # None or 0: keep the default
    }
    return options.model_copy(update=top) if top else options
