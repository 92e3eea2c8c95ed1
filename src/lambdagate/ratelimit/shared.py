"""Token buckets kept in Redis, shared by every worker and replica that names the same connection pool.

At most one round trip per request: a Lua script takes a token from each of the request's buckets (the client's,
then the endpoint's) atomically, with Redis's own clock (replicas' clocks may differ). It is sent by EVALSHA (loaded
on the first NOSCRIPT reply). The arithmetic is ratelimit.buckets' own, so the local fallback limits the same way.

Auto-pipelining: the takes issued in one event-loop iteration are sent together as one pipeline (no MULTI: each
EVALSHA is atomic on its own, and the others' order among them does not matter), and each caller awaits its own
reply. Under load, many requests then share one round trip and one connection; a lone request is sent at once.
A pipeline that fails (refused, timed out) fails every take in it, each into its caller's fallback. In a Redis
Cluster (which redis-py does not let run scripts in a pipeline) the batch's calls are sent concurrently instead.

When Redis fails (refused, timed out, an error reply), the request is decided by the fallback the caller gives (the
local buckets, or a refusal), and Redis is left alone for `RedisBackoff.RETRY_AFTER` seconds so that a dead Redis costs no
connect attempt per request. The failure is logged once per minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from lambdagate.redis_pools import RedisBackoff

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger("lambdagate.ratelimit")

# Takes sent in one pipeline at most: a bigger batch is split, so no reply list (or Redis's output buffer) grows
# with the number of requests in flight.
MAX_BATCH = 256
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


# A take's reply: the script's (index, ms) pair, or the exception that failed it.
_Reply = tuple[int, float] | Exception
_Pending = tuple[Sequence[str], Sequence[float], "asyncio.Future[_Reply]"]


class SharedBuckets:
    """The Redis side of one connection pool's limits; `take` returns None when Redis could not answer."""

    def __init__(self, client: redis.asyncio.Redis | redis.asyncio.RedisCluster, pool_name: str) -> None:
        self.client = client
        self.script = client.register_script(SCRIPT)
        self.cluster = hasattr(client, "get_node_from_key")  # a redis.asyncio.RedisCluster
        self.pool_name = pool_name
        self.backoff = RedisBackoff(log, "rate limit", "limits fall back to their on_failure setting", pool_name)
        self.pending: list[_Pending] = []
        self.flushes: set[asyncio.Task] = set()  # held so that a running flush is not garbage-collected

    async def take(self, keys: Sequence[str], args: Sequence[float]) -> tuple[int, float] | None:
        """(0, 0.0) when every bucket gave a token; (i, seconds) when bucket i (1-based) had none; None on failure."""
        now = time.monotonic()
        if self.backoff.down(now):
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Reply] = loop.create_future()
        if not self.pending:  # the task's first step runs after every callback already ready in this iteration
            self.spawn(self.flush())
        self.pending.append((keys, args, future))
        reply = await future
        if isinstance(reply, Exception):
            self.failed(now, reply)
            return None
        return reply

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.flushes.add(task)
        task.add_done_callback(self.flushes.discard)

    async def flush(self) -> None:
        """Send what this iteration collected, MAX_BATCH takes a pipeline."""
        batch, self.pending = self.pending, []
        for start in range(MAX_BATCH, len(batch), MAX_BATCH):
            self.spawn(self.send(batch[start : start + MAX_BATCH]))
        await self.send(batch[:MAX_BATCH])

    async def send(self, batch: list[_Pending]) -> None:
        """Answer every take of `batch`, whatever happens (a cancelled caller's future is skipped)."""
        try:
            replies = await self.run(batch)
        except Exception as exc:  # the connection or the pipeline failed: so did every take in it
            replies = [exc] * len(batch)
        except BaseException as exc:  # cancelled (shutdown): nobody may be left waiting
            replies = [ConnectionError(f"cancelled: {exc!r}")] * len(batch)
            raise
        finally:
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(reply)

    async def run(self, batch: list[_Pending]) -> list[_Reply]:
        from redis.exceptions import NoScriptError  # redis is imported only when a config uses it

        if len(batch) == 1:  # nothing to share the trip with: the script object's own EVALSHA, loading on NOSCRIPT
            keys, args, _ = batch[0]
            return [_reply(await self.script(keys=keys, args=args))]
        if self.cluster:  # redis-py refuses EVALSHA in a cluster pipeline: one call each, sent concurrently
            results = await asyncio.gather(*(self.script(keys=k, args=a) for k, a, _ in batch), return_exceptions=True)
            return [r if isinstance(r, Exception) else _reply(r) for r in results]
        pipe = self.client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self.script.sha, len(keys), *keys, *args)
        results = await pipe.execute(raise_on_error=False)
        replies: list[_Reply] = []
        for (keys, args, _), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                try:  # Redis lost its scripts (a restart, SCRIPT FLUSH): this call loads it again
                    result = await self.script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            replies.append(result if isinstance(result, Exception) else _reply(result))
        return replies

    def failed(self, now: float, exc: Exception) -> None:
        self.backoff.failed(now, exc)


def _reply(result: Sequence) -> tuple[int, float]:
    index, ms = result
    return int(index), int(ms) / 1000.0
