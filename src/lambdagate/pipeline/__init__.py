"""Endpoint pipelines, each built once at start-up from the config: backends → format → fan-out → response steps
→ render.

Extensions plug in at two places, both composed only when their namespace is configured: a backend wrapper
(`wrapped_factory`, e.g. auth/client-credentials adds a token to each call) and a response step (`ResponseStep`,
e.g. auth/signer signs fields of the merged data before it is rendered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig
from lambdagate.errors import BackendError
from lambdagate.pipeline.fanout import BackendSlot, MergedResponse, call_all, call_one
from lambdagate.pipeline.formatter import Formatter, build_formatter
from lambdagate.pipeline.render import Renderer, Reply
from lambdagate.proxy import Backend, ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.telemetry.metrics import BackendStats

__all__ = [
    "BackendFactory",
    "BackendWrapper",
    "BuildContext",
    "BuiltBackend",
    "EndpointPipeline",
    "Fanout",
    "FanoutWrapper",
    "Reply",
    "ResponseStep",
    "ResponseStepFactory",
    "build_endpoint",
    "wrapped_factory",
]


@dataclass
class BuildContext:
    """What a backend factory may use: the configs around it and the worker's shared resources."""

    service: ServiceConfig
    endpoint: EndpointConfig
    backend_index: int
    resources: Resources  # the worker's shared HTTP session and caches

    @property
    def path(self) -> str:
        return f"{self.endpoint.method} {self.endpoint.endpoint} backend[{self.backend_index}]"


@dataclass
class BuiltBackend:
    """What a backend factory returns: the call, a label for logs, and where its error details go in a merge."""

    call: Backend
    label: str
    details_key: str | None = None
    kind: str = "http"  # for traces: "http" or "lambda"


BackendFactory = Callable[[BackendConfig, BuildContext], Awaitable[BuiltBackend]]
# Wraps a built backend (its call, as a rule) where the backend's config asks for it; runs once, at start-up.
BackendWrapper = Callable[[BuiltBackend, BackendConfig, BuildContext], Awaitable[BuiltBackend]]


def wrapped_factory(factory: BackendFactory, wrappers: Sequence[BackendWrapper]) -> BackendFactory:
    """`factory` with `wrappers` applied to what it builds, the first one innermost."""

    async def build(cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
        built = await factory(cfg, ctx)
        for wrapper in wrappers:
            built = await wrapper(built, cfg, ctx)
        return built

    return build


@dataclass(frozen=True)
class ResponseStep:
    """A change to an endpoint's merged outcome before it is rendered (auth/signer signs fields of it)."""

    apply: Callable[[MergedResponse], MergedResponse]
    per_user: bool = False  # its replies differ per user, so a shared cache must not keep them


# An endpoint's fan-out (its backends, merged), and what may wrap it where the endpoint's config asks for it
# (modifier/lua-proxy runs scripts before and after it); a wrapper returns None when the endpoint has not its
# namespace. Runs once, at start-up.
Fanout = Callable[[ProxyRequest], Awaitable[MergedResponse]]
FanoutWrapper = Callable[[ServiceConfig, EndpointConfig, "Resources", Fanout], Awaitable[Fanout | None]]

# Builds an endpoint's response step, or None when the endpoint's config does not ask for it; runs once, at start-up
# (it may fetch what the step needs, e.g. a signing key).
ResponseStepFactory = Callable[[ServiceConfig, EndpointConfig, "Resources"], Awaitable[ResponseStep | None]]


def observed(call: Backend, label: str, stats: BackendStats | None, record: bool) -> Backend:
    """Time one backend's calls and classify them (success, error, timeout): into its metrics (`stats`, a
    telemetry.metrics.BackendStats, or None) and, with `record`, into the request's list for the access log."""

    async def call_observed(req: ProxyRequest) -> ProxyResponse:
        started = perf_counter()
        outcome = "error"
        try:
            resp = await call(req)
            outcome = "error" if resp.status >= 500 else "success"
            return resp
        except BackendError as exc:
            outcome = "timeout" if exc.timed_out else "error"
            raise
        except (TimeoutError, asyncio.CancelledError):  # the endpoint's deadline cancelled the call
            outcome = "timeout"
            raise
        finally:
            seconds = perf_counter() - started
            if stats is not None:
                stats.observe(outcome, seconds)
            if record and req.calls is not None:
                req.calls.append((label, outcome, round(seconds * 1000, 2)))

    return call_observed


def with_formatter(call: Backend, formatter: Formatter) -> Backend:
    async def formatted(req: ProxyRequest) -> ProxyResponse:
        resp = await call(req)
        if resp.body is None and resp.data is not None:
            resp.data = formatter(resp.data)
        return resp

    return formatted


class EndpointPipeline:
    """Serving a request is one call: fan out to the backends under the deadline, apply the response steps (if
    any), then render."""

    def __init__(
        self,
        config: EndpointConfig,
        timeout: float,
        slots: list[BackendSlot],
        renderer: Renderer,
        steps: Sequence[ResponseStep] = (),
        fanout: Fanout | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self._slots = slots
        self._slot = slots[0]
        self._single = len(slots) == 1
        self._renderer = renderer
        self._steps = tuple(step.apply for step in steps) or None  # None: nothing to run between merge and render
        self._fanout = fanout  # None: the plain fan-out below

    async def fan_out(self, req: ProxyRequest) -> MergedResponse:
        return await (call_one(self._slot, req) if self._single else call_all(self._slots, req))

    async def __call__(self, req: ProxyRequest) -> Reply:
        if self._fanout is not None:
            outcome = await self._fanout(req)
        else:
            outcome = await (call_one(self._slot, req) if self._single else call_all(self._slots, req))
        if self._steps is not None:
            for step in self._steps:
                outcome = step(outcome)
        return self._renderer.render(outcome)


async def build_endpoint(
    service: ServiceConfig,
    endpoint: EndpointConfig,
    resources: Resources,
    factory_for: Callable[[BackendConfig], BackendFactory],
    step_factories: Sequence[ResponseStepFactory] = (),
    fanout_wrappers: Sequence[FanoutWrapper] = (),
) -> EndpointPipeline:
    slots = []
    for i, backend in enumerate(endpoint.backend):
        ctx = BuildContext(service, endpoint, i, resources)
        built = await factory_for(backend)(backend, ctx)
        call = built.call
        formatter = build_formatter(backend)
        if formatter is not None and backend.encoding != "no-op":
            call = with_formatter(call, formatter)
        # Telemetry wrappers only when it is on: a feature that is off costs nothing per request.
        tracing, metrics = resources.tracing, resources.metrics
        if tracing is not None:
            call = tracing.wrap_backend(call, label=built.label, kind=built.kind)
        stats = metrics.backend(endpoint.endpoint, endpoint.method, built.label) if resources.backend_metrics else None
        if stats is not None or resources.record_calls:
            call = observed(call, built.label, stats, resources.record_calls)
        slots.append(BackendSlot(call, f"{ctx.path} ({built.label})", built.details_key))
    timeout = endpoint.timeout or service.timeout
    encoding = endpoint.output_encoding or service.output_encoding
    cache_ttl = endpoint.cache_ttl if endpoint.cache_ttl is not None else service.cache_ttl
    steps = [step for factory in step_factories if (step := await factory(service, endpoint, resources)) is not None]
    per_user = bool({"*", "authorization", "cookie"} & {h.lower() for h in endpoint.input_headers}) or any(
        step.per_user for step in steps
    )
    pipeline = EndpointPipeline(endpoint, timeout, slots, Renderer(encoding, cache_ttl, per_user=per_user), steps)
    fanout: Fanout = pipeline.fan_out
    for wrapper in fanout_wrappers:
        fanout = await wrapper(service, endpoint, resources, fanout) or fanout
    if fanout is not pipeline.fan_out:
        pipeline._fanout = fanout
    return pipeline
