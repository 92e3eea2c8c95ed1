"""`qos/http-cache` with `"connection_pool"`: cache entries kept in Redis too, so every worker and replica naming
the pool shares them. The worker's in-memory cache stays in front (an entry read from Redis is kept there until it
expires, as it would be in Redis); Redis only answers what memory does not have.

One entry is one Redis string, `lambdagate:http-cache:<sha256 of the key>`, holding a JSON header line (status,
headers, Vary values, public, expiry) and the body, set with its freshness as expiry (PX). A Redis that fails or
does not answer within the pool's read_timeout is left alone for RedisBackoff.RETRY_AFTER seconds: the cache is then per worker,
and the failure is logged once a minute.
"""

from __future__ import annotations

import hashlib
import logging
from time import monotonic, time
from typing import TYPE_CHECKING, Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from lambdagate.backends.http_cache import Entry
from lambdagate.redis_pools import RedisBackoff

if TYPE_CHECKING:
    import redis.asyncio

PREFIX = "lambdagate:http-cache:"
log = logging.getLogger("lambdagate.http_cache")


def redis_key(key: Any) -> str:
    """A cache key (a URL, or a Lambda key's parts) as a fixed-length Redis key."""
    parts = key if isinstance(key, tuple) else (key,)
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        digest.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: ("ab", "c") is not ("a", "bc")
    return PREFIX + digest.hexdigest()


def encode(entry: Entry, expires_at: float) -> bytes:
    headers = list(entry.headers.items()) if entry.headers is not None else None
    meta = {"s": entry.status, "h": headers, "v": entry.vary, "p": entry.public, "e": expires_at}
    return orjson.dumps(meta) + b"\n" + entry.body  # orjson writes no raw newline: the first one ends the header


def decode(raw: bytes, now_wall: float, now: float) -> Entry | None:
    """The entry, with its expiry on this process's monotonic clock; None when it is malformed or expired."""
    head, sep, body = raw.partition(b"\n")
    try:
        meta = orjson.loads(head)
        remaining = float(meta["e"]) - now_wall
        headers = None if meta["h"] is None else CIMultiDictProxy(CIMultiDict([(k, v) for k, v in meta["h"]]))
        vary = tuple((str(name), value) for name, value in meta["v"])
        entry = Entry(int(meta["s"]), headers, body, now + remaining, vary, bool(meta["p"]), len(raw) + 256)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return entry if sep and remaining > 0 else None


class RedisEntries:
    """The Redis side of a cache: `get` and `put` never raise; they do nothing while Redis is failing."""

    def __init__(self, client: redis.asyncio.Redis, pool_name: str) -> None:
        self.client, self.pool_name = client, pool_name
        self.backoff = RedisBackoff(log, "http cache", "the cache is per worker until it answers again", pool_name)

    async def get(self, key: Any) -> Entry | None:
        now = monotonic()
        if self.backoff.down(now):
            return None
        try:
            raw = await self.client.get(redis_key(key))
        except Exception as exc:  # any failure of Redis or its client: answer from the upstream instead
            self.backoff.failed(now, exc)
            return None
        return decode(raw, time(), monotonic()) if raw else None

    async def put(self, key: Any, entry: Entry) -> None:
        now = monotonic()
        if not self.backoff.down(now):
            ttl = entry.expires - now
            try:
                await self.client.set(redis_key(key), encode(entry, time() + ttl), px=max(1, int(ttl * 1000)))
            except Exception as exc:
                self.backoff.failed(now, exc)
