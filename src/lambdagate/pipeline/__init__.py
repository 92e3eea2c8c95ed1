"""Endpoint pipelines, each built once at start-up from the config: backends → format → fan-out → render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig
from lambdagate.pipeline.fanout import BackendSlot, call_all, call_one
from lambdagate.pipeline.formatter import Formatter, build_formatter
from lambdagate.pipeline.render import Renderer, Reply
from lambdagate.proxy import Backend, ProxyRequest, ProxyResponse

__all__ = ["BackendFactory", "BuildContext", "BuiltBackend", "EndpointPipeline", "Reply", "build_endpoint"]


@dataclass
class BuildContext:
    """What a backend factory may use: the configs around it and the worker's shared resources."""

    service: ServiceConfig
    endpoint: EndpointConfig
    backend_index: int
    resources: Any  # lambdagate.backends.Resources (shared HTTP session, per-worker caches)

    @property
    def path(self) -> str:
        return f"{self.endpoint.method} {self.endpoint.endpoint} backend[{self.backend_index}]"


@dataclass
class BuiltBackend:
    """What a backend factory returns: the call, a label for logs, and where its error details go in a merge."""

    call: Backend
    label: str
    details_key: str | None = None


BackendFactory = Callable[[BackendConfig, BuildContext], Awaitable[BuiltBackend]]


def with_formatter(call: Backend, formatter: Formatter) -> Backend:
    async def formatted(req: ProxyRequest) -> ProxyResponse:
        resp = await call(req)
        if resp.body is None and resp.data is not None:
            resp.data = formatter(resp.data)
        return resp

    return formatted


class EndpointPipeline:
    """Serving a request is one call: fan out to the backends under the deadline, then render."""

    def __init__(self, config: EndpointConfig, timeout: float, slots: list[BackendSlot], renderer: Renderer) -> None:
        self.config = config
        self.timeout = timeout
        self._slots = slots
        self._slot = slots[0]
        self._single = len(slots) == 1
        self._renderer = renderer

    async def __call__(self, req: ProxyRequest) -> Reply:
        outcome = await (call_one(self._slot, req) if self._single else call_all(self._slots, req))
        return self._renderer.render(outcome)


async def build_endpoint(service: ServiceConfig, endpoint: EndpointConfig, resources: Any,
                         factory_for: Callable[[BackendConfig], BackendFactory]) -> EndpointPipeline:
    slots = []
    for i, backend in enumerate(endpoint.backend):
        ctx = BuildContext(service, endpoint, i, resources)
        built = await factory_for(backend)(backend, ctx)
        call = built.call
        formatter = build_formatter(backend)
        if formatter is not None and backend.encoding != "no-op":
            call = with_formatter(call, formatter)
        slots.append(BackendSlot(call, f"{ctx.path} ({built.label})", built.details_key))
    timeout = endpoint.timeout or service.timeout
    encoding = endpoint.output_encoding or service.output_encoding
    cache_ttl = endpoint.cache_ttl if endpoint.cache_ttl is not None else service.cache_ttl
    return EndpointPipeline(endpoint, timeout, slots, Renderer(encoding, cache_ttl))
