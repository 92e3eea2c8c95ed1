"""Endpoint pipelines, each built once at start-up from the config: backends → format → fan-out → response steps
→ render.

Extensions plug in at three places, each composed only when its namespace is configured: a backend wrapper
(`wrapped_factory`, e.g. auth/client-credentials adds a token to each call), an endpoint proxy wrapper
(`ProxyWrapper`, around the whole fan-out as KrakenD's proxy factories: validation/cel, validation/json-schema) and
a response step (`ResponseStep`, e.g. auth/signer signs fields of the merged data before it is rendered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING

from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig
from lambdagate.config.proxy_options import backend_proxy, endpoint_proxy, is_shadow
from lambdagate.errors import BackendError
from lambdagate.pipeline.backend_inputs import narrowed
from lambdagate.pipeline.concurrent import concurrent
from lambdagate.pipeline.fanout import BackendSlot, MergedResponse, call_all, call_one
from lambdagate.pipeline.formatter import Formatter, build_formatter
from lambdagate.pipeline.render import Renderer, Reply
from lambdagate.pipeline.sequential import call_in_sequence, plan
from lambdagate.pipeline.shadow import Shadows
from lambdagate.proxy import Backend, ProxyRequest, ProxyResponse

# Large XML/YAML replies are rendered here (Renderer.in_thread), one at a time: with one thread beside it the event
# loop keeps about half the GIL; with several, its share (and everyone else's latency) falls with each.
RENDER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambdagate-render")

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.telemetry.metrics import BackendStats

__all__ = [
    "BackendFactory",
    "BackendWrapper",
    "BuildContext",
    "BuiltBackend",
    "EndpointPipeline",
    "EndpointProxy",
    "ProxyWrapper",
    "ProxyWrapperFactory",
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
    # HTTP backends: (method, scheme://authority, encoded path, encoded fixed query) a request's call would use
    # (picking its host), for modifier/lua-backend, which shows them to its script and may change them.
    target: Callable[[ProxyRequest], tuple[str, str, str, str]] | None = None


BackendFactory = Callable[[BackendConfig, BuildContext], Awaitable[BuiltBackend]]
# Calls an endpoint's backends otherwise than all at once (the sequential proxy).
Merge = Callable[[Sequence[BackendSlot], ProxyRequest], Awaitable[MergedResponse]]
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


# Builds an endpoint's response step, or None when the endpoint's config does not ask for it; runs once, at start-up
# (it may fetch what the step needs, e.g. a signing key).
ResponseStepFactory = Callable[[ServiceConfig, EndpointConfig, "Resources"], Awaitable[ResponseStep | None]]


# The endpoint's whole fan-out as one call, as KrakenD's endpoint proxy: the request in, the merged outcome out.
EndpointProxy = Callable[[ProxyRequest], Awaitable[MergedResponse]]
# Wraps it (checks before the backends, after them, or both); a refusal is an outcome with an error.
ProxyWrapper = Callable[[EndpointProxy], EndpointProxy]
# Builds an endpoint's proxy wrapper, or None when the endpoint's config does not ask for it; runs once, at start-up.
ProxyWrapperFactory = Callable[[ServiceConfig, EndpointConfig, "Resources"], Awaitable[ProxyWrapper | None]]


def observed(call: Backend, label: str, stats: BackendStats | None, record: bool) -> Backend:
    """Time one backend's calls and classify them (success, error, timeout): into its metrics (`stats`, a
    telemetry.metrics.BackendStats, or None) and, with `record`, into the request's list for the access log."""

    async def call_observed(req: ProxyRequest) -> ProxyResponse:
        started = perf_counter()
        outcome = "error"
        try:
            resp = await call(req)
            # A failed call's details (backend/http return_error_details) answer, but the call failed all the same.
            outcome = "error" if resp.status >= 500 or resp.is_error_details else "success"
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
        # A failed call's error details (backend/http) are not the backend's data: never formatted, as in Lura.
        if resp.body is None and resp.data is not None and not resp.is_error_details:
            resp.data = formatter(resp.data)
        return resp

    return formatted


def as_data(call: Backend) -> Backend:
    """A `no-op` backend under an endpoint that renders data, as KrakenD has it: called, any status accepted, and
    its reply is complete with no data ({})."""

    async def data_only(req: ProxyRequest) -> ProxyResponse:
        resp = await call(req)
        return ProxyResponse.decoded({}) if resp.body is not None else resp

    return data_only


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
        *,
        merge: Merge | None = None,
        shadows: Shadows | None = None,
        wrappers: Sequence[ProxyWrapper] = (),
    ) -> None:
        """`merge`: how the backends are called when not all at once (the sequential proxy); `shadows`: the
        backends called in the background, their replies discarded."""
        self.config = config
        self.timeout = timeout
        self._slots = slots
        self._slot = slots[0]
        self._single = len(slots) == 1
        self._renderer = renderer
        self.negotiates = renderer.encoding == "negotiate"  # the front passes the client's Accept (req.accept)
        self._steps = tuple(step.apply for step in steps) or None  # None: nothing to run between merge and render
        self._shadows = shadows
        # The endpoint's proxy: the fan-out (or the sequence), wrapped by the configured proxy wrappers (CEL, JSON
        # Schema, Lua); None when it is the plain fan-out, which is then called directly.
        self._proxy: EndpointProxy | None = None
        if merge is not None or wrappers:
            proxy: EndpointProxy = (
                partial(merge, slots)
                if merge is not None
                else (partial(call_one, self._slot) if self._single else partial(call_all, slots))
            )
            for wrapper in reversed(wrappers):  # the first wrapper is the outermost: a request meets it first
                proxy = wrapper(proxy)
            self._proxy = proxy

    async def __call__(self, req: ProxyRequest) -> Reply:
        if self._shadows is not None:
            self._shadows.send(req)
        if self._proxy is not None:
            outcome = await self._proxy(req)
        else:
            outcome = await (call_one(self._slot, req) if self._single else call_all(self._slots, req))
        if self._steps is not None:
            for step in self._steps:
                outcome = step(outcome)
        renderer = self._renderer
        if renderer.others is not None and renderer.in_thread(outcome, req.accept):
            return await asyncio.get_running_loop().run_in_executor(RENDER_THREAD, renderer.render, outcome, req.accept)
        return renderer.render(outcome, req.accept)


async def build_endpoint(
    service: ServiceConfig,
    endpoint: EndpointConfig,
    resources: Resources,
    factory_for: Callable[[BackendConfig], BackendFactory],
    step_factories: Sequence[ResponseStepFactory] = (),
    wrapper_factories: Sequence[ProxyWrapperFactory] = (),
) -> EndpointPipeline:
    timeout = endpoint.timeout or service.timeout
    encoding = endpoint.output_encoding or service.output_encoding
    options = endpoint_proxy(endpoint)
    answering = [b for b in endpoint.backend if not is_shadow(b)]
    in_sequence = options.sequential and len(answering) > 1
    slots, shadow_slots, shadow_timeout = [], [], 0.0
    for i, backend in enumerate(endpoint.backend):
        # A no-op backend under an endpoint that renders data gives it {} (KrakenD's); a sequence reads its body.
        data_only = backend.encoding == "no-op" and encoding != "no-op" and not in_sequence
        slot = await _build_slot(BuildContext(service, endpoint, i, resources), backend, factory_for, data_only)
        if is_shadow(backend):
            shadow_slots.append(slot)
            shadow_timeout = max(shadow_timeout, backend_proxy(backend).shadow_timeout or timeout)
        else:
            slots.append(slot)
    merge = partial(call_in_sequence, refs=plan(answering, options)) if in_sequence else None
    shadows = Shadows(shadow_slots, shadow_timeout, endpoint.endpoint) if shadow_slots else None
    cache_ttl = endpoint.cache_ttl if endpoint.cache_ttl is not None else service.cache_ttl
    steps = [step for factory in step_factories if (step := await factory(service, endpoint, resources)) is not None]
    per_user = bool({"*", "authorization", "cookie"} & {h.lower() for h in endpoint.input_headers}) or any(
        step.per_user for step in steps
    )
    wrappers = [w for factory in wrapper_factories if (w := await factory(service, endpoint, resources)) is not None]
    renderer = Renderer(encoding, cache_ttl, per_user=per_user)
    return EndpointPipeline(endpoint, timeout, slots, renderer, steps, merge=merge, shadows=shadows, wrappers=wrappers)


async def _build_slot(
    ctx: BuildContext, backend: BackendConfig, factory_for: Callable[[BackendConfig], BackendFactory], data_only: bool
) -> BackendSlot:
    """One backend's call with what wraps it: formatting, concurrent calls, then telemetry (around the race)."""
    built = await factory_for(backend)(backend, ctx)
    call = narrowed(built.call, backend)  # the backend's own input_headers / input_query_strings, around it all
    formatter = build_formatter(backend)
    if formatter is not None and backend.encoding != "no-op":
        call = with_formatter(call, formatter)
    if data_only:
        call = as_data(call)
    call = concurrent(call, ctx.endpoint.concurrent_calls)
    # Telemetry wrappers only when it is on: a feature that is off costs nothing per request.
    resources = ctx.resources
    tracing, metrics = resources.tracing, resources.metrics
    if tracing is not None:
        call = tracing.wrap_backend(call, label=built.label, kind=built.kind)
    endpoint = ctx.endpoint
    stats = metrics.backend(endpoint.endpoint, endpoint.method, built.label) if resources.backend_metrics else None
    if stats is not None or resources.record_calls:
        call = observed(call, built.label, stats, resources.record_calls)
    return BackendSlot(call, f"{ctx.path} ({built.label})", built.details_key, asyncio.get_running_loop())
