"""The gateway's per-request CPU cost in-process, without a server: the ASGI app called directly in a loop.

`python -m bench.inproc [--mode fake|http] [--requests N] [--profile]`: GET /proxy as the bench's gateway_http has
it (one backend, no features on). `fake`: the backend answers at once (the front path, pipeline and render alone);
`http`: the real HTTP backend on the fast client against a tiny upstream in a child process on loopback; `lambda`:
a Lambda backend (SigV4-signed Invoke POST) against the same upstream; `skeleton`: the 20-line skeleton's call.
Prints CPU µs per request of this process (the upstream's CPU is not counted). Bounded by --requests.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from lambdagate import plugins
from lambdagate.config import LoadOptions, load_config
from lambdagate.proxy import ProxyResponse
from lambdagate.server import Gateway
from lambdagate.telemetry.logs import LogSettings

BODY = b'{"message":"Hello, World!","from":"upstream"}'
UPSTREAM = f"""
import asyncio, sys, uvloop
R = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: {len(BODY)}\\r\\n\\r\\n" + {BODY!r}
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(R * d.count(b"\\r\\n\\r\\n"))
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await asyncio.sleep(600)
uvloop.run(main())
"""
HEADERS = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_factory(backend):
    async def build(cfg, ctx):
        from lambdagate.pipeline import BuiltBackend

        async def call(req):
            return ProxyResponse.decoded({"message": "Hello, World!", "from": "upstream"})

        return BuiltBackend(call, "fake")

    return build


async def drive(app: Gateway, requests: int, concurrency: int) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/proxy",
        "raw_path": b"/proxy",
        "query_string": b"",
        "headers": HEADERS,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    statuses = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def worker(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)

    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    bad = [s for s in statuses if s != 200]
    if bad:
        raise SystemExit(f"{len(bad)} replies not 200, e.g. {bad[0]}")


async def main(args: argparse.Namespace) -> None:
    plugins.install()
    tmp = Path(tempfile.mkdtemp())
    upstream = None
    port = free_port()
    if args.mode != "fake":
        upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port)])
        time.sleep(0.5)
    conf = tmp / "krakend.json"
    config = {"version": 3, "timeout": "5s", "host": [f"http://127.0.0.1:{port}"]}
    config["endpoints"] = [{"endpoint": "/proxy", "backend": [{"url_pattern": "/"}]}]
    if args.mode == "lambda":  # /proxy on a Lambda backend: the upstream answers the signed Invoke POST at once
        lam = {"function_name": "bench", "region": "us-east-1", "endpoint": f"http://127.0.0.1:{port}"}
        config["endpoints"][0]["backend"][0]["extra_config"] = {"backend/lambda": lam}
        os.environ.update(AWS_ACCESS_KEY_ID="AKIDBENCHEXAMPLE0000", AWS_SECRET_ACCESS_KEY="bench/secret/0000")
        os.environ.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp / "none"))
    conf.write_text(json.dumps(config))
    loaded = load_config(str(conf), LoadOptions())
    kwargs = {"backend_factory": fake_factory} if args.mode == "fake" else {}
    app = Gateway(loaded, log_settings=LogSettings(access=False), **kwargs)  # the bench's --no-access-log
    await app.startup()
    if args.mode == "skeleton":  # the 20-line skeleton on the same client: the floor
        os.environ["SKELETON_UPSTREAM"] = f"http://127.0.0.1:{port}/"
        from bench import skeleton_fast

        skeleton_fast.UPSTREAM = skeleton_fast.URL(os.environ["SKELETON_UPSTREAM"])
        app, gateway = skeleton_fast.Skeleton(), app
    try:
        await drive(app, 2000, args.concurrency)  # warm-up
        for _ in range(args.rounds):
            prof = cProfile.Profile() if args.profile else None
            cpu = time.process_time()
            if prof:
                prof.enable()
            await drive(app, args.requests, args.concurrency)
            if prof:
                prof.disable()
            us = (time.process_time() - cpu) / args.requests * 1e6
            print(f"{args.mode}: {us:.1f} CPU µs/request", flush=True)
            if prof:
                pstats.Stats(prof).sort_stats(args.sort).print_stats(30)
    finally:
        await (gateway if args.mode == "skeleton" else app).shutdown()
        if upstream is not None:
            upstream.terminate()
            upstream.wait(5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("fake", "http", "lambda", "skeleton"), default="fake")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    uvloop.run(main(parser.parse_args()))
