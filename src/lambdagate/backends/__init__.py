"""Backend types. HTTP is the default; other types are chosen by their `extra_config` namespace (lambdagate.plugins
lists them). This module holds what every backend of a worker shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from lambdagate.backends.reply_headers import REPLY_MAX_HEADER_BYTES, REPLY_MAX_HEADERS
from lambdagate.client.aiohttp_client import AiohttpClient
from lambdagate.client.base import HttpClient

if TYPE_CHECKING:
    from lambdagate.telemetry.metrics import WorkerMetrics
    from lambdagate.telemetry.tracing import Tracing


@dataclass
class Resources:
    """Per-worker objects shared by every backend: the HTTP client (and aiohttp session), caches, and what to close at shutdown."""

    session: aiohttp.ClientSession
    local_lambda_endpoint: str | None = None
    max_response_bytes: int = 64 * 1024 * 1024
    # Caps on the headers a pass-through reply (a function's proxy reply, an HTTP no-op backend) hands to the
    # client; past them the reply is malformed (see backends.reply_headers).
    max_reply_headers: int = REPLY_MAX_HEADERS
    max_reply_header_bytes: int = REPLY_MAX_HEADER_BYTES
    shared: dict[Any, Any] = field(default_factory=dict)
    metrics: WorkerMetrics | None = None  # when `telemetry/metrics` is on
    backend_metrics: bool = False  # per-backend call series (off with backend_disabled/proxy_disabled)
    tracing: Tracing | None = None  # when `telemetry/opentelemetry` is on
    record_calls: bool = False  # the access log lists each backend call with its outcome
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The client of backend and Lambda calls (lambdagate.client); not given: `session` behind the seam.
    client: HttpClient | None = None

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = AiohttpClient(self.session)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def close(self) -> None:
        for closer in reversed(self._closers):
            await closer()
        await self.client.close()
        await self.session.close()
