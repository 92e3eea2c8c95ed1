"""Rate limits and the HTTP cache through a real Redis Cluster: three cluster-enabled redis-servers on free loopback
ports, joined by `redis-cli --cluster create`, stopped at the end. A limit names the cluster as it names a pool; its
keys share a hash slot (hash tags), and concurrent takes are sent concurrently."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lambdagate.ratelimit.shared import SharedBuckets
from tests.support.procs import free_port
from tests.test_ratelimit import get
from tests.test_ratelimit_redis import REDIS_SERVER, RedisServer

REDIS_CLI = shutil.which("redis-cli")
if (REDIS_SERVER is None or REDIS_CLI is None) and os.environ.get("CI"):
    raise RuntimeError("redis-server/redis-cli missing in CI: `make install-test` installs them (Debian redis-server)")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None,
    reason="redis-server or redis-cli is not installed (Debian packages redis-server, redis-tools)",
)


class Cluster:
    """Three primaries, no replicas, every slot covered."""

    def __init__(self, directory: Path) -> None:
        # The bus port is given too: its default (the port + 10000) may be taken, or past 65535.
        cluster = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
        self.nodes = [
            RedisServer(directory, *cluster, "--cluster-config-file", f"nodes-{i}.conf", "--cluster-port", str(bus))
            for i, bus in enumerate(free_port() for _ in range(3))
        ]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = [REDIS_CLI or "redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        subprocess.run([*create, "--cluster-yes"], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # every node must know every slot before the test starts
            if all("cluster_state:ok" in self.cli(node.port, "cluster", "info") for node in self.nodes):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis cluster did not come up")

    def cli(self, port: int, *command: str) -> str:
        done = subprocess.run(
            [REDIS_CLI or "redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def keys_per_node(self) -> list[int]:
        return [int(self.cli(node.port, "dbsize").strip() or 0) for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path)
    try:
        made.start()
        yield made
    finally:
        made.stop()


def config(upstream: str, cluster: Cluster, limit: dict) -> dict:
    addresses = [f"127.0.0.1:{cluster.nodes[0].port}"]  # one node is enough: the client learns the others
    return {
        "version": 3,
        "timeout": "2s",
        "extra_config": {"redis": {"clusters": [{"name": "shared", "addresses": addresses}]}},
        "endpoints": [
            {
                "endpoint": "/a/{id}",
                "backend": [{"host": [upstream], "url_pattern": "/json/a"}],
                "extra_config": {"qos/ratelimit/router/redis": {"connection_pool": "shared", **limit}},
            }
        ],
    }


def test_two_gateways_share_one_limit_in_a_cluster(start_gateway, upstream: str, cluster: Cluster) -> None:
    # An endpoint-wide and a per-client bucket: both keys of the script are in one slot.
    limit = {"max_rate": 2, "capacity": 10, "client_max_rate": 100, "strategy": "header", "key": "X-Key"}
    doc = config(upstream, cluster, limit)
    first, second = start_gateway(doc, name="one.json"), start_gateway(doc, name="two.json")
    urls = [first.url + "/a/1", second.url + "/a/2"] * 20
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda url: get(url, {"X-Key": url[-1]})[0], urls))
    elapsed = time.monotonic() - started
    admitted = codes.count(200)
    assert 10 <= admitted <= 10 + 2 * elapsed + 1, (admitted, elapsed, codes)
    assert set(codes) == {200, 503}
    assert "failed" not in first.log() + second.log()  # no fallback to the local buckets
    assert sum(cluster.keys_per_node()) == 3  # the endpoint's bucket and two clients'


def test_client_buckets_spread_over_the_cluster(start_gateway, upstream: str, cluster: Cluster) -> None:
    limit = {"client_max_rate": 0.1, "client_capacity": 2, "strategy": "header", "key": "X-Key"}
    gw = start_gateway(config(upstream, cluster, limit))
    codes = [get(gw.url + "/a/1", {"X-Key": "me"})[0] for _ in range(3)]
    assert codes == [200, 200, 429]
    assert all(get(gw.url + "/a/1", {"X-Key": f"client-{i}"})[0] == 200 for i in range(30))
    per_node = cluster.keys_per_node()
    assert sum(per_node) == 31 and min(per_node) > 0, per_node  # each client's key is its own hash tag
    assert "failed" not in gw.log()


def test_cluster_down_falls_back_to_the_local_limit_within_a_second(
    start_gateway, upstream: str, cluster: Cluster
) -> None:
    gw = start_gateway(config(upstream, cluster, {"max_rate": 0.5, "capacity": 2}))
    assert [get(gw.url + "/a/1")[0] for _ in range(3)] == [200, 200, 503]  # the shared bucket is spent
    cluster.stop()
    started = time.monotonic()
    assert get(gw.url + "/a/1")[0] == 200  # the local bucket is full
    assert time.monotonic() - started < 1.0
    assert [get(gw.url + "/a/1")[0] for _ in range(2)] == [200, 503]
    assert "Redis pool 'shared' failed" in gw.log()


def test_concurrent_takes_in_a_cluster_get_their_own_replies(cluster: Cluster) -> None:
    from tests.test_ratelimit_redis import pool_client

    async def main() -> list:
        redis, resources = pool_client(cluster.nodes[1].port, cluster=True)
        buckets = SharedBuckets(redis, "p")
        for i in range(60):  # bucket i: empty, one token in i + 1 seconds
            assert await buckets.take([f"e:{{{i}}}"], [1 / (i + 1), 1]) == (0, 0.0)
        replies = await asyncio.gather(
            *(
                buckets.take([f"f:{{{i}}}", f"e:{{{i}}}"][i % 2 :], [1000, 1000, 1 / (i + 1), 1][2 * (i % 2) :])
                for i in range(60)
            )
        )
        await resources.close()
        return replies

    replies = asyncio.run(asyncio.wait_for(main(), 30))
    for i, reply in enumerate(replies):
        assert reply is not None and reply[0] == 2 - i % 2 and i + 0.5 < reply[1] <= i + 1, (i, reply)


def test_replicas_share_http_cache_entries_through_the_cluster(upstream, start_gateway, cluster: Cluster) -> None:
    from tests.test_http_cache import answers, calls, http_endpoint

    addresses = [f"127.0.0.1:{node.port}" for node in cluster.nodes]
    doc = {
        "version": 3,
        "timeout": "3s",
        "extra_config": {"redis": {"clusters": [{"name": "cache", "addresses": addresses}]}},
        "endpoints": [http_endpoint(upstream, "c", {"connection_pool": "cache"})],
    }
    first, second = start_gateway(doc, name="one.json"), start_gateway(doc, name="two.json")
    for i in range(6):  # entries land on several nodes
        assert answers(f"{first.url}/c/fresh-cl{i}", 1) == [1]
        assert answers(f"{second.url}/c/fresh-cl{i}", 1) == [1]  # from the cluster
        assert calls(upstream, f"fresh-cl{i}") == 1
    assert sum(cluster.keys_per_node()) >= 6
    assert "failed" not in first.log() + second.log()
