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
from lambdagate.backends.http import http_backend
from lambdagate.backends.http_cache import HTTP_CACHE_NAMESPACE
from lambdagate.backends.lambda_ import LAMBDA_NAMESPACE, lambda_backend
from lambdagate.config import namespaces
from lambdagate.config.endpoint_options import ENDPOINT_OPTIONS
from lambdagate.config.model import BackendConfig
from lambdagate.config.server_options import SERVER_OPTIONS
from lambdagate.lua.config import BACKEND_NAMESPACE as LUA_BACKEND_NAMESPACE
from lambdagate.lua.config import ENDPOINT_NAMESPACE as LUA_ENDPOINT_NAMESPACE
from lambdagate.lua.config import PROXY_NAMESPACE as LUA_PROXY_NAMESPACE
from lambdagate.lua.steps import lua_proxy, with_lua_backend
from lambdagate.pipeline import BackendFactory, BackendWrapper, FanoutWrapper, ResponseStepFactory, wrapped_factory
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
from lambdagate.telemetry.logs import LOGGING_NAMESPACE
from lambdagate.telemetry.metrics import METRICS_NAMESPACE
from lambdagate.telemetry.tracing import TRACING_NAMESPACE

NAMESPACES = (
    SERVER_OPTIONS,
    ENDPOINT_OPTIONS,
    LAMBDA_NAMESPACE,
    LOGGING_NAMESPACE,
    METRICS_NAMESPACE,
    TRACING_NAMESPACE,
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
    HTTP_CACHE_NAMESPACE,  # consulted inside the HTTP and Lambda backends (backends/http_cache.py), no wrapper
    LUA_ENDPOINT_NAMESPACE,  # a front guard (stack.ENDPOINT_GUARDS)
    LUA_PROXY_NAMESPACE,
    LUA_BACKEND_NAMESPACE,
)
# Backend types by namespace; a backend with none of them is an HTTP backend.
BACKEND_TYPES: dict[str, BackendFactory] = {LAMBDA_NAMESPACE.name: lambda_backend}
# Wrappers of a built backend by namespace, applied (first innermost) when the backend's config has the namespace.
# First innermost: the rate limit is outermost (a call without a token neither counts for the breaker nor fetches an
# OAuth2 token), the breaker next (an open breaker fetches no token either). Lua is innermost, right around the call
# as in KrakenD (its request changes reach the backend; its custom errors count for the breaker).
BACKEND_WRAPPERS: dict[str, BackendWrapper] = {
    LUA_BACKEND_NAMESPACE.name: with_lua_backend,
    CLIENT_CREDENTIALS_NAMESPACE.name: with_client_credentials,
    CIRCUIT_BREAKER_NAMESPACE.name: with_circuit_breaker,
    PROXY_NAMESPACE.name: with_backend_rate_limit,
}
# Steps between an endpoint's merge and its rendering, in the order they run; each applies when configured.
RESPONSE_STEPS: tuple[ResponseStepFactory, ...] = (signer_step,)
# Wrappers of an endpoint's fan-out (its backends and merge), first innermost; each applies when configured.
FANOUT_WRAPPERS: tuple[FanoutWrapper, ...] = (lua_proxy,)


def install() -> None:
    """Register every namespace (idempotent)."""
    for namespace in NAMESPACES:
        namespaces.register(namespace)


def backend_factory(backend: BackendConfig) -> BackendFactory:
    """The factory that builds this backend: its type's, else HTTP; with the wrappers its config asks for."""
    factory = next((BACKEND_TYPES[name] for name in backend.namespaces if name in BACKEND_TYPES), http_backend)
    wrappers = [wrapper for name, wrapper in BACKEND_WRAPPERS.items() if name in backend.namespaces]
    return wrapped_factory(factory, wrappers) if wrappers else factory
