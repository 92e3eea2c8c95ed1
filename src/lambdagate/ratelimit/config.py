"""The rate-limit namespaces' configs: `qos/ratelimit/router`, `/service`, `/proxy`, their `/redis` variants, and the
service-level `redis` namespace (connection pools), parsed once at load time.

Fields and defaults as KrakenD's krakend-ratelimit: `every` (default 1s, at least 1s) is the period `max_rate` and
`client_max_rate` count in; `capacity` defaults to the per-second rate (at least 1). A rate of 0 (or none) turns that
limit off, as in KrakenD. Unlike KrakenD, bad values are refused (a negative rate, an unknown strategy, `key` missing
for `header`/`param`, an unknown `connection_pool`) instead of being read as 0 or ignored.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from lambdagate.backends.reply_headers import TOKEN
from lambdagate.config.durations import parse_duration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.redis_pools import pool_problem

ROUTER = "qos/ratelimit/router"
SERVICE = "qos/ratelimit/service"
PROXY = "qos/ratelimit/proxy"
ROUTER_REDIS = "qos/ratelimit/router/redis"
SERVICE_REDIS = "qos/ratelimit/service/redis"
REDIS = "redis"
ROUTER_LEGACY = (
    "github.com/devopsfaith/krakend-ratelimit/juju/router",
    "github.com/devopsfaith/krakend-ratelimit/rate/router",
    "qos_ratelimit_router",
)
PROXY_LEGACY = (
    "github.com/devopsfaith/krakend-ratelimit/juju/proxy",
    "github.com/devopsfaith/krakend-ratelimit/rate/proxy",
    "qos_ratelimit_proxy",
)
# Per-client buckets a limiter keeps at most (per worker); past it, idle ones are dropped and then new clients are
# refused (429): a flood of distinct keys cannot grow memory without bound.
DEFAULT_MAX_CLIENTS = 100_000
_EXAMPLE = '{"max_rate": 100, "every": "1s", "client_max_rate": 10, "strategy": "ip"}'
_OLD_FIELDS = {"maxRate": "max_rate", "clientMaxRate": "client_max_rate", "clientCapacity": "client_capacity"}
_NUMBER = "must be a number of at least 0 (0 turns this limit off)"
_COUNT = "must be a whole number of at least 0 (0: the default)"


class Rates(BaseModel):
    """What every rate-limit block has: an endpoint-wide (or backend-wide) bucket."""

    model_config = ConfigDict(extra="allow")

    max_rate: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    capacity: StrictInt = Field(default=0, ge=0)
    every: StrictStr = "1s"

    @field_validator("max_rate", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(_NUMBER)
        return value

    @property
    def period(self) -> float:
        """`every` in seconds; KrakenD reads anything shorter than 1s (or unreadable) as 1s."""
        return max(1.0, parse_duration(self.every))

    def bucket(self) -> tuple[float, int] | None:
        """(tokens per second, capacity) of the endpoint-wide bucket, or None when it is off."""
        return _bucket(self.max_rate / self.period, self.capacity)


class RouterLimits(Rates):
    """`qos/ratelimit/router` and `qos/ratelimit/service`: an endpoint-wide bucket and one bucket per client."""

    client_max_rate: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    client_capacity: StrictInt = Field(default=0, ge=0)
    strategy: Literal["ip", "header", "param"] = "ip"
    key: StrictStr = ""
    num_shards: StrictInt = Field(default=0, ge=0)  # accepted for KrakenD configs; one event loop needs no shards
    cleanup_period: StrictStr = "1m"
    cleanup_threads: StrictInt = Field(default=0, ge=0)  # accepted, as num_shards
    max_clients: StrictInt = Field(default=DEFAULT_MAX_CLIENTS, ge=1)  # lambdagate's own

    @field_validator("client_max_rate", mode="before")
    @classmethod
    def _client_number(cls, value: Any) -> Any:
        return cls._number(value)

    @field_validator("strategy", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def cleanup_seconds(self) -> float:
        return max(1.0, parse_duration(self.cleanup_period))  # KrakenD's floor

    def client_bucket(self) -> tuple[float, int] | None:
        return _bucket(self.client_max_rate / self.period, self.client_capacity)


class RedisLimits(RouterLimits):
    """`qos/ratelimit/router/redis` and `qos/ratelimit/service/redis`: the same buckets, kept in Redis."""

    connection_pool: StrictStr = ""
    connection_name: StrictStr = ""  # KrakenD EE's older name for connection_pool
    on_failure: Literal["local", "deny"] = "local"

    @property
    def pool(self) -> str:
        return self.connection_pool or self.connection_name


def _bucket(rate: float, capacity: int) -> tuple[float, int] | None:
    if rate <= 0:
        return None
    return rate, capacity or max(1, math.floor(rate))  # KrakenD: the per-second rate, at least 1


def _check_durations(cfg: Rates, ctx: NamespaceContext, issues: list[tuple[str, str]]) -> None:
    fields = ("every", "cleanup_period") if isinstance(cfg, RouterLimits) else ("every",)
    for name in fields:
        try:
            if parse_duration(getattr(cfg, name)) < 1.0:
                ctx.warnings.append((name, f"{getattr(cfg, name)!r} is read as 1s, the shortest KrakenD allows"))
        except ValueError as exc:
            issues.append((name, str(exc)))


def _check_router(cfg: RouterLimits, ctx: NamespaceContext, issues: list[tuple[str, str]]) -> None:
    if cfg.max_rate == 0 and cfg.client_max_rate == 0:
        ctx.warnings.append(("", "neither max_rate nor client_max_rate is more than 0: nothing is limited"))
    if cfg.client_max_rate > 0 and cfg.strategy in ("header", "param") and not cfg.key.strip():
        name = "header" if cfg.strategy == "header" else "path parameter"
        issues.append(
            (
                "key",
                f'the "{cfg.strategy}" strategy needs the {name} to count by, e.g. "key": '
                f'"{"X-Api-Key" if cfg.strategy == "header" else "id"}"',
            )
        )
    if cfg.strategy == "header" and cfg.key.strip() and not TOKEN.fullmatch(cfg.key.strip()):
        issues.append(("key", f'{cfg.key[:60]!r} is no header name: write letters, digits and -, e.g. "X-Api-Key"'))
    if cfg.strategy == "param" and ctx.endpoint is None and cfg.client_max_rate > 0:
        issues.append(
            ("strategy", '"param" needs an endpoint\'s path parameters: use "ip" or "header" at service level')
        )
    if cfg.strategy == "param" and ctx.endpoint is not None and cfg.client_max_rate > 0:
        if "{" + cfg.key + "}" not in ctx.endpoint.endpoint:
            issues.append(("key", f"{cfg.key!r} is no parameter of {ctx.endpoint.endpoint!r}"))
    if cfg.strategy == "ip" and cfg.key and cfg.client_max_rate > 0:
        # KrakenD reads the client address from this header, which any client can write: not without trusted proxies.
        ctx.warnings.append(
            (
                "key",
                f"ignored: the client address is never read from the {cfg.key!r} header a client can forge; "
                "behind a proxy, set the router's forwarded_by_client_ip and trusted_proxies (or, to count by "
                'a header your load balancer sets, write "strategy": "header")',
            )
        )


def _check_pool(cfg: RedisLimits, ctx: NamespaceContext, issues: list[tuple[str, str]]) -> None:
    problem = pool_problem(ctx.service.extra_config, cfg.pool)
    if problem is not None:
        issues.append(("connection_pool", problem))


def _renamed(value: Any) -> Any:
    """KrakenD 1.x's juju limits wrote `maxRate` and `clientMaxRate`: read as the current fields, or the old names'
    limits would be off (each is read under any name: a config mixing names means the same)."""
    if not isinstance(value, dict) or not any(old in value for old in _OLD_FIELDS):
        return value
    renamed = dict(value)
    for old, new in _OLD_FIELDS.items():
        if old in renamed:
            if new in renamed:
                raise NamespaceError([(old, f"is the old name of {new}, which is given too: keep {new}")])
            renamed[new] = renamed.pop(old)
    return renamed


def _parse(model: type[Rates], value: Any, ctx: NamespaceContext) -> Any:
    value = _renamed(value)
    cfg = parse_namespace_model(
        model,
        value,
        ctx,
        _EXAMPLE,
        hints={
            "max_rate": _NUMBER,
            "client_max_rate": _NUMBER,
            "capacity": _COUNT,
            "client_capacity": _COUNT,
            "strategy": 'must be "ip", "header" or "param"',
            "on_failure": 'must be "local" or "deny"',
        },
    )
    issues: list[tuple[str, str]] = []
    _check_durations(cfg, ctx, issues)
    if isinstance(cfg, RouterLimits):
        _check_router(cfg, ctx, issues)
    if isinstance(cfg, RedisLimits):
        _check_pool(cfg, ctx, issues)
    if issues:
        raise NamespaceError(issues)
    return cfg


def parse_proxy(value: Any, ctx: NamespaceContext) -> Rates:
    cfg = _parse(Rates, value, ctx)
    if cfg.max_rate == 0:
        ctx.warnings.append(("max_rate", "is not more than 0: the backend is not limited"))
    return cfg


def parse_router(value: Any, ctx: NamespaceContext) -> RouterLimits:
    return _parse(RouterLimits, value, ctx)


def parse_redis_limits(value: Any, ctx: NamespaceContext) -> RedisLimits:
    return _parse(RedisLimits, value, ctx)


ROUTER_NAMESPACE = Namespace(ROUTER, "endpoint", parse_router, aliases=ROUTER_LEGACY)
SERVICE_NAMESPACE = Namespace(SERVICE, "service", parse_router)
PROXY_NAMESPACE = Namespace(PROXY, "backend", parse_proxy, aliases=PROXY_LEGACY)
ROUTER_REDIS_NAMESPACE = Namespace(ROUTER_REDIS, "endpoint", parse_redis_limits)
SERVICE_REDIS_NAMESPACE = Namespace(SERVICE_REDIS, "service", parse_redis_limits)
