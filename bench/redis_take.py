"""In-process cost of shared rate-limit takes (ratelimit.shared.SharedBuckets) against a real redis-server.

`python bench/redis_take.py [--concurrency 1 8 64] [--seconds 2]`: starts redis-server on a free loopback port,
then for each concurrency runs that many tasks taking tokens in a loop (a bucket that admits everything) for a
bounded time, and prints takes per second and the mean latency of one take. Run it with PYTHONPATH pointing at another
checkout's src to compare implementations on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis.asyncio as aioredis

from lambdagate.ratelimit.shared import SharedBuckets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(port: int, concurrency: int, seconds: float) -> tuple[int, float]:
    client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool(
            host="127.0.0.1", port=port, max_connections=64, timeout=0.25, socket_timeout=0.25
        )
    )
    buckets = SharedBuckets(client, "bench")
    keys, args = ["bench:endpoint"], [1e9, 1e9]
    await buckets.take(keys, args)  # loads the script, opens a connection
    count = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal count
        while time.monotonic() < deadline:
            taken = await buckets.take(keys, args)
            assert taken == (0, 0.0), taken
            count += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    await client.aclose()
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=2.0)
    opts = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server not found (Debian package redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            for n in opts.concurrency:
                count, elapsed = asyncio.run(run(port, n, min(opts.seconds, 30.0)))
                print(f"concurrency {n:4}: {count / elapsed:9.0f} takes/s  {elapsed / count * n * 1e6:8.0f} µs/take")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
