"""Token buckets kept in Redis, shared by every worker and replica that names the same connection pool.

One round trip per request: a Lua script takes a token from each of the request's buckets (the client's, then the
endpoint's) atomically, with Redis's own clock (replicas' clocks may differ). It is sent by EVALSHA (redis-py loads it
once). The arithmetic is ratelimit.buckets' own, so the local fallback limits the same way.

When Redis fails (refused, timed out, an error reply), the request is decided by the fallback the caller gives (the
local buckets, or a refusal), and Redis is left alone for `RETRY_AFTER` seconds so that a dead Redis costs no
connect attempt per request. The failure is logged once per minute.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger("lambdagate.ratelimit")

RETRY_AFTER = 1.0  # seconds without trying Redis after a failure
_LOG_EVERY = 60.0
# KEYS: bucket keys, in the order they are taken. ARGV: rate (tokens/s) and capacity of each. Returns {0, 0} when
# every bucket gave a token, else {i, ms}: bucket i had none, and one comes in ms milliseconds. The buckets before i
# keep their token taken, as KrakenD's client-then-endpoint check does.
SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local cap = tonumber(ARGV[2 * i])
  local v = redis.call('HMGET', key, 't', 's')
  local tokens, stamp = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or stamp == nil then
    tokens, stamp = cap, now
  end
  if now > stamp then
    tokens = math.min(cap, tokens + (now - stamp) * rate)
    stamp = now
  end
  if tokens < 1 then
    return {i, math.ceil((1 - tokens) / rate * 1000)}
  end
  redis.call('HSET', key, 't', string.format('%.17g', tokens - 1), 's', string.format('%.6f', stamp))
  redis.call('PEXPIRE', key, math.ceil(cap / rate * 1000) + 1000)
end
return {0, 0}
"""


class SharedBuckets:
    """The Redis side of one connection pool's limits; `take` returns None when Redis could not answer."""

    def __init__(self, client: redis.asyncio.Redis, pool_name: str) -> None:
        self.script = client.register_script(SCRIPT)
        self.pool_name = pool_name
        self.down_until = 0.0
        self.logged = -_LOG_EVERY

    async def take(self, keys: Sequence[str], args: Sequence[float]) -> tuple[int, float] | None:
        """(0, 0.0) when every bucket gave a token; (i, seconds) when bucket i (1-based) had none; None on failure."""
        now = time.monotonic()
        if now < self.down_until:
            return None
        try:
            index, ms = await self.script(keys=keys, args=args)
        except Exception as exc:
            self.failed(now, exc)
            return None
        return int(index), int(ms) / 1000.0

    def failed(self, now: float, exc: Exception) -> None:
        self.down_until = now + RETRY_AFTER
        if now - self.logged >= _LOG_EVERY:
            self.logged = now
            log.warning(
                "rate limit: Redis pool %r failed (%s: %s); limits fall back to their on_failure setting "
                "(logged once a minute)",
                self.pool_name,
                type(exc).__name__,
                str(exc)[:200],
            )


def retry_seconds(wait: float) -> int:
    """A wait as Retry-After writes it: whole seconds, at least 1."""
    return max(1, math.ceil(wait))
