"""`qos/http-cache`: keep backends' GET replies in memory and answer from them while they are fresh.

```json
"extra_config": {"qos/http-cache": {"shared": false, "max_items": 1000, "max_size": 10485760}}
```
Read in a backend's extra_config, as KrakenD's krakend-httpcache (also under the old name
`github.com/devopsfaith/krakend-httpcache`, with a warning). The HTTP backend (backends/http.py) consults the cache
around its upstream call, where the reply's headers are visible; the Lambda backend (backends/lambda_.py) only
with `"cache_lambda": true`.

HTTP rules, as a shared cache (RFC 9111) that never revalidates: a reply is kept only when it says how long it is
fresh (`s-maxage`, `max-age` or `Expires`), has a status cacheable by default, and says neither `no-store`,
`no-cache` nor `private`; never with `Vary: *` or `Set-Cookie`; never when the request forwarded `Authorization` or
`Cookie`, unless the reply says `public`. `Vary` is honoured (one entry per URL, for the varying headers' values
it was fetched with). A forwarded request `Cache-Control: no-store` bypasses the cache; `no-cache` fetches anew.

Every cache is per worker process and bounded by entries (`max_items`) and bytes (`max_size`), the least recently
used dropped first; 0 (KrakenD's "unbounded") means the defaults below. `shared: true` backends with the same
bounds use one cache (keys hold the full URL), as KrakenD's global cache. With `"connection_pool"` (a pool of the
service's `redis` namespace) entries are kept in Redis too, shared by every replica (backends/http_cache_redis.py).

Lambda (`cache_lambda`): a successful reply is kept for `ttl` seconds (default 60; functions send no Cache-Control),
keyed by function and payload; for API Gateway payloads, which carry a request id and time, by function and what the
event is built from (method, path, params, query, headers, body, host, claims), not the client's address. Never for
a request carrying Authorization or Cookie, nor a reply that sets a cookie or says no-store, no-cache or private.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import monotonic, time
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from lambdagate.config.durations import SecondsOrDuration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import BackendConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.pipeline import BuildContext
from lambdagate.proxy import ProxyRequest, ProxyResponse
from lambdagate.redis_pools import NAMESPACE as REDIS
from lambdagate.redis_pools import client, pool_problem

if TYPE_CHECKING:
    from lambdagate.backends.http_cache_redis import RedisEntries

NAMESPACE = "qos/http-cache"
LEGACY_NAMES = ("github.com/devopsfaith/krakend-httpcache",)
DEFAULT_MAX_ITEMS = 1000
DEFAULT_MAX_SIZE = 16 * 1024 * 1024  # per backend (or shared cache), per worker
DEFAULT_LAMBDA_TTL = 60.0
# Statuses a cache may keep when the reply gives a freshness lifetime (RFC 9110 §15.1 "heuristically cacheable").
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# Request headers whose replies are private to the caller unless the reply says `public`.
CREDENTIALS = ("authorization", "cookie")
_ENTRY_OVERHEAD = 256  # bytes counted per entry for its key and bookkeeping, so tiny entries still count
_MAX_SECONDS = 366 * 24 * 3600.0
_EXAMPLE = '{"shared": false, "max_items": 1000, "max_size": 10485760}'


class HttpCacheConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    shared: StrictBool = False
    max_items: StrictInt = Field(default=0, ge=0, le=10_000_000)  # 0: DEFAULT_MAX_ITEMS
    max_size: StrictInt = Field(default=0, ge=0, le=2**40)  # bytes; 0: DEFAULT_MAX_SIZE
    cache_lambda: StrictBool = False
    ttl: SecondsOrDuration = Field(default=DEFAULT_LAMBDA_TTL, gt=0, le=_MAX_SECONDS)
    connection_pool: StrictStr = ""


def parse(value: Any, ctx: NamespaceContext) -> HttpCacheConfig:
    options = parse_namespace_model(
        HttpCacheConfig,
        value,
        ctx,
        _EXAMPLE,
        hints={
            "max_items": "must be a whole number >= 0 (0: the default, 1000), e.g. 1000",
            "max_size": "must be a whole number of bytes >= 0 (0: the default, 16 MiB), e.g. 10485760",
            "ttl": 'must be seconds > 0 or a duration such as "30s" (how long a Lambda reply is kept)',
        },
    )
    if options.connection_pool:
        problem = pool_problem(ctx.service.extra_config, options.connection_pool)
        if problem is not None:
            raise NamespaceError([("connection_pool", problem)])
    return options


HTTP_CACHE_NAMESPACE = Namespace(NAMESPACE, "backend", parse, aliases=LEGACY_NAMES)


@dataclass(slots=True)
class Entry:
    """A kept reply: what the backend decodes (status, headers, body), until `expires` (monotonic clock)."""

    status: int
    headers: Any
    body: bytes
    expires: float
    vary: tuple[tuple[str, str | None], ...]  # (request header, value it was fetched with)
    public: bool
    size: int


class LruCache:
    """Entries by key, at most `max_items` of them and `max_size` bytes, the least recently used dropped first."""

    def __init__(self, max_items: int, max_size: int) -> None:
        self.max_items, self.max_size = max_items, max_size
        self.size = 0
        self._entries: OrderedDict[Any, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Any, now: float) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: Any, entry: Entry) -> None:
        if entry.size > self.max_size:
            return
        self._drop(key)
        self._entries[key] = entry
        self.size += entry.size
        while len(self._entries) > self.max_items or self.size > self.max_size:
            _, dropped = self._entries.popitem(last=False)
            self.size -= dropped.size

    def _drop(self, key: Any) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old.size


def cache_control(values: list[str]) -> dict[str, str | None]:
    """`Cache-Control` directives (lower-case names) → their argument, None when they have none."""
    directives: dict[str, str | None] = {}
    for part in ",".join(values).split(","):
        name, eq, arg = part.partition("=")
        name = name.strip().lower()
        if name:
            directives[name] = arg.strip().strip('"') if eq else None
    return directives


def _seconds_arg(value: str | None) -> float | None:
    try:
        return float(int(value or ""))
    except ValueError:
        return None  # a malformed max-age makes the reply uncacheable (RFC 9111 §4.2.1: treat as stale)


def _http_date(value: str | None) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def freshness(headers: Any, directives: Mapping[str, str | None], now: float) -> float | None:
    """How many more seconds the reply is fresh for a shared cache, None when it gives no lifetime."""
    if "s-maxage" in directives:
        lifetime = _seconds_arg(directives["s-maxage"])
    elif "max-age" in directives:
        lifetime = _seconds_arg(directives["max-age"])
    elif "expires" in headers:
        expires = _http_date(headers.get("expires"))
        date = _http_date(headers.get("date")) or now
        lifetime = None if expires is None else expires - date
    else:
        return None
    if lifetime is None:
        return None
    age = _seconds_arg(headers.get("age")) if "age" in headers else 0.0
    return lifetime - (age or 0.0)


def _storable_for(status: int, headers: Any, authed: bool) -> tuple[float, bool] | None:
    """(seconds fresh, public) when a shared cache may keep this reply, else None."""
    if status not in CACHEABLE_STATUSES or "set-cookie" in headers:
        return None
    directives = cache_control(headers.getall("cache-control", []))
    if "no-store" in directives or "no-cache" in directives or "private" in directives:
        return None
    public = "public" in directives
    if authed and not public:
        return None
    ttl = freshness(headers, directives, time())
    return (ttl, public) if ttl is not None and ttl > 0 else None


def _vary(headers: Any) -> list[str] | None:
    names = [n.strip().lower() for v in headers.getall("vary", []) for n in v.split(",") if n.strip()]
    return None if "*" in names else names


class _TwoTier:
    """This worker's entries, in front of the replicas' shared ones in Redis when a `connection_pool` is set."""

    def __init__(self, store: LruCache, remote: RedisEntries | None) -> None:
        self.entries, self.remote = store, remote

    async def _fetch(self, key: Any) -> Entry | None:
        """The fresh entry: from memory, else from Redis (then kept in memory until it expires)."""
        entry = self.entries.get(key, monotonic())
        if entry is None and self.remote is not None:
            entry = await self.remote.get(key)
            if entry is not None:
                self.entries.put(key, entry)
        return entry

    async def _keep(self, key: Any, entry: Entry) -> None:
        self.entries.put(key, entry)
        if self.remote is not None:
            await self.remote.put(key, entry)


class ResponseCache(_TwoTier):
    """An HTTP backend's view of a cache: `lookup` before the upstream call, `store` after it."""

    async def lookup(self, key: str, request_headers: Mapping[str, str]) -> Entry | None:
        """A fresh entry this request may be answered with, else None (the caller fetches)."""
        if "cache-control" in request_headers or "pragma" in request_headers:
            directives = cache_control([request_headers.get("cache-control", ""), request_headers.get("pragma", "")])
            if "no-store" in directives or "no-cache" in directives or directives.get("max-age") == "0":
                return None
        entry = await self._fetch(key)
        if entry is None:
            return None
        if entry.vary and any(request_headers.get(name) != value for name, value in entry.vary):
            return None
        if not entry.public and _has_credentials(request_headers):
            return None
        return entry

    async def store(self, key: str, request_headers: Mapping[str, str], status: int, headers: Any, body: bytes) -> None:
        if "cache-control" in request_headers and "no-store" in cache_control([request_headers["cache-control"]]):
            return
        storable = _storable_for(status, headers, _has_credentials(request_headers))
        vary = _vary(headers) if storable else None
        if storable is None or vary is None:
            return
        ttl, public = storable
        kept = headers.copy()  # the reply's own headers outlive its connection
        size = len(body) + sum(len(k) + len(v) for k, v in kept.items()) + len(key) + _ENTRY_OVERHEAD
        varying = tuple((name, request_headers.get(name)) for name in vary)
        await self._keep(key, Entry(status, kept, body, monotonic() + ttl, varying, public, size))


def _has_credentials(headers: Mapping[str, str]) -> bool:
    return any(name in headers for name in CREDENTIALS)


def _store(options: HttpCacheConfig, ctx: BuildContext) -> LruCache:
    items = options.max_items or DEFAULT_MAX_ITEMS
    size = options.max_size or DEFAULT_MAX_SIZE
    if not options.shared:
        return LruCache(items, size)
    shared = ctx.resources.shared
    return shared.setdefault((NAMESPACE, items, size), LruCache(items, size))


def _remote(options: HttpCacheConfig, ctx: BuildContext) -> RedisEntries | None:
    if not options.connection_pool:
        return None
    from lambdagate.backends.http_cache_redis import RedisEntries  # imports redis only when a config uses it

    name = options.connection_pool
    return RedisEntries(client(ctx.resources, ctx.service.namespaces[REDIS], name), name)


def response_cache(cfg: BackendConfig, ctx: BuildContext, method: str) -> ResponseCache | None:
    """The HTTP backend's cache, when its config has one and it sends GET (only GET replies are kept)."""
    options: HttpCacheConfig | None = cfg.namespaces.get(NAMESPACE)
    if options is None or method != "GET":
        return None
    return ResponseCache(_store(options, ctx), _remote(options, ctx))


class LambdaCache(_TwoTier):
    """A Lambda backend's cache: a function's reply payload by function and request, for `ttl` seconds."""

    def __init__(
        self, store: LruCache, ttl: float, by_payload: bool, remote: RedisEntries | None = None, scope: str = ""
    ) -> None:
        super().__init__(store, remote)
        self.ttl, self.by_payload = ttl, by_payload
        self.scope = scope  # where the functions are (endpoint, region, qualifier): shared caches and Redis mix them

    def key(self, function: str, payload: bytes, req: ProxyRequest) -> tuple | None:
        """The cache key of this call, None when it must not be cached (the request carries credentials)."""
        if _has_credentials(req.headers):
            return None
        if self.by_payload:
            return ("lambda", self.scope, function, payload)
        # API Gateway events carry a request id and a time: key by what they are built from instead.
        request = [req.method, req.path, req.params, req.query, req.headers, req.host, req.scheme, req.claims]
        try:
            return ("lambda", self.scope, function, orjson.dumps(request, option=orjson.OPT_SORT_KEYS), req.body)
        except TypeError:  # claims orjson cannot write: not cached rather than keyed wrongly
            return None

    def keeps(self, resp: ProxyResponse) -> bool:
        """Whether a decoded reply may be kept: a success, and for a proxy reply no cookie set and no
        `Cache-Control` saying no-store, no-cache or private."""
        if not 200 <= resp.status < 300:
            return False
        names = [name.lower() for name, _ in resp.headers]
        if "set-cookie" in names:
            return False
        directives = cache_control([v for name, v in resp.headers if name.lower() == "cache-control"])
        return not ("no-store" in directives or "no-cache" in directives or "private" in directives)

    async def get(self, key: tuple) -> bytes | None:
        entry = await self._fetch(key)
        return None if entry is None else entry.body

    async def put(self, key: tuple, payload: bytes) -> None:
        size = len(payload) + sum(len(part) for part in key[1:]) + _ENTRY_OVERHEAD
        await self._keep(key, Entry(200, None, payload, monotonic() + self.ttl, (), False, size))


def lambda_cache(
    cfg: BackendConfig, ctx: BuildContext, method: str, by_payload: bool, scope: str
) -> LambdaCache | None:
    """The Lambda backend's cache, only with `cache_lambda: true` and a GET backend."""
    options: HttpCacheConfig | None = cfg.namespaces.get(NAMESPACE)
    if options is None or not options.cache_lambda or method != "GET":
        return None
    return LambdaCache(_store(options, ctx), options.ttl, by_payload, _remote(options, ctx), scope)
