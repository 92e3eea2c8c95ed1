"""Backend types. HTTP is the default; other types register a factory for their `extra_config` namespace.

Every module in this package is imported when the config is loaded (see config.namespaces.load_plugins),
so adding a backend type is adding a module here, and touches no core file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp

from lambdagate.backends.reply_headers import REPLY_MAX_HEADER_BYTES, REPLY_MAX_HEADERS
from lambdagate.config.model import BackendConfig
from lambdagate.pipeline import BackendFactory

_TYPES: dict[str, BackendFactory] = {}


@dataclass
class Resources:
    """Per-worker objects shared by every backend: the HTTP session, caches, and what to close at shutdown."""

    session: aiohttp.ClientSession
    local_lambda_endpoint: str | None = None
    max_response_bytes: int = 64 * 1024 * 1024
    # Caps on the headers a pass-through reply (a function's proxy reply, an HTTP no-op backend) hands to the
    # client; past them the reply is malformed (see backends.reply_headers).
    max_reply_headers: int = REPLY_MAX_HEADERS
    max_reply_header_bytes: int = REPLY_MAX_HEADER_BYTES
    shared: dict[Any, Any] = field(default_factory=dict)
    metrics: Any = None  # telemetry.metrics.WorkerMetrics when `telemetry/metrics` is on
    backend_metrics: bool = False  # per-backend call series (off with backend_disabled/proxy_disabled)
    tracing: Any = None  # telemetry.tracing.Tracing when `telemetry/opentelemetry` is on
    record_calls: bool = False  # the access log lists each backend call with its outcome
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def close(self) -> None:
        for closer in reversed(self._closers):
            await closer()
        await self.session.close()


def register_backend_type(namespace: str, factory: BackendFactory) -> None:
    _TYPES[namespace] = factory


def factory_for(backend: BackendConfig) -> BackendFactory:
    for name in backend.namespaces:
        factory = _TYPES.get(name)
        if factory is not None:
            return factory
    from lambdagate.backends.http import http_backend

    return http_backend
