"""The composition module: every `extra_config` namespace, backend type, backend wrapper and response step
lambdagate implements, in one place.

Entry points (the CLI, each worker, tests) call `install()` before reading a config. Adding an extension is adding
its namespace here; the config package itself knows none of them.
"""

from __future__ import annotations

from lambdagate.auth.client_credentials import CLIENT_CREDENTIALS_NAMESPACE, with_client_credentials
from lambdagate.auth.config import VALIDATOR_NAMESPACE
from lambdagate.auth.signer import SIGNER_NAMESPACE, signer_step
from lambdagate.backends.circuit_breaker import CIRCUIT_BREAKER_NAMESPACE, with_circuit_breaker
from lambdagate.backends.client_options import HTTP_CLIENT
from lambdagate.backends.http import http_backend
from lambdagate.backends.http_cache import HTTP_CACHE_NAMESPACE
from lambdagate.backends.http_status import HTTP_BACKEND_NAMESPACE
from lambdagate.backends.lambda_ import LAMBDA_NAMESPACE, lambda_backend
from lambdagate.config import namespaces
from lambdagate.config.endpoint_options import ENDPOINT_OPTIONS
from lambdagate.config.model import BackendConfig
from lambdagate.config.proxy_options import PROXY_OPTIONS
from lambdagate.config.router_options import ROUTER_OPTIONS
from lambdagate.config.server_options import SERVER_OPTIONS
from lambdagate.lua.config import BACKEND_NAMESPACE as LUA_BACKEND_NAMESPACE
from lambdagate.lua.config import ENDPOINT_NAMESPACE as LUA_ENDPOINT_NAMESPACE
from lambdagate.lua.config import PROXY_NAMESPACE as LUA_PROXY_NAMESPACE
from lambdagate.lua.steps import lua_proxy, with_lua_backend
from lambdagate.modifiers.martian_config import MARTIAN_NAMESPACE
from lambdagate.pipeline import (
    BackendFactory,
    BackendWrapper,
    ProxyWrapperFactory,
    ResponseStepFactory,
    wrapped_factory,
)
from lambdagate.pipeline.proxy_steps import flatmap_step, static_step
from lambdagate.ratelimit.config import (
    PROXY_NAMESPACE,
    ROUTER_NAMESPACE,
    ROUTER_REDIS_NAMESPACE,
    SERVICE_NAMESPACE,
    SERVICE_REDIS_NAMESPACE,
)
from lambdagate.ratelimit.steps import with_backend_rate_limit
from lambdagate.redis_pools import REDIS_NAMESPACE
from lambdagate.security.botdetector import BOT_DETECTOR_NAMESPACE
from lambdagate.security.cors import CORS_NAMESPACE
from lambdagate.security.httpsecure import HTTP_SECURITY_NAMESPACE
from lambdagate.telemetry.gelf import GELF_NAMESPACE
from lambdagate.telemetry.logs import LOGGING_NAMESPACE, LOGSTASH_NAMESPACE
from lambdagate.telemetry.metrics import METRICS_NAMESPACE
from lambdagate.telemetry.opencensus import OPENCENSUS_NAMESPACE
from lambdagate.telemetry.tracing import TRACING_NAMESPACE
from lambdagate.validation import cel, jsonschema

NAMESPACES = (
    SERVER_OPTIONS,
    ROUTER_OPTIONS,
    ENDPOINT_OPTIONS,
    LAMBDA_NAMESPACE,
    LOGGING_NAMESPACE,
    LOGSTASH_NAMESPACE,
    GELF_NAMESPACE,
    METRICS_NAMESPACE,
    TRACING_NAMESPACE,
    OPENCENSUS_NAMESPACE,  # maps its exporters onto the metrics and tracing namespaces
    VALIDATOR_NAMESPACE,
    SIGNER_NAMESPACE,
    CLIENT_CREDENTIALS_NAMESPACE,
    CORS_NAMESPACE,
    HTTP_SECURITY_NAMESPACE,
    BOT_DETECTOR_NAMESPACE,
    REDIS_NAMESPACE,
    ROUTER_NAMESPACE,
    SERVICE_NAMESPACE,
    PROXY_NAMESPACE,
    ROUTER_REDIS_NAMESPACE,
    SERVICE_REDIS_NAMESPACE,
    CIRCUIT_BREAKER_NAMESPACE,
    HTTP_CLIENT,  # backend/http/client: read by the HTTP backend (backends/http.py)
    HTTP_CACHE_NAMESPACE,  # consulted inside the HTTP and Lambda backends (backends/http_cache.py), no wrapper
    PROXY_OPTIONS,  # read where the endpoint's pipeline is built (pipeline/__init__.py, proxy_steps.py)
    HTTP_BACKEND_NAMESPACE,  # read by the HTTP backend's status rule (backends/http_status.py)
    MARTIAN_NAMESPACE,  # applied inside the HTTP backend (modifiers/martian.py), no wrapper
    cel.CEL_NAMESPACE,
    jsonschema.JSON_SCHEMA_NAMESPACE,
    LUA_ENDPOINT_NAMESPACE,  # a front guard (stack.ENDPOINT_GUARDS)
    LUA_PROXY_NAMESPACE,
    LUA_BACKEND_NAMESPACE,
)
# Backend types by namespace; a backend with none of them is an HTTP backend.
BACKEND_TYPES: dict[str, BackendFactory] = {LAMBDA_NAMESPACE.name: lambda_backend}
# Wrappers of a built backend by namespace, applied (first innermost) when the backend's config has the namespace.
# First innermost: the rate limit is outermost (a call without a token neither counts for the breaker nor fetches an
# OAuth2 token), the breaker next (an open breaker fetches no token either). CEL checks sit inside both, as in
# krakend-ce's backend factory (lambda → cel → lua → rate limit → circuit breaker); Lua is innermost, right around
# the call (its request changes reach the backend; its custom errors count for the breaker).
BACKEND_WRAPPERS: dict[str, BackendWrapper] = {
    LUA_BACKEND_NAMESPACE.name: with_lua_backend,
    CLIENT_CREDENTIALS_NAMESPACE.name: with_client_credentials,
    cel.NAMESPACE: cel.with_cel_checks,
    CIRCUIT_BREAKER_NAMESPACE.name: with_circuit_breaker,
    PROXY_NAMESPACE.name: with_backend_rate_limit,
}
# Steps between an endpoint's merge and its rendering, in the order they run; each applies when configured.
# As in KrakenD: the endpoint's flatmap, then static data, then (a router-level step there) the signer.
RESPONSE_STEPS: tuple[ResponseStepFactory, ...] = (flatmap_step, static_step, signer_step)
# Wrappers of an endpoint's whole fan-out, in the order a request meets them, as krakend-ce's proxy factory stacks
# them: modifier/lua-proxy, validation/cel, validation/json-schema; each applies when configured.
ENDPOINT_WRAPPERS: tuple[ProxyWrapperFactory, ...] = (lua_proxy, cel.endpoint_checks, jsonschema.body_validation)


def install() -> None:
    """Register every namespace (idempotent)."""
    for namespace in NAMESPACES:
        namespaces.register(namespace)


def backend_factory(backend: BackendConfig) -> BackendFactory:
    """The factory that builds this backend: its type's, else HTTP; with the wrappers its config asks for."""
    factory = next((BACKEND_TYPES[name] for name in backend.namespaces if name in BACKEND_TYPES), http_backend)
    wrappers = [wrapper for name, wrapper in BACKEND_WRAPPERS.items() if name in backend.namespaces]
    return wrapped_factory(factory, wrappers) if wrappers else factory
