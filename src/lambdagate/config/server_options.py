"""`lambdagate/server`: the gateway's own limits and timeouts, set in the service's extra_config.

```json
"extra_config": {"lambdagate/server": {"max_body_bytes": 10485760, "max_in_flight": 1024}}
```
Every field has a safe default, so most configs never mention the namespace.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lambdagate.config.durations import Duration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import ServiceConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext

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
    # Per worker, and at most the descriptor limit less a reserve (supervisor.connection_cap).
    max_connections: StrictInt = Field(default=10_000, gt=0)
    shutdown_grace: Duration = Field(default=10.0, ge=0)  # in-flight requests may finish within it on stop/reload
    # modifier/lua-*: each run of a script (a request's pre, or its post) gets this much of the worker's CPU time,
    # and a script set's runtime this much memory beyond what its loaded sources use; past either, 500.
    lua_cpu_ms: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    lua_memory_bytes: StrictInt = Field(default=16 * MiB, gt=0)


def parse(value: Any, ctx: NamespaceContext) -> ServerOptions:
    return parse_namespace_model(ServerOptions, value, ctx, '{"max_body_bytes": 10485760}')


SERVER_OPTIONS = Namespace(NAMESPACE, "service", parse)


def server_options(service: ServiceConfig) -> ServerOptions:
    return service.namespaces.get(NAMESPACE) or ServerOptions()
