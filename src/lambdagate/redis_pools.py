"""The service-level `redis` namespace: named Redis connection pools other features refer to (as KrakenD EE's).

```json
"extra_config": {"redis": {"connection_pools": [{"name": "shared", "address": "redis:6379", "db": 0}]}}
```
Each pool: `name`, `address` (`host:port`), `db` (or KrakenD's older `database`), `username`, `password`,
`client_name`, `pool_size` (connections per worker, default 64), `dial_timeout` and `read_timeout` (default 250ms:
a Redis that does not answer falls back quickly), and `tls` (`ca_certs`: one CA file, `client_certs`: one
certificate/private-key pair, `allow_insecure_connections`). `clusters` are read, but no feature uses them yet: a
limit naming one is refused. Clients are made once per worker and closed at shutdown.
"""

from __future__ import annotations

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


class PoolConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: StrictStr
    address: StrictStr
    db: StrictInt = Field(default=0, ge=0)
    database: StrictInt | None = Field(default=None, ge=0)
    username: StrictStr = ""
    password: StrictStr = Field(default="", repr=False)
    client_name: StrictStr = ""
    pool_size: StrictInt = Field(default=64, ge=1, le=10_000)
    dial_timeout: StrictStr = "250ms"
    read_timeout: StrictStr = "250ms"
    tls: PoolTLS | None = None

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: StrictStr
    addresses: list[StrictStr]


class RedisConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    connection_pools: list[PoolConfig] = Field(default_factory=list)
    clusters: list[ClusterConfig] = Field(default_factory=list)

    def pool(self, name: str) -> PoolConfig | None:
        return next((p for p in self.connection_pools if p.name == name), None)


def _check_pool(pool: PoolConfig, path: str, issues: list[tuple[str, str]]) -> None:
    host, _, port = pool.address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        issues.append((f"{path}.address", f'must be "host:port", e.g. "127.0.0.1:6379", got {pool.address!r}'))
    for name in ("dial_timeout", "read_timeout"):
        try:
            if parse_duration(getattr(pool, name)) <= 0:
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
        _check_pool(pool, f"connection_pools[{i}]", issues)
        if pool.database is not None:
            pool.db = pool.database
    if issues:
        raise NamespaceError(issues)
    return cfg


REDIS_NAMESPACE = Namespace(NAMESPACE, "service", parse)


def pool_problem(raw_service_extra: dict[str, Any], name: str) -> str | None:
    """Why `name` names no usable pool of the service's `redis` namespace (read raw: the service's namespaces may
    not be parsed yet), or None when it does."""
    if not name:
        return 'is missing: name one of the "redis" namespace\'s connection_pools'
    raw = raw_service_extra.get(NAMESPACE)
    pools = raw.get("connection_pools") if isinstance(raw, dict) else None
    clusters = raw.get("clusters") if isinstance(raw, dict) else None
    names = {p.get("name") for p in pools if isinstance(p, dict)} if isinstance(pools, list) else set()
    if name in names:
        return None
    if isinstance(clusters, list) and any(isinstance(c, dict) and c.get("name") == name for c in clusters):
        return f"{name!r} is a Redis cluster: clusters are not supported yet, name a connection pool"
    known = ", ".join(sorted(str(n) for n in names)) or "none is declared"
    return f'{name!r} is no connection pool of the service\'s "redis" namespace ({known})'


def client(resources: Resources, cfg: RedisConfig, name: str) -> redis.asyncio.Redis:
    """The worker's client for pool `name` (made once, shared, closed at shutdown)."""
    import redis.asyncio as aioredis  # imported only when a config uses Redis

    ident = (NAMESPACE, name)
    found = resources.shared.get(ident)
    if found is not None:
        return found
    pool = cfg.pool(name)
    assert pool is not None  # checked at load time
    host, port = pool.host_port()
    kwargs: dict[str, Any] = {}
    if pool.tls is not None:
        kwargs = {
            "connection_class": aioredis.SSLConnection,
            "ssl_cert_reqs": "none" if pool.tls.allow_insecure_connections else "required",
            "ssl_ca_certs": pool.tls.ca_certs[0] if pool.tls.ca_certs else None,
        }
        if pool.tls.client_certs:
            kwargs.update(
                ssl_certfile=pool.tls.client_certs[0].certificate, ssl_keyfile=pool.tls.client_certs[0].private_key
            )
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
    made = resources.shared[ident] = aioredis.Redis(connection_pool=connections)

    async def close() -> None:
        await made.aclose()
        await connections.disconnect()

    resources.on_close(close)
    return made
