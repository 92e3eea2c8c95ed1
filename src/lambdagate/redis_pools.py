"""The service-level `redis` namespace: named Redis connection pools other features refer to (as KrakenD EE's).

```json
"extra_config": {"redis": {"connection_pools": [{"name": "shared", "address": "redis:6379", "db": 0}]}}
```
Each pool: `name`, `address` (`host:port`), `db` (or KrakenD's older `database`), `username`, `password`,
`client_name`, `pool_size` (connections per worker, default 64), `dial_timeout` and `read_timeout` (default 250ms:
a Redis that does not answer falls back quickly), and `tls` (`ca_certs`: one CA file, `client_certs`: one
certificate/private-key pair, `allow_insecure_connections`). Each cluster (a Redis Cluster): `name`, `addresses` (any
of its nodes, `host:port`: the rest is learnt from them) and the same fields but `db` (a cluster has only db 0);
`pool_size` is then per node. A feature names a pool or a cluster alike. Clients are made once per worker and closed
at shutdown.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from lambdagate.config.durations import parse_duration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError

if TYPE_CHECKING:
    import redis.asyncio

    from lambdagate.backends import Resources

NAMESPACE = "redis"
_EXAMPLE = '{"connection_pools": [{"name": "shared", "address": "127.0.0.1:6379"}]}'


class ClientCert(BaseModel):
    certificate: StrictStr
    private_key: StrictStr


class PoolTLS(BaseModel):
    model_config = ConfigDict(extra="allow")

    ca_certs: list[StrictStr] = Field(default_factory=list, max_length=1)
    client_certs: list[ClientCert] = Field(default_factory=list, max_length=1)
    allow_insecure_connections: StrictBool = False


class _Connection(BaseModel):
    """What pools and clusters share: credentials, timeouts, TLS."""

    model_config = ConfigDict(extra="allow")

    name: StrictStr
    username: StrictStr = ""
    password: StrictStr = Field(default="", repr=False)
    client_name: StrictStr = ""
    pool_size: StrictInt = Field(default=64, ge=1, le=10_000)
    dial_timeout: StrictStr = "250ms"
    read_timeout: StrictStr = "250ms"
    tls: PoolTLS | None = None

    def tls_options(self, prefix: str) -> dict[str, Any]:
        """redis-py's TLS keyword arguments (`ssl_...`), with `prefix` before each (pools and clusters differ)."""
        if self.tls is None:
            return {}
        insecure = self.tls.allow_insecure_connections
        found: dict[str, Any] = {
            "ssl_cert_reqs": "none" if insecure else "required",
            "ssl_ca_certs": self.tls.ca_certs[0] if self.tls.ca_certs else None,
        }
        if self.tls.client_certs:
            found.update(
                ssl_certfile=self.tls.client_certs[0].certificate, ssl_keyfile=self.tls.client_certs[0].private_key
            )
        return {prefix + k: v for k, v in found.items()}


class PoolConfig(_Connection):
    address: StrictStr
    db: StrictInt = Field(default=0, ge=0)
    database: StrictInt | None = Field(default=None, ge=0)

    def host_port(self) -> tuple[str, int]:
        return host_port(self.address)


class ClusterConfig(_Connection):
    addresses: list[StrictStr] = Field(min_length=1)


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class RedisConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    connection_pools: list[PoolConfig] = Field(default_factory=list)
    clusters: list[ClusterConfig] = Field(default_factory=list)

    def pool(self, name: str) -> PoolConfig | None:
        return next((p for p in self.connection_pools if p.name == name), None)

    def cluster(self, name: str) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.name == name), None)


def _check_address(address: str, path: str, issues: list[tuple[str, str]]) -> None:
    host, _, port = address.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        issues.append((path, f'must be "host:port", e.g. "127.0.0.1:6379", got {address!r}'))


def _check_timeouts(conn: _Connection, path: str, issues: list[tuple[str, str]]) -> None:
    for name in ("dial_timeout", "read_timeout"):
        try:
            if parse_duration(getattr(conn, name)) <= 0:
                issues.append((f"{path}.{name}", 'must be more than 0, e.g. "250ms"'))
        except ValueError as exc:
            issues.append((f"{path}.{name}", str(exc)))


def parse(value: Any, ctx: NamespaceContext) -> RedisConfig:
    cfg = parse_namespace_model(
        RedisConfig,
        value,
        ctx,
        _EXAMPLE,
        hints={"connection_pools.tls.ca_certs": "give at most one CA file", "password": "must be a string"},
    )
    issues: list[tuple[str, str]] = []
    seen: set[str] = set()
    named = [(f"connection_pools[{i}]", p.name) for i, p in enumerate(cfg.connection_pools)]
    named += [(f"clusters[{i}]", c.name) for i, c in enumerate(cfg.clusters)]
    for path, name in named:
        if not name.strip():
            issues.append((f"{path}.name", "must not be empty"))
        elif name in seen:
            issues.append((f"{path}.name", f"{name!r} names another pool or cluster too: names must be unique"))
        seen.add(name)
    for i, pool in enumerate(cfg.connection_pools):
        _check_address(pool.address, f"connection_pools[{i}].address", issues)
        _check_timeouts(pool, f"connection_pools[{i}]", issues)
        if pool.database is not None:
            pool.db = pool.database
    for i, cluster in enumerate(cfg.clusters):
        for j, address in enumerate(cluster.addresses):
            _check_address(address, f"clusters[{i}].addresses[{j}]", issues)
        _check_timeouts(cluster, f"clusters[{i}]", issues)
    if issues:
        raise NamespaceError(issues)
    return cfg


REDIS_NAMESPACE = Namespace(NAMESPACE, "service", parse)


def pool_problem(raw_service_extra: dict[str, Any], name: str) -> str | None:
    """Why `name` names no pool or cluster of the service's `redis` namespace (read raw: the service's namespaces
    may not be parsed yet), or None when it does."""
    if not name:
        return 'is missing: name one of the "redis" namespace\'s connection_pools or clusters'
    raw = raw_service_extra.get(NAMESPACE)
    pools = raw.get("connection_pools") if isinstance(raw, dict) else None
    clusters = raw.get("clusters") if isinstance(raw, dict) else None
    declared = [*(pools if isinstance(pools, list) else []), *(clusters if isinstance(clusters, list) else [])]
    names = {str(p.get("name")) for p in declared if isinstance(p, dict)}
    if name in names:
        return None
    known = ", ".join(sorted(names)) or "none is declared"
    return f'{name!r} is no connection pool or cluster of the service\'s "redis" namespace ({known})'


def client(resources: Resources, cfg: RedisConfig, name: str) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
    """The worker's client for pool or cluster `name` (made once, shared, closed at shutdown)."""
    ident = (NAMESPACE, name)
    found = resources.shared.get(ident)
    if found is not None:
        return found
    cluster = cfg.cluster(name)
    made = resources.shared[ident] = _cluster_client(cluster) if cluster is not None else _pool_client(cfg, name)

    async def close() -> None:
        await made.aclose()
        if cluster is None:
            await made.connection_pool.disconnect()

    resources.on_close(close)
    return made


def _pool_client(cfg: RedisConfig, name: str) -> redis.asyncio.Redis:
    import redis.asyncio as aioredis  # imported only when a config uses Redis

    pool = cfg.pool(name)
    assert pool is not None  # checked at load time
    host, port = pool.host_port()
    kwargs = pool.tls_options("")
    if kwargs:
        kwargs["connection_class"] = aioredis.SSLConnection
    # A blocking pool waits (up to the read timeout) for a free connection instead of failing past pool_size.
    connections = aioredis.BlockingConnectionPool(
        host=host,
        port=port,
        db=pool.db,
        username=pool.username or None,
        password=pool.password or None,
        client_name=pool.client_name or None,
        max_connections=pool.pool_size,
        timeout=parse_duration(pool.read_timeout),
        socket_timeout=parse_duration(pool.read_timeout),
        socket_connect_timeout=parse_duration(pool.dial_timeout),
        **kwargs,
    )
    return aioredis.Redis(connection_pool=connections)


def _cluster_client(cluster: ClusterConfig) -> redis.asyncio.RedisCluster:
    """A cluster client: it learns the slots' nodes from any of `addresses` and follows MOVED/ASK redirections.
    `pool_size` bounds the connections to each node."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    kwargs = cluster.tls_options("")
    if kwargs:
        kwargs.update(ssl=True, ssl_check_hostname=not cluster.tls.allow_insecure_connections)
    return RedisCluster(
        startup_nodes=[ClusterNode(*host_port(address)) for address in cluster.addresses],
        username=cluster.username or None,
        password=cluster.password or None,
        client_name=cluster.client_name or None,
        max_connections=cluster.pool_size,
        socket_timeout=parse_duration(cluster.read_timeout),
        socket_connect_timeout=parse_duration(cluster.dial_timeout),
        # A failing node is given up on after one more attempt: the callers have their own fallbacks.
        retry=Retry(NoBackoff(), 1),
        **kwargs,
    )


class RedisBackoff:
    """A Redis user's failure rule: after a failure Redis is left alone for RETRY_AFTER seconds (a dead Redis costs no
    connect attempt per request), and the failure is logged at most once a minute, saying what happens meanwhile."""

    RETRY_AFTER = 1.0
    LOG_EVERY = 60.0

    def __init__(self, log: logging.Logger, what: str, meanwhile: str, pool_name: str) -> None:
        self.log, self.what, self.meanwhile, self.pool_name = log, what, meanwhile, pool_name
        self.down_until = 0.0
        self.logged = -self.LOG_EVERY

    def down(self, now: float) -> bool:
        return now < self.down_until

    def failed(self, now: float, exc: Exception) -> None:
        self.down_until = now + self.RETRY_AFTER
        if now - self.logged >= self.LOG_EVERY:
            self.logged = now
            self.log.warning(
                "%s: Redis pool %r failed (%s: %s); %s (logged once a minute)",
                self.what,
                self.pool_name,
                type(exc).__name__,
                str(exc)[:200],
                self.meanwhile,
            )
