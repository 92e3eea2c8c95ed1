"""`make bench` / `make bench-quick` / `make bench-rss`: every scenario in one run, on loopback, bounded in time.

Layout on a 2-core machine: each server under test runs pinned to CPU 1 with one worker; wrk and the
upstream (nginx) run on CPU 0. All servers are started at once (idle ones cost nothing) and measured in
interleaved rounds, so a noisy neighbour hits every scenario alike; the median round is reported.
`gateway_http_2workers` is not pinned: its two workers share both cores with wrk and the upstream.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fixtures
import wrk
from procs import Server, rss_mb

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
SERVER_CPU, LOAD_CPU = "1", "0"
CONNECTIONS = 50
PACE_DELAY_MS = 20  # mean wait between a reply and the next request on a connection, at half load
TARGETS = {
    "gateway_http_vs_skeleton": 0.85,
    "gateway_lambda_vs_skeleton": 0.85,
    "gateway_lambda_vs_aiobotocore": 4.0,
    "gateway_http_vs_nginx": 0.35,  # the client issue's target (0.4 the stretch)
    "gateway_http_vs_skeleton_fast": 0.85,
    "gateway_lambda_vs_nginx": 0.3,
    "gateway_jwt_vs_http": 0.85,
    "gateway_cors_vs_http": 0.95,
    "gateway_ratelimit_vs_http": 0.9,
    "gateway_ratelimit_redis_vs_http": 0.6,
    "gateway_circuit_breaker_vs_http": 0.95,
    "gateway_http_cache_hit_vs_http": 1.2,
    "gateway_cel_vs_http": 0.9,
    "gateway_jsonschema_vs_http": 0.85,
    "gateway_lua_vs_http": 0.8,
}
# scenario -> (server, path)
SCENARIOS = {
    "direct": ("upstream", "/"),
    "skeleton": ("skeleton", "/"),
    "nginx": ("proxy", "/"),
    "gateway_http": ("gateway", "/proxy"),
    "gateway_jwt": ("gateway", "/jwt"),  # /proxy behind auth/validator (RS256, cached keys, one token)
    "gateway_ratelimit": ("gateway", "/ratelimit"),  # /proxy behind qos/ratelimit/router (admits everything)
    "gateway_ratelimit_redis": ("gateway", "/ratelimit_redis"),  # the same limit kept in Redis (one script call)
    "gateway_circuit_breaker": ("gateway", "/breaker"),  # /proxy behind qos/circuit-breaker (always closed)
    "gateway_http_cache_hit": ("gateway", "/cached"),  # qos/http-cache: every request after the first is a hit
    "gateway_lua": ("gateway", "/lua"),  # /proxy with a small modifier/lua-proxy pre script
    "gateway_merge": ("gateway", "/merge"),
    "gateway_sequential": ("gateway", "/sequential"),  # two backends, the second's URL from the first's reply
    "gateway_flatmap": ("gateway", "/flatmap"),  # two backends, flatmap_filter on one and on the merge
    "gateway_lambda": ("gateway", "/lambda"),
    "aiobotocore_lambda": ("aiobotocore", "/"),
    "gateway_http_2workers": ("gateway_2w", "/proxy"),
    "gateway_http_accesslog": ("gateway_log", "/proxy"),
    "gateway_http_metrics": ("gateway_metrics", "/proxy"),
    "gateway_http_observed": ("gateway_observed", "/proxy"),
    "gateway_cors": ("gateway_cors", "/proxy"),  # security/cors on, with an allowed Origin (HEADERS)
    "gateway_cel": ("gateway", "/cel"),  # /proxy behind one validation/cel check (method and a forwarded header)
    "gateway_jsonschema": ("gateway", "/schema"),  # a POST of a small JSON body (BODIES) validated by its schema
    "skeleton_asgi": ("skeleton_asgi", "/"),
    "skeleton_equiv": ("skeleton_equiv", "/"),
    "skeleton_lambda": ("skeleton_lambda", "/"),
    # The client seam (lambdagate.client): the skeleton on the fast client (the gateway's floor now), on pyreqwest
    # (measured only when it is installed), and the gateway with the aiohttp client (LAMBDAGATE_HTTP_CLIENT).
    "skeleton_fast": ("skeleton_fast", "/"),
    "skeleton_fast_asgi": ("skeleton_fast_asgi", "/"),
    "skeleton_pyreqwest": ("skeleton_pyreqwest", "/"),
    "gateway_http_aiohttp": ("gateway_aiohttp", "/proxy"),
    "gateway_merge_aiohttp": ("gateway_aiohttp", "/merge"),
    "gateway_lambda_aiohttp": ("gateway_aiohttp", "/lambda"),
}
HALF_LOAD = ("skeleton", "gateway_http", "gateway_lambda")
# Servers a scenario needs besides its own.
NEEDS = {"gateway_ratelimit_redis": {"redis"}}
# Request headers per scenario (the JWT one filled in once the run's token exists).
HEADERS: dict[str, dict[str, str]] = {
    "gateway_cors": {"Origin": fixtures.CORS_ORIGIN},
    "gateway_cel": {"X-Tenant": "a"},
}
# Request bodies per scenario: sent as a JSON POST.
BODIES: dict[str, str] = {"gateway_jsonschema": fixtures.SCHEMA_BODY}


def need_tools() -> None:
    missing = [t for t in ("wrk", "nginx", "taskset", "redis-server") if shutil.which(t) is None]
    if missing:
        sys.exit(
            f"bench: {', '.join(missing)} not found. Install them with:\n"
            "  sudo apt-get install wrk nginx-light util-linux redis-server"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_env(tmp: Path) -> dict[str, str]:
    """Credentials from the environment only (signing is on; the stub does not check the signature)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDBENCHEXAMPLE0000",
        AWS_SECRET_ACCESS_KEY="bench/secret/key/not/a/real/one/000000",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def granian(target: str, port: int, interface: str) -> list[str]:
    # The same server settings as `lambdagate run` (cli.py): 1 runtime thread, uvloop, no websockets.
    return [
        str(BIN / "granian"),
        "--interface",
        interface,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--runtime-threads",
        "1",
        "--loop",
        "uvloop",
        "--no-ws",
        "--backlog",
        "2048",
        "--log-level",
        "warning",
        "--no-access-log",
        "--working-dir",
        str(BENCH),
        target,
    ]


def start_servers(names: set[str], tmp: Path, logs: Path, pin: bool) -> tuple[dict[str, Server], dict[str, int]]:
    ports = {name: free_port() for name in names | {"upstream", "redis"}}
    up = ports["upstream"]
    env = aws_env(tmp)
    cpu = SERVER_CPU if pin else None
    HEADERS["gateway_jwt"] = {"Authorization": f"Bearer {fixtures.jwt_token(tmp)}"}
    gateway_cfg = fixtures.gateway_conf(tmp, 0, up, redis_port=ports["redis"])
    metrics_cfg = fixtures.gateway_conf(tmp, 0, up, metrics_port=free_port(), name="metrics.json")
    observed_cfg = fixtures.gateway_conf(tmp, 0, up, metrics_port=free_port(), name="observed.json")
    cors_cfg = fixtures.gateway_conf(tmp, 0, up, name="cors.json", cors=True)

    def lambdagate(*extra: str, config: Path = gateway_cfg) -> list[str]:
        return [str(BIN / "lambdagate"), "run", "-c", str(config), "--host", "127.0.0.1", *extra]

    specs = {
        "redis": (
            [
                "redis-server",
                "--port",
                str(ports["redis"]),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
            ],
            LOAD_CPU if pin else None,
            None,
        ),
        "upstream": (
            ["nginx", "-c", str(fixtures.upstream_conf(tmp, up)), "-e", str(tmp / "upstream.err")],
            LOAD_CPU if pin else None,
            None,
        ),
        "proxy": (
            ["nginx", "-c", str(fixtures.proxy_conf(tmp, ports.get("proxy", 0), up)), "-e", str(tmp / "proxy.err")],
            cpu,
            None,
        ),
        "skeleton": (
            granian("skeleton:app", ports.get("skeleton", 0), "rsgi"),
            cpu,
            {**env, "SKELETON_UPSTREAM": f"http://127.0.0.1:{up}/"},
        ),
        "skeleton_asgi": (
            granian("skeleton:app", ports.get("skeleton_asgi", 0), "asgi"),
            cpu,
            {**env, "SKELETON_UPSTREAM": f"http://127.0.0.1:{up}/"},
        ),
        "skeleton_equiv": (
            granian("skeleton_equiv:app", ports.get("skeleton_equiv", 0), "asgi"),
            cpu,
            {**env, "SKELETON_UPSTREAM": f"http://127.0.0.1:{up}/"},
        ),
        "skeleton_fast": (
            granian("skeleton_fast:app", ports.get("skeleton_fast", 0), "rsgi"),
            cpu,
            {**env, "SKELETON_UPSTREAM": f"http://127.0.0.1:{up}/"},
        ),
        "skeleton_fast_asgi": (
            granian("skeleton_fast:app", ports.get("skeleton_fast_asgi", 0), "asgi"),
            cpu,
            {**env, "SKELETON_UPSTREAM": f"http://127.0.0.1:{up}/"},
        ),
        "skeleton_pyreqwest": (
            granian("skeleton_pyreqwest:app", ports.get("skeleton_pyreqwest", 0), "rsgi"),
            cpu,
            {**env, "SKELETON_UPSTREAM": f"http://127.0.0.1:{up}/"},
        ),
        "aiobotocore": (
            granian("aiobotocore_gateway:app", ports.get("aiobotocore", 0), "asgi"),
            cpu,
            {**env, "AIOBOTOCORE_ENDPOINT": f"http://127.0.0.1:{up}"},
        ),
        "skeleton_lambda": (
            granian("skeleton_lambda:app", ports.get("skeleton_lambda", 0), "rsgi"),
            cpu,
            {**env, "LAMBDA_ENDPOINT": f"http://127.0.0.1:{up}"},
        ),
        "gateway": (lambdagate("--port", str(ports.get("gateway", 0)), "--no-access-log"), cpu, env),
        "gateway_aiohttp": (
            lambdagate("--port", str(ports.get("gateway_aiohttp", 0)), "--no-access-log"),
            cpu,
            {**env, "LAMBDAGATE_HTTP_CLIENT": "aiohttp"},
        ),
        "gateway_log": (lambdagate("--port", str(ports.get("gateway_log", 0))), cpu, env),
        "gateway_2w": (
            lambdagate("--port", str(ports.get("gateway_2w", 0)), "--no-access-log", "--workers", "2"),
            None,
            env,
        ),
        # Observability cost: metrics on; metrics on plus the JSON access log (tracing off).
        "gateway_metrics": (
            lambdagate("--port", str(ports.get("gateway_metrics", 0)), "--no-access-log", config=metrics_cfg),
            cpu,
            env,
        ),
        "gateway_observed": (
            lambdagate("--port", str(ports.get("gateway_observed", 0)), "--log-format", "json", config=observed_cfg),
            cpu,
            env,
        ),
        # CORS cost: security/cors on, requests from an allowed origin.
        "gateway_cors": (
            lambdagate("--port", str(ports.get("gateway_cors", 0)), "--no-access-log", config=cors_cfg),
            cpu,
            env,
        ),
    }
    servers: dict[str, Server] = {}
    try:
        for name in ["upstream", *sorted(names - {"upstream"})]:
            cmd, cpus, senv = specs[name]
            servers[name] = Server(name, cmd, cpus=cpus, log=logs / f"{name}.log", env=senv)
        for name, server in servers.items():
            if name == "redis":
                wait_redis(ports[name])
                continue
            server.wait_ready(
                f"http://127.0.0.1:{ports[name]}/"
                if name != "gateway" and not name.startswith("gateway_")
                else f"http://127.0.0.1:{ports[name]}/__health",
                timeout=60,
            )
    except BaseException:
        stop_all(servers)
        raise
    return servers, ports


def stop_all(servers: dict[str, Server]) -> None:
    for server in reversed(list(servers.values())):
        server.stop()


def wait_redis(port: int, timeout: float = 10.0) -> None:
    """Until redis-server answers PING (it speaks no HTTP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout}s")


def check_replies(scenarios: list[str], servers: dict[str, Server], ports: dict[str, int]) -> None:
    """Each scenario answers what it should before it is measured (a fast wrong answer measures nothing)."""
    import urllib.request

    want = {
        "upstream": json.loads(fixtures.UPSTREAM_BODY),
        "proxy": json.loads(fixtures.UPSTREAM_BODY),
        "skeleton": json.loads(fixtures.UPSTREAM_BODY),
        "skeleton_asgi": json.loads(fixtures.UPSTREAM_BODY),
        "skeleton_equiv": json.loads(fixtures.UPSTREAM_BODY),
        "skeleton_fast": json.loads(fixtures.UPSTREAM_BODY),
        "skeleton_fast_asgi": json.loads(fixtures.UPSTREAM_BODY),
        "skeleton_pyreqwest": json.loads(fixtures.UPSTREAM_BODY),
        "aiobotocore": json.loads(fixtures.LAMBDA_BODY),
        "skeleton_lambda": json.loads(fixtures.LAMBDA_BODY),
    }
    for name in scenarios:
        server, path = SCENARIOS[name]
        body = BODIES.get(name)
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports[server]}{path}",
            data=body.encode() if body is not None else None,
            headers={**HEADERS.get(name, {}), **({"Content-Type": "application/json"} if body is not None else {})},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            got = json.loads(resp.read())
            origin = HEADERS.get(name, {}).get("Origin")
            if origin is not None and resp.headers.get("Access-Control-Allow-Origin") != origin:
                raise RuntimeError(f"{name}: no CORS headers in the reply")
        if path == "/merge":
            expected = {
                "user": {"id": 1, "name": "Ana", "internal": {"shard": 7}},
                "greeting": "Hello",
                "lang": "en",
                "list": {"items": [1, 2, 3], "count": 3},
            }
        elif path == "/sequential":
            expected = {"id": 1, "name": "Ana", "message": "Hello"}
        elif path == "/flatmap":
            expected = {"id": 1, "name": "Ana", "list": [1, 2, 3], "total": 3}
        elif path == "/lambda":
            expected = json.loads(fixtures.LAMBDA_BODY)
        elif path in (
            "/proxy",
            "/jwt",
            "/ratelimit",
            "/ratelimit_redis",
            "/breaker",
            "/cached",
            "/cel",
            "/schema",
            "/lua",
        ):
            expected = json.loads(fixtures.UPSTREAM_BODY)
        else:
            expected = want[server]
        if got != expected:
            raise RuntimeError(f"{name}: unexpected reply {got!r}, wanted {expected!r}")


def machine(mode: str, params: dict) -> dict:
    def version(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    from importlib.metadata import version as pkg

    def pkgv(name: str) -> str:
        try:
            return pkg(name)
        except Exception:
            return "-"

    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True, text=True
        ).stdout.strip()
    )
    return {
        "mode": mode,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {
            n: pkgv(n) for n in ("granian", "aiohttp", "uvloop", "orjson", "aiobotocore", "multidict", "yarl")
        },
        "wrk": version(["wrk", "-v"]),
        "nginx": version(["nginx", "-v"]),
        "commit": commit + ("+dirty" if dirty else ""),
        "loadavg_start": os.getloadavg()[0],
        "cpu_pressure_avg60_start": cpu_pressure(),
        **params,
    }


def cpu_pressure() -> float | None:
    """The share of the last 60 s in which some runnable task waited for a CPU (PSI), in %: other load."""
    try:
        return float(Path("/proc/pressure/cpu").read_text().split()[2].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def busy_neighbours() -> list[str]:
    out = subprocess.run(["pgrep", "-fa", "pytest"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def compare(args: argparse.Namespace) -> dict:
    quick = args.mode == "quick"
    names = args.scenarios or (
        [
            "direct",
            "skeleton",
            "skeleton_fast",
            "nginx",
            "gateway_http",
            "gateway_http_aiohttp",
            "gateway_jwt",
            "gateway_ratelimit",
            "gateway_ratelimit_redis",
            "gateway_merge",
            "gateway_sequential",
            "gateway_flatmap",
            "gateway_lambda",
            "gateway_circuit_breaker",
            "gateway_http_cache_hit",
            "gateway_lua",
            "aiobotocore_lambda",
            "gateway_http_2workers",
            "gateway_http_accesslog",
            "gateway_http_metrics",
            "gateway_http_observed",
            "gateway_cors",
        ]
        + ([] if quick else ["skeleton_asgi", "skeleton_lambda", "skeleton_equiv"])
        + ([] if quick else ["skeleton_fast_asgi", "gateway_merge_aiohttp", "gateway_lambda_aiohttp"])
    )
    seconds = args.seconds or (3.0 if quick else 4.0)
    rounds = args.rounds or (1 if quick else 5)
    warmup = 1.0 if quick else 2.0
    pin = (os.cpu_count() or 1) >= 2
    params = {
        "load": {"threads": 1, "connections": CONNECTIONS, "seconds": seconds, "rounds": rounds, "warmup_s": warmup},
        "pinning": "server on CPU 1, wrk + upstream nginx on CPU 0" if pin else "none (fewer than 2 CPUs)",
        "busy_neighbours_start": busy_neighbours(),
    }
    info = machine(args.mode, params)
    tmp = Path(tempfile.mkdtemp(prefix="lambdagate-bench-"))
    RESULTS.mkdir(exist_ok=True)
    logs = RESULTS
    started = time.monotonic()
    needed = {SCENARIOS[n][0] for n in names}.union(*(NEEDS.get(n, set()) for n in names))
    servers, ports = start_servers(needed, tmp, logs, pin)
    runs: dict[str, list[wrk.WrkResult]] = {n: [] for n in names}
    warnings: list[str] = []
    try:
        check_replies(names, servers, ports)
        print(f"bench: {len(servers)} servers up in {time.monotonic() - started:.1f}s", flush=True)

        def measure(name: str, secs: float, **kw) -> wrk.WrkResult:
            server, path = SCENARIOS[name]
            result = wrk.run(
                f"http://127.0.0.1:{ports[server]}{path}",
                seconds=secs,
                server_pids=servers[server].pids(),
                cpus=LOAD_CPU if pin else None,
                connections=kw.pop("connections", CONNECTIONS),
                headers=HEADERS.get(name),
                body=BODIES.get(name),
                **kw,
            )
            if result.errors:
                warnings.append(f"{name}: {result.errors} errors in {result.requests} requests")
            return result

        for name in names:  # warm-up: pools, caches, first-call imports
            measure(name, warmup)
        seen: set[str] = set()
        for r in range(rounds):
            seen.update(busy_neighbours())  # other test runs on the machine, checked every round
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no scenario is always first
            for name in order:
                res = runs[name]
                res.append(measure(name, seconds))
                print(
                    f"  round {r + 1}/{rounds} {name:24} {res[-1].rps:9.0f} req/s  p99 {res[-1].p99_ms:6.2f} ms  "
                    f"{res[-1].cpu_us_per_req:6.1f} µs/req",
                    flush=True,
                )
        scenarios = {name: summarise(res, servers[SCENARIOS[name][0]]) for name, res in runs.items()}
        half = [n for n in HALF_LOAD if n in names]
        if len(half) == len(HALF_LOAD):
            rate = 0.5 * min(scenarios["gateway_http"]["rps"], scenarios["gateway_lambda"]["rps"])
            conns = max(1, round(rate * (PACE_DELAY_MS + 1.0) / 1000))  # ~1 ms of latency per exchange
            for name in half:
                res = measure(name, seconds, connections=conns, delay_ms=PACE_DELAY_MS)
                scenarios[f"{name}@half"] = summarise([res], servers[SCENARIOS[name][0]])
                print(
                    f"  half load  {name:24} {res.rps:9.0f} req/s  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms",
                    flush=True,
                )
            info["half_load"] = {"offered_rps": round(rate), "connections": conns, "delay_ms": PACE_DELAY_MS}
        info["busy_neighbours_during"] = sorted(seen)
    finally:
        stop_all(servers)
        shutil.rmtree(tmp, ignore_errors=True)
    info.update(
        loadavg_end=os.getloadavg()[0],
        cpu_pressure_avg60_end=cpu_pressure(),
        busy_neighbours_end=busy_neighbours(),
        warnings=warnings,
        elapsed_s=round(time.monotonic() - started, 1),
    )
    return {"machine": info, "scenarios": scenarios, "ratios": ratios(scenarios)}


def summarise(res: list[wrk.WrkResult], server: Server) -> dict:
    # The median round by req/s, reported whole (its p50/p99/CPU belong together).
    mid = sorted(res, key=lambda r: r.rps)[len(res) // 2]
    return {
        "rps": round(mid.rps, 1),
        "p50_ms": round(mid.p50_ms, 3),
        "p99_ms": round(mid.p99_ms, 3),
        "cpu_us_per_req": round(statistics.median(r.cpu_us_per_req for r in res), 1),
        "rss_mb": round(sum(rss_mb(pid) for pid in server.pids()), 1),
    }


def ratios(s: dict) -> dict:
    def r(a: str, b: str) -> float | None:
        return round(s[a]["rps"] / s[b]["rps"], 3) if a in s and b in s and s[b]["rps"] else None

    return {
        "gateway_http_vs_skeleton": r("gateway_http", "skeleton"),
        "gateway_http_vs_skeleton_fast": r("gateway_http", "skeleton_fast"),
        "gateway_http_vs_skeleton_fast_asgi": r("gateway_http", "skeleton_fast_asgi"),
        "gateway_http_fast_vs_aiohttp": r("gateway_http", "gateway_http_aiohttp"),
        "gateway_merge_fast_vs_aiohttp": r("gateway_merge", "gateway_merge_aiohttp"),
        "gateway_lambda_fast_vs_aiohttp": r("gateway_lambda", "gateway_lambda_aiohttp"),
        "gateway_lambda_vs_nginx": r("gateway_lambda", "nginx"),
        "skeleton_fast_vs_pyreqwest": r("skeleton_fast", "skeleton_pyreqwest"),
        "gateway_lambda_vs_skeleton": r("gateway_lambda", "skeleton"),
        "gateway_lambda_vs_aiobotocore": r("gateway_lambda", "aiobotocore_lambda"),
        "gateway_http_vs_nginx": r("gateway_http", "nginx"),
        "workers_2_vs_1": r("gateway_http_2workers", "gateway_http"),
        "gateway_http_vs_skeleton_equiv": r("gateway_http", "skeleton_equiv"),
        "metrics_on_vs_off": r("gateway_http_metrics", "gateway_http"),
        "observed_vs_off": r("gateway_http_observed", "gateway_http"),
        "gateway_jwt_vs_http": r("gateway_jwt", "gateway_http"),
        "gateway_cors_vs_http": r("gateway_cors", "gateway_http"),
        "gateway_ratelimit_vs_http": r("gateway_ratelimit", "gateway_http"),
        "gateway_ratelimit_redis_vs_http": r("gateway_ratelimit_redis", "gateway_http"),
        "gateway_circuit_breaker_vs_http": r("gateway_circuit_breaker", "gateway_http"),
        "gateway_http_cache_hit_vs_http": r("gateway_http_cache_hit", "gateway_http"),
        "gateway_sequential_vs_merge": r("gateway_sequential", "gateway_merge"),
        "gateway_flatmap_vs_merge": r("gateway_flatmap", "gateway_merge"),
        "gateway_cel_vs_http": r("gateway_cel", "gateway_http"),
        "gateway_jsonschema_vs_http": r("gateway_jsonschema", "gateway_http"),
        "gateway_lua_vs_http": r("gateway_lua", "gateway_http"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("quick", "full", "rss"))
    parser.add_argument("--scenarios", nargs="*", choices=sorted(SCENARIOS), help="a subset (debugging)")
    parser.add_argument("--seconds", type=float, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--requests", type=int, default=1_000_000, help="rss mode: requests per scenario")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    need_tools()
    if args.mode == "rss":
        import rss

        result = rss.run(args, start_servers, stop_all, machine)
        (RESULTS / "rss.json").write_text(json.dumps(result, indent=2) + "\n")
    else:
        result = compare(args)
        text = json.dumps(result, indent=2) + "\n"
        (RESULTS / "latest.json").write_text(text)
        if args.mode == "full" and not args.scenarios:
            (RESULTS / "full.json").write_text(text)
        print(json.dumps(result["ratios"], indent=2))
        for w in result["machine"]["warnings"]:
            print("warning:", w)
    if not args.no_report and args.mode != "quick":
        import report

        report.write()


if __name__ == "__main__":
    main()
