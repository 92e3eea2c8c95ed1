"""Token buckets in this worker's memory: one per limit, and a bounded table of them per client.

A bucket starts full (`capacity` tokens), refills at `rate` tokens a second up to `capacity`, and a request takes one
token or is refused; the refusal says how long until the next token. As KrakenD's buckets, but refilled continuously
rather than in whole intervals (the same admissions over any whole number of intervals). The Redis script
(ratelimit.shared) runs the same arithmetic, so a local fallback limits as the shared bucket did.
"""

from __future__ import annotations

import hashlib
import time

# A client key longer than this is kept as its digest: a header value of kilobytes costs no more than a short one.
_MAX_KEY = 128
# A full table is swept at most this often (seconds): sweeping on each new key of a flood would cost O(n) each.
_FULL_SWEEP_GAP = 1.0


class TokenBucket:
    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: int, now: float | None = None) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float) -> float:
        """0.0 when a token was taken; otherwise the seconds until one will be there."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate

    def full(self, now: float) -> bool:
        """Refilled to capacity: the same as a new bucket, so it can be forgotten."""
        return self.tokens + (now - self.stamp) * self.rate >= self.capacity


def client_key(value: str) -> str:
    if len(value) <= _MAX_KEY:
        return value
    return "#" + hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


class ClientBuckets:
    """One bucket per client key, at most `max_clients` of them.

    Idle clients (whose bucket has refilled, so forgetting it changes nothing) are swept every `cleanup_period`
    seconds, inline on a request (no task to manage), and also when the table is full. When it is still full, a new
    client is refused rather than an active client's bucket dropped: dropping one would hand that client a full
    bucket, so a flood of new keys could reset the limit of anyone.
    """

    def __init__(self, rate: float, capacity: int, max_clients: int, cleanup_period: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.max_clients = max_clients
        self.cleanup_period = cleanup_period
        self.buckets: dict[str, TokenBucket] = {}
        self.next_sweep = time.monotonic() + cleanup_period
        self.swept = 0.0

    def take(self, key: str, now: float) -> float:
        """As TokenBucket.take for this client; a new client past the table's bound waits a refill interval."""
        if now >= self.next_sweep:
            self.sweep(now)
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_clients:
                if now >= self.swept + _FULL_SWEEP_GAP:
                    self.sweep(now)
                if len(self.buckets) >= self.max_clients:
                    return 1.0 / self.rate
            bucket = self.buckets[key] = TokenBucket(self.rate, self.capacity, now)
        return bucket.take(now)

    def sweep(self, now: float) -> None:
        self.next_sweep = now + self.cleanup_period
        self.swept = now
        idle = [key for key, bucket in self.buckets.items() if bucket.full(now)]
        for key in idle:
            del self.buckets[key]
