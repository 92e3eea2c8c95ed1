"""Rate limits shared through a real redis-server (started here on a free loopback port, stopped at the end): two
gateway processes share one limit, and a Redis that dies mid-run falls back (local or deny) within a second."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

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
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
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
