"""The request path of one worker, declared in one function and built once at start-up.

Read `build_stack` top to bottom for the order a request meets the steps. Every step is a wrapper with one signature
(`front.Handler`), composed only when configured: a feature that is off is not in the stack at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lambdagate.auth.validator import jwt_validation
from lambdagate.config.endpoint_options import endpoint_options
from lambdagate.config.model import EndpointConfig, ServiceConfig
from lambdagate.config.router_options import router_options
from lambdagate.front import Handler, Step, builtins
from lambdagate.front.admission import Admission, admitted, answering
from lambdagate.front.client_ip import TrustedProxies, forwarded_client_ip
from lambdagate.front.observe import RequestIds, contained, measured, traced, with_request_id
from lambdagate.front.request import RequestRules, building_request
from lambdagate.front.routing import MissRules, routed
from lambdagate.lua.steps import endpoint_step as lua_endpoint
from lambdagate.ratelimit.steps import endpoint_rate_limit, service_rate_limit
from lambdagate.router import Router
from lambdagate.security import botdetector, cors, httpsecure
from lambdagate.validation import cel

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.config.server_options import ServerOptions
    from lambdagate.pipeline import EndpointPipeline
    from lambdagate.telemetry.logs import AccessLog
    from lambdagate.telemetry.metrics import EndpointStats, WorkerMetrics
    from lambdagate.telemetry.tracing import Tracing


@dataclass
class StepContext:
    """What a step factory may use: the configs it serves and the worker's shared resources."""

    service: ServiceConfig
    endpoint: EndpointConfig | None  # None for the service-wide steps
    resources: Resources


# A step factory reads its namespace and returns its step, or None when the config does not ask for it. Factories
# run once, at start-up (they may fetch what the step needs, e.g. a key set). Namespaces not implemented yet are
# refused at load time (config.guards), so no guard can be skipped silently.
StepFactory = Callable[[StepContext], Awaitable[Step | None]]
# Steps outside admission, so every reply gets them, admission's refusals included (a browser must see a 503 as
# a 503, not as a CORS failure): CORS. As in KrakenD CE it wraps the whole router, so preflights for any path are
# answered before routing.
EDGE_STEPS: tuple[StepFactory, ...] = (cors.build_step,)
# Service-wide steps, in the order a request meets them, as in KrakenD CE: security/http and the service's bot
# detector (gin middlewares there, so they also see unknown paths). Built once and applied inside every route's
# observation, the router's miss and the built-ins included, so their refusals get a request id, an access line and
# their metrics like any reply.
SERVICE_STEPS: tuple[StepFactory, ...] = (httpsecure.build_step, botdetector.build_step)
# Per-endpoint guards, in the order a request meets them, as in KrakenD CE (handler_factory.go): bot detector,
# JWT validation (with its CEL rejecter), Lua, rate limit. The other validation/cel checks and validation/json-schema
# wrap the endpoint's fan-out instead (plugins.ENDPOINT_WRAPPERS), as KrakenD's proxy factories do: they see the
# built request (input_headers applied, the body read under its cap).
# The service rate limit (a global middleware in KrakenD EE) comes right after the bot detector: one set of buckets
# for every endpoint, checked here rather than before routing so that its refusals are observed as the route's
# replies (access log, metrics, traces); router misses (404, 405) and /__health spend no token.
ENDPOINT_GUARDS: tuple[StepFactory, ...] = (
    botdetector.build_step,  # security/bot-detector (the endpoint's)
    service_rate_limit,  # qos/ratelimit/service, qos/ratelimit/service/redis
    jwt_validation,  # auth/validator
    cel.token_checks,  # validation/cel checks naming only JWT: KrakenD runs them inside its token validator
    lua_endpoint,  # modifier/lua-endpoint (the service's, then the endpoint's)
    endpoint_rate_limit,  # qos/ratelimit/router, qos/ratelimit/router/redis
)


async def built_steps(factories: tuple[StepFactory, ...], ctx: StepContext) -> list[Step]:
    """The configured steps, in `factories`' order."""
    steps = [await factory(ctx) for factory in factories]
    return [step for step in steps if step is not None]


def wrapped(handler: Handler, steps: list[Step]) -> Handler:
    """`handler` wrapped so that a request meets `steps` in their order."""
    for step in reversed(steps):
        handler = step(handler)
    return handler


async def composed(handler: Handler, factories: tuple[StepFactory, ...], ctx: StepContext) -> Handler:
    """`handler` wrapped by the configured steps, so that a request meets them in `factories`' order."""
    return wrapped(handler, await built_steps(factories, ctx))


@dataclass
class Observers:
    """What the observation steps report to; each is None when off."""

    access_log: AccessLog | None = None
    metrics: WorkerMetrics | None = None  # set only when endpoint series are on
    tracing: Tracing | None = None
    ids: RequestIds = field(default_factory=RequestIds)

    def stats(self, method: str, route: str) -> EndpointStats | None:
        return self.metrics.endpoint(method, route) if self.metrics is not None else None


def observed(
    handler: Handler,
    obs: Observers,
    route: str | None,
    stats: EndpointStats | None,
    *,
    counts: frozenset[int] | None = None,
    keep_client_id: bool = True,
) -> Handler:
    """A route's observation, outermost first: request id → span → metrics and access log → error containment."""
    if stats is None and obs.access_log is None and obs.tracing is None:  # containment in the request id's step
        return with_request_id(handler, obs.ids, keep_client_id=keep_client_id, contain=True)
    handler = contained(handler)
    if stats is not None or obs.access_log is not None:
        handler = measured(handler, stats, obs.access_log, route, counts=counts)
    if obs.tracing is not None:
        handler = traced(handler, obs.tracing, route)
    return with_request_id(handler, obs.ids, keep_client_id=keep_client_id)


async def endpoint_handler(
    ctx: StepContext, pipeline: EndpointPipeline, options: ServerOptions, obs: Observers, service_steps: list[Step]
) -> Handler:
    """One endpoint: observation → service-wide steps → guards → request building → the endpoint pipeline
    (fan-out, merge, render)."""
    endpoint = ctx.endpoint
    assert endpoint is not None
    rules = RequestRules(
        endpoint,
        options.max_body_bytes,
        options.read_timeout,
        allow_slash=endpoint_options(endpoint).allow_encoded_slash,
    )
    handler = wrapped(await composed(building_request(pipeline, rules), ENDPOINT_GUARDS, ctx), service_steps)
    return observed(handler, obs, endpoint.endpoint, obs.stats(endpoint.method, endpoint.endpoint))


async def build_stack(
    service: ServiceConfig,
    pipelines: list[EndpointPipeline],
    resources: Resources,
    options: ServerOptions,
    admission: Admission,
    obs: Observers,
    *,
    started: float,
    debug: bool,
) -> Handler:
    """The whole front side: CORS → admission → router (endpoints, built-ins, misses) → per route: observation →
    service-wide steps → the endpoint's guards → request building → pipeline."""
    service_ctx = StepContext(service, None, resources)
    service_steps = await built_steps(SERVICE_STEPS, service_ctx)
    ropts = router_options(service)
    router: Router[Handler] = Router()
    for endpoint, pipeline in zip(service.endpoints, pipelines):
        ctx = StepContext(service, endpoint, resources)
        router.add(
            endpoint.method, endpoint.endpoint, await endpoint_handler(ctx, pipeline, options, obs, service_steps)
        )
    if ropts.auto_options:
        add_auto_options(router, service, obs, service_steps)
    prefixes = builtin_routes(router, service, options, obs, service_steps, started=started, debug=debug)
    # Router misses and admission refusals have series of their own: "_unmatched" (404, 405) and "_refused".
    bodies = builtins.miss_bodies(
        options.error_format, {404: ropts.error_body.not_found, 405: ropts.error_body.method_not_allowed}
    )
    miss = observed(
        wrapped(builtins.not_routed(bodies), service_steps),
        obs,
        None,
        obs.stats("*", "_unmatched"),
        counts=frozenset({404, 405}),
    )
    refused_stats = obs.stats("*", "_refused")
    refused = {
        r.status: observed(answering(r), obs, None, refused_stats, keep_client_id=False) for r in admission.refusals
    }
    rules = MissRules(
        redirect_trailing_slash=not ropts.disable_redirect_trailing_slash,
        redirect_fixed_path=not ropts.disable_redirect_fixed_path,
        method_not_allowed=not ropts.disable_handle_method_not_allowed,
        remove_extra_slash=ropts.remove_extra_slash,
    )
    front = routed(router, miss, prefixes, rules)
    if ropts.forwarded_by_client_ip and ropts.trusted_proxies:
        front = forwarded_client_ip(TrustedProxies(ropts.trusted_proxies, ropts.ip_headers))(front)
    return await composed(admitted(front, admission, refused), EDGE_STEPS, service_ctx)


def builtin_routes(
    router: Router[Handler],
    service: ServiceConfig,
    options: ServerOptions,
    obs: Observers,
    service_steps: list[Step],
    *,
    started: float,
    debug: bool,
) -> tuple[tuple[str, Handler], ...]:
    """Adds the health route (unless the router's disable_health); returns the built-in prefixes: /__debug/ and
    /__echo/ with --debug, or the service's debug_endpoint / echo_endpoint."""
    ropts = router_options(service)
    if not ropts.disable_health:
        health = observed(wrapped(builtins.health(started), service_steps), obs, ropts.health_path, None)
        for method in ("GET", "HEAD"):
            if not router.has_route(method, ropts.health_path):
                router.add(method, ropts.health_path, health)
    prefixes: list[tuple[str, Handler]] = []
    served = (
        ("/__debug/", debug or service.debug_endpoint, builtins.debug),
        ("/__echo/", debug or service.echo_endpoint, builtins.echo),
    )
    for prefix, on, factory in served:
        if on:
            handler = wrapped(factory(options.max_body_bytes, options.read_timeout), service_steps)
            prefixes.append((prefix, observed(handler, obs, prefix, None)))
    return tuple(prefixes)


def add_auto_options(router: Router[Handler], service: ServiceConfig, obs: Observers, steps: list[Step]) -> None:
    """The router's auto_options: OPTIONS on every endpoint path that has no OPTIONS endpoint, naming its methods."""
    methods: dict[str, set[str]] = {}
    for endpoint in service.endpoints:
        methods.setdefault(endpoint.endpoint, set()).add(endpoint.method)
    for path, names in methods.items():
        if "OPTIONS" in names or router.has_route("OPTIONS", path):
            continue
        handler = wrapped(builtins.auto_options(", ".join(sorted(names))), steps)
        router.add("OPTIONS", path, observed(handler, obs, path, None))
