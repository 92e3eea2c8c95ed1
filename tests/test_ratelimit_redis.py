"""Rate limits shared through a real redis-server (started here on a free loopback port, stopped at the end): two
gateway processes share one limit, and a Redis that dies mid-run falls back (local or deny) within a second."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lambdagate.ratelimit.shared import MAX_BATCH, SharedBuckets
from tests.support.procs import Process, free_port
from tests.test_ratelimit import get

REDIS_SERVER = shutil.which("redis-server")
if REDIS_SERVER is None and os.environ.get("CI"):
    raise RuntimeError("redis-server is missing in CI: `make install-test` installs it (Debian package redis-server)")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed (Debian package "
    "redis-server; `make install-test` installs it where apt-get works)",
)


class RedisServer:
    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = list(extra)
        self.process: Process | None = None

    def start(self) -> None:
        args = [
            REDIS_SERVER or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            *self.extra,
        ]
        self.process = Process(args, self.directory / f"redis-{self.port}.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start:\n{self.process.log()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def config(upstream: str, port: int, limit: dict) -> dict:
    pools = {"redis": {"connection_pools": [{"name": "shared", "address": f"127.0.0.1:{port}"}]}}
    return {
        "version": 3,
        "timeout": "2s",
        "extra_config": pools,
        "endpoints": [
            {
                "endpoint": "/a",
                "backend": [{"host": [upstream], "url_pattern": "/json/a"}],
                "extra_config": {"qos/ratelimit/router/redis": {"connection_pool": "shared", **limit}},
            }
        ],
    }


def test_two_gateways_share_one_limit(start_gateway, upstream: str, redis_server: RedisServer) -> None:
    doc = config(upstream, redis_server.port, {"max_rate": 2, "capacity": 10})
    first, second = start_gateway(doc, name="one.json"), start_gateway(doc, name="two.json")
    urls = [first.url + "/a", second.url + "/a"] * 20
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda url: get(url)[0], urls))
    elapsed = time.monotonic() - started
    admitted = codes.count(200)
    # Local buckets would admit 10 on each; together they admit the capacity plus what refilled meanwhile.
    assert 10 <= admitted <= 10 + 2 * elapsed + 1, (admitted, elapsed, codes)
    assert set(codes) == {200, 503}
    assert get(first.url + "/a")[0] == 503 and get(second.url + "/a")[0] == 503


def test_client_buckets_are_shared_too(start_gateway, upstream: str, redis_server: RedisServer) -> None:
    doc = config(
        upstream,
        redis_server.port,
        {"client_max_rate": 0.1, "client_capacity": 2, "strategy": "header", "key": "X-Key"},
    )
    first, second = start_gateway(doc, name="one.json"), start_gateway(doc, name="two.json")
    codes = [get(gw.url + "/a", {"X-Key": "me"})[0] for gw in (first, second, first, second)]
    assert codes == [200, 200, 429, 429]
    assert get(second.url + "/a", {"X-Key": "you"})[0] == 200


def refused_within(url: str, seconds: float, expected: int) -> float:
    """How long until `url` answers `expected`; fails past `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if get(url)[0] == expected:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{url} did not answer {expected} within {seconds}s")


def test_redis_killed_falls_back_to_the_local_limit_within_a_second(
    start_gateway, upstream: str, redis_server: RedisServer
) -> None:
    gw = start_gateway(config(upstream, redis_server.port, {"max_rate": 0.5, "capacity": 2}))
    assert [get(gw.url + "/a")[0] for _ in range(3)] == [200, 200, 503]  # the shared bucket is spent
    redis_server.stop()
    started = time.monotonic()
    assert get(gw.url + "/a")[0] == 200  # the local bucket is full: it admits its own capacity
    assert time.monotonic() - started < 1.0
    assert [get(gw.url + "/a")[0] for _ in range(2)] == [200, 503]  # and limits as configured
    assert "Redis pool 'shared' failed" in gw.log()


def test_redis_killed_with_deny_refuses_within_a_second(
    start_gateway, upstream: str, redis_server: RedisServer
) -> None:
    gw = start_gateway(config(upstream, redis_server.port, {"max_rate": 100, "on_failure": "deny"}))
    assert get(gw.url + "/a")[0] == 200
    redis_server.stop()
    assert refused_within(gw.url + "/a", 1.0, 503) < 1.0
    assert get(gw.url + "/a")[1] == {"error": "service unavailable: rate limit reached"}


def test_service_limit_in_redis_spans_endpoints_and_gateways(
    start_gateway, upstream: str, redis_server: RedisServer
) -> None:
    doc = config(upstream, redis_server.port, {"max_rate": 1000})
    doc["endpoints"][0]["extra_config"] = {}
    doc["endpoints"].append({"endpoint": "/b", "backend": [{"host": [upstream], "url_pattern": "/json/b"}]})
    doc["extra_config"]["qos/ratelimit/service/redis"] = {
        "connection_pool": "shared",
        "client_max_rate": 0.1,
        "client_capacity": 3,
    }
    first, second = start_gateway(doc, name="one.json"), start_gateway(doc, name="two.json")
    codes = [
        get(first.url + "/a")[0],
        get(second.url + "/b")[0],
        get(first.url + "/nope")[0],
        get(second.url + "/a")[0],
        get(first.url + "/b")[0],
    ]
    assert codes == [200, 200, 404, 200, 429]  # one client (127.0.0.1), three tokens across both gateways
    assert get(first.url + "/__health")[0] == 200


# Auto-pipelining (ratelimit.shared): concurrent takes share round trips, each caller gets its own reply.


def pool_client(port: int, *, cluster: bool = False):
    """A client made as redis_pools.client makes it for a pool (or a cluster) with the default timeouts (in a running
    loop)."""
    import aiohttp

    from lambdagate.backends import Resources
    from lambdagate.redis_pools import RedisConfig, client

    address = f"127.0.0.1:{port}"
    declared = {"clusters": [{"name": "p", "addresses": [address]}]} if cluster else {}
    declared = declared or {"connection_pools": [{"name": "p", "address": address}]}
    cfg = RedisConfig.model_validate(declared)
    resources = Resources(session=aiohttp.ClientSession())
    return client(resources, cfg, "p"), resources


class CountingBuckets(SharedBuckets):
    """SharedBuckets that records the size of every batch it sends."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.batches: list[int] = []

    async def run(self, batch):
        self.batches.append(len(batch))
        return await super().run(batch)


def test_concurrent_takes_get_their_own_replies(redis_server: RedisServer) -> None:
    async def main() -> tuple[list, list[int]]:
        redis, resources = pool_client(redis_server.port)
        buckets = CountingBuckets(redis, "p")
        # Caller i's last bucket is empty and refills one token in i + 1 seconds; before it come i % 3 full ones.
        for i in range(300):
            assert await buckets.take([f"empty:{i}"], [1 / (i + 1), 1]) == (0, 0.0)
        buckets.batches.clear()
        calls = [
            ([f"full:{i}:{j}" for j in range(i % 3)] + [f"empty:{i}"], [1000, 1000] * (i % 3) + [1 / (i + 1), 1])
            for i in range(300)
        ]
        replies = await asyncio.gather(*(buckets.take(keys, args) for keys, args in calls))
        await resources.close()
        return replies, buckets.batches

    replies, batches = asyncio.run(asyncio.wait_for(main(), 30))
    for i, reply in enumerate(replies):
        assert reply is not None, i
        index, wait = reply
        assert index == i % 3 + 1, (i, reply)
        assert i + 0.5 < wait <= i + 1, (i, reply)
    assert sum(batches) == 300 and max(batches) == MAX_BATCH and len(batches) == 2, batches  # 256 + 44


def test_redis_hanging_mid_pipeline_fails_every_caller_within_a_second(redis_server: RedisServer) -> None:
    async def main() -> tuple[list, float, list[int], object]:
        redis, resources = pool_client(redis_server.port)
        buckets = CountingBuckets(redis, "p")
        assert await buckets.take(["k"], [1000, 1000]) == (0, 0.0)
        assert redis_server.process is not None
        os.kill(redis_server.process.proc.pid, signal.SIGSTOP)  # the pipeline is sent, no reply ever comes
        try:
            started = time.monotonic()
            replies = await asyncio.gather(*(buckets.take([f"k{i}"], [1000, 1000]) for i in range(50)))
            elapsed = time.monotonic() - started
        finally:
            os.kill(redis_server.process.proc.pid, signal.SIGCONT)
        after = await buckets.take(["k"], [1000, 1000])  # within RETRY_AFTER: not even tried
        await resources.close()
        return replies, elapsed, buckets.batches, after

    replies, elapsed, batches, after = asyncio.run(asyncio.wait_for(main(), 30))
    assert replies == [None] * 50 and elapsed < 1.0, (replies, elapsed)
    assert batches == [1, 50] and after is None


def test_pipelined_takes_reload_a_flushed_script(redis_server: RedisServer) -> None:
    async def main() -> list:
        redis, resources = pool_client(redis_server.port)
        buckets = SharedBuckets(redis, "p")
        assert await buckets.take(["k"], [1000, 1000]) == (0, 0.0)
        await redis.script_flush()  # as after a Redis restart: the next EVALSHAs get NOSCRIPT
        replies = await asyncio.gather(*(buckets.take([f"k{i}"], [1, 2]) for i in range(3) for _ in range(3)))
        await resources.close()
        return replies

    replies = asyncio.run(asyncio.wait_for(main(), 30))
    # Three takes from each of three buckets of capacity 2: two tokens each, then a wait of about a second.
    assert sorted(r[0] for r in replies) == [0] * 6 + [1] * 3, replies
    assert all(0.9 < r[1] <= 1.0 for r in replies if r[0]), replies
