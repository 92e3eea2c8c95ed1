"""Where the rate limits enter the gateway: the endpoint guard, the service step and the backend wrapper.

The service limit is the first endpoint guard (lambdagate.stack.ENDPOINT_GUARDS), with one set of buckets per worker
that every endpoint's guard shares, so that its refusals are observed as the route's replies; router misses and the
`/__health` probe spend no token. The endpoint limit is a guard after JWT validation, as in KrakenD's handler factory.
The backend limit fails its backend (503 alone, a partial merge with others).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from lambdagate.config.model import BackendConfig, ServiceConfig
from lambdagate.errors import BackendError, retry_seconds
from lambdagate.front import Step
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.proxy import ProxyRequest, ProxyResponse
from lambdagate.ratelimit import Limiter, SharedLimiter, limiting
from lambdagate.ratelimit.buckets import TokenBucket
from lambdagate.ratelimit.config import PROXY, ROUTER, ROUTER_REDIS, SERVICE, SERVICE_REDIS, Rates, RedisLimits
from lambdagate.ratelimit.shared import SharedBuckets
from lambdagate.redis_pools import NAMESPACE as REDIS
from lambdagate.redis_pools import client

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.stack import StepContext

_PREFIX = "lambdagate:ratelimit:"


def _shared(resources: Resources, service: ServiceConfig, cfg: RedisLimits) -> SharedBuckets:
    ident = ("ratelimit/shared", cfg.pool)
    found = resources.shared.get(ident)
    if found is None:
        found = resources.shared[ident] = SharedBuckets(
            client(resources, service.namespaces[REDIS], cfg.pool), cfg.pool
        )
    return found


def _limiters(namespaces: dict, local: str, shared: str, ctx: StepContext, prefix: str) -> list[Limiter]:
    limiters: list[Limiter] = []
    if (cfg := namespaces.get(local)) is not None:
        limiters.append(Limiter(cfg))
    if (cfg := namespaces.get(shared)) is not None:
        limiters.append(SharedLimiter(cfg, _shared(ctx.resources, ctx.service, cfg), prefix))
    return [limiter for limiter in limiters if limiter.endpoint is not None or limiter.clients is not None]


async def endpoint_rate_limit(ctx: StepContext) -> Step | None:
    """`qos/ratelimit/router` and `qos/ratelimit/router/redis` (lambdagate.stack.ENDPOINT_GUARDS)."""
    endpoint = ctx.endpoint
    if endpoint is None:
        return None
    prefix = f"{_PREFIX}endpoint:{endpoint.method} {endpoint.endpoint}"
    limiters = _limiters(endpoint.namespaces, ROUTER, ROUTER_REDIS, ctx, prefix)
    return limiting(limiters) if limiters else None


async def service_rate_limit(ctx: StepContext) -> Step | None:
    """`qos/ratelimit/service` and `qos/ratelimit/service/redis` (lambdagate.stack.ENDPOINT_GUARDS): every endpoint's
    guard checks the same limiters."""
    ident = ("ratelimit/service",)
    limiters = ctx.resources.shared.get(ident)
    if limiters is None:
        limiters = ctx.resources.shared[ident] = _limiters(
            ctx.service.namespaces, SERVICE, SERVICE_REDIS, ctx, f"{_PREFIX}service"
        )
    return limiting(limiters) if limiters else None


async def with_backend_rate_limit(built: BuiltBackend, cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    """`qos/ratelimit/proxy`: one bucket per backend (per worker); a call without a token fails with 503."""
    options: Rates | None = cfg.namespaces.get(PROXY)
    spec = options.bucket() if options is not None else None
    if spec is None:
        return built
    bucket = TokenBucket(*spec)
    call = built.call

    async def limited(req: ProxyRequest) -> ProxyResponse:
        wait = bucket.take(time.monotonic())
        if wait:
            raise BackendError(
                "backend rate limit reached",
                status=503,
                cause=f"{PROXY}: no token",
                retry_after=str(retry_seconds(wait)),
                refused=True,
            )
        return await call(req)

    return replace(built, call=limited)
