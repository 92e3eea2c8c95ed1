"""Rate limits: `qos/ratelimit/router` (an endpoint's), `qos/ratelimit/service` (every endpoint's together),
`qos/ratelimit/proxy` (a backend's), and the `/redis` variants whose buckets every replica shares.

An endpoint or service limit has an endpoint-wide bucket (`max_rate`: refused with 503) and one bucket per client
(`client_max_rate`: refused with 429), the client named by its address (`ip`), a header or a path parameter. As in
KrakenD, the client's bucket is checked first. Refusals carry `Retry-After` and the IETF `RateLimit-Policy` and
`RateLimit` headers (draft-ietf-httpapi-ratelimit-headers), which KrakenD does not send.

Local buckets live in each worker process: with `--workers N`, a replica admits up to N times a local limit. The
Redis variants are exact across workers and replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from lambdagate.errors import retry_seconds
from lambdagate.front import Exchange, Handler, Reply, Step
from lambdagate.pipeline.render import json_reply
from lambdagate.ratelimit.buckets import ClientBuckets, TokenBucket, client_key
from lambdagate.ratelimit.config import RedisLimits, RouterLimits
from lambdagate.ratelimit.shared import SharedBuckets

ENDPOINT_REFUSED = {"error": "service unavailable: rate limit reached"}
CLIENT_REFUSED = {"error": "too many requests"}


def key_reader(cfg: RouterLimits) -> Callable[[Exchange], str]:
    """How a request names its client. `header` reads the header as the guards before the limit left it, as
    KrakenD's limiter reads the request after krakend-jose set its propagated claims: a claim counts, not the
    client's own value. `ip` is `Exchange.client_ip`: the connection's address, or the one the router's
    `forwarded_by_client_ip` read from a `trusted_proxies` peer's header; the `key` header is never read for it,
    since any client can write it."""
    if cfg.strategy == "header":
        wanted = cfg.key.strip().lower()

        def header(ex: Exchange) -> str:
            return ex.header(wanted)

        return header
    if cfg.strategy == "param":
        name = cfg.key

        def param(ex: Exchange) -> str:
            return (ex.params or {}).get(name, "")

        return param
    return lambda ex: ex.client_ip


def _policy(name: str, max_rate: float, period: float) -> bytes:
    quota = max(1, int(max_rate))
    return f'"{name}";q={quota};w={max(1, round(period))}'.encode()


@dataclass
class Refusal:
    """One limit's refusal: its status, body and policy header, fixed at start-up."""

    status: int
    payload: dict
    name: str
    policy: bytes

    def reply(self, wait: float) -> Reply:
        seconds = retry_seconds(wait)
        return json_reply(
            self.status,
            self.payload,
            [
                (b"retry-after", str(seconds).encode()),
                (b"ratelimit-policy", self.policy),
                (b"ratelimit", f'"{self.name}";r=0;t={seconds}'.encode()),
            ],
        )


class Limiter:
    """One limit block (router or service): an endpoint-wide bucket, client buckets, or both."""

    def __init__(self, cfg: RouterLimits) -> None:
        self.read_key = key_reader(cfg)
        endpoint, client = cfg.bucket(), cfg.client_bucket()
        self.endpoint = TokenBucket(*endpoint) if endpoint else None
        self.clients = ClientBuckets(*client, cfg.max_clients, cfg.cleanup_seconds) if client else None
        self.endpoint_refusal = Refusal(
            503, ENDPOINT_REFUSED, "endpoint", _policy("endpoint", cfg.max_rate, cfg.period)
        )
        self.client_refusal = Refusal(429, CLIENT_REFUSED, "client", _policy("client", cfg.client_max_rate, cfg.period))

    async def check(self, ex: Exchange) -> Reply | None:
        """None when the request may go on, else the refusal."""
        now = time.monotonic()
        if self.clients is not None:
            key = self.read_key(ex)
            if not key:  # KrakenD: a request without the client's key is refused
                return self.client_refusal.reply(1.0 / self.clients.rate)
            wait = self.clients.take(client_key(key), now)
            if wait:
                return self.client_refusal.reply(wait)
        if self.endpoint is not None:
            wait = self.endpoint.take(now)
            if wait:
                return self.endpoint_refusal.reply(wait)
        return None


class SharedLimiter(Limiter):
    """A `/redis` limit block: the buckets live in Redis under `prefix`; this worker's own (the Limiter's) are the
    fallback when Redis fails and `on_failure` is "local"."""

    def __init__(self, cfg: RedisLimits, shared: SharedBuckets, prefix: str) -> None:
        super().__init__(cfg)
        self.shared = shared
        self.deny = cfg.on_failure == "deny"
        # Hash tags (`{...}`): a script's keys must share one hash slot in a Redis Cluster. With an endpoint-wide
        # bucket every key of the limit shares its slot; without one, each client's key is its own tag, so the
        # clients spread over the cluster. Braces in the prefix (an endpoint's `{param}`) are escaped so that
        # they cannot end the tag.
        prefix = prefix.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
        self.endpoint_key = "{" + prefix + "}:endpoint"
        self.client_tagged = self.endpoint is None
        self.client_prefix = prefix + ":client:{" if self.client_tagged else "{" + prefix + "}:client:"
        self.endpoint_args = tuple(cfg.bucket() or ())
        self.client_args = tuple(cfg.client_bucket() or ())

    async def check(self, ex: Exchange) -> Reply | None:
        keys: list[str] = []
        args: list[float] = []
        if self.clients is not None:
            key = self.read_key(ex)
            if not key:
                return self.client_refusal.reply(1.0 / self.clients.rate)
            keys.append(self.client_prefix + client_key(key) + ("}" if self.client_tagged else ""))
            args.extend(self.client_args)
        if self.endpoint is not None:
            keys.append(self.endpoint_key)
            args.extend(self.endpoint_args)
        taken = await self.shared.take(keys, args)
        if taken is None:
            return self.endpoint_refusal.reply(1.0) if self.deny else await super().check(ex)
        index, wait = taken
        if index == 0:
            return None
        refused_client = self.clients is not None and index == 1
        return (self.client_refusal if refused_client else self.endpoint_refusal).reply(wait)


def limiting(limiters: list[Limiter]) -> Step:
    """The guard step: each limiter in turn may refuse the request."""

    def step(handler: Handler) -> Handler:
        async def guard(ex: Exchange) -> Reply:
            for limiter in limiters:
                refused = await limiter.check(ex)
                if refused is not None:
                    return refused
            return await handler(ex)

        return guard

    return step
