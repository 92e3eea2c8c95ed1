"""Soak test: `make soak` (or `python tools/soak.py`). Bounded, fixed concurrency, real processes on 127.0.0.1.

Starts an HTTP upstream (tests/support/upstream.py), a Lambda Invoke API stub (tests/support/invoke_stub.py)
and `lambdagate run` with one worker, then loads three endpoints in turn (an HTTP backend, a Lambda backend,
and both merged) for SOAK_SECONDS at SOAK_CONNECTIONS connections, with wrk when installed (else a bounded
aiohttp client loop). Meanwhile it samples the worker's RSS. It reports errors (non-200 replies, incomplete
replies, socket errors: must be 0) and RSS growth after warm-up (must be < 10 %), writes the report to
SOAK_REPORT (default docs/soak.md) and exits 1 when either check fails.

Environment: SOAK_SECONDS (default 600), SOAK_CONNECTIONS (32), SOAK_WARMUP (seconds; default 10 % of the
run, at least 10), SOAK_SAMPLE (seconds between RSS samples, 5), SOAK_REPORT, SOAK_CLIENT (wrk | python),
SOAK_ACCESS_LOG=1 to keep the gateway's access log on (off by default: a line per request is disk I/O).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procs import Process, free_port, python_module, wait_http  # noqa: E402

PATHS = ["/http", "/lambda", "/merged"]
_OWN_PIDS: set[int] = set()  # our own load generator, not "other load"

WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
local paths = {"/http", "/lambda", "/merged"}
local n = 0
bad_status = 0
incomplete = 0
function request()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif headers["x-krakend-completed"] ~= "true" then
    incomplete = incomplete + 1
  end
end
function done(summary, latency, requests)
  local bad, inc = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("bad_status")
    inc = inc + t:get("incomplete")
  end
  io.write(string.format(
    'SOAK {"requests": %d, "duration_us": %d, "non200": %d, "incomplete": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, bad, inc, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass
class Result:
    requests: int = 0
    duration_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    client: str = ""


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pid(gateway_pid: int, timeout: float = 10.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        children = Path(f"/proc/{gateway_pid}/task/{gateway_pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("the gateway has no worker process")


def run_wrk(url: str, seconds: int, connections: int, workdir: Path) -> Result:
    script = workdir / "soak.lua"
    script.write_text(WRK_SCRIPT)
    threads = max(1, min(2, connections))
    proc = subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _OWN_PIDS.add(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    line = next((ln for ln in stdout.splitlines() if ln.startswith("SOAK ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{stdout}\n{stderr}")
    data = json.loads(line[5:])
    errors = {k: data[k] for k in ("non200", "incomplete", "connect", "read", "write", "timeout")}
    return Result(
        data["requests"],
        data["duration_us"] / 1e6,
        errors,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        data["max_us"] / 1000,
        f"wrk -t{threads} -c{connections}",
    )


def run_python(url: str, seconds: int, connections: int) -> Result:
    import aiohttp

    async def main() -> Result:
        errors = {"non200": 0, "incomplete": 0, "socket": 0}
        latencies: list[float] = []
        count = 0
        end = time.monotonic() + seconds

        async def client(session: aiohttp.ClientSession, k: int) -> None:
            nonlocal count
            i = k
            while time.monotonic() < end:  # bounded by time; each request by its own timeout
                i += 1
                started = time.perf_counter()
                try:
                    async with session.get(url + PATHS[i % len(PATHS)]) as resp:
                        await resp.read()
                        if resp.status != 200:
                            errors["non200"] += 1
                        elif resp.headers.get("X-KrakenD-Completed") != "true":
                            errors["incomplete"] += 1
                except (TimeoutError, aiohttp.ClientError):
                    errors["socket"] += 1
                count += 1
                if len(latencies) < 1_000_000:
                    latencies.append(time.perf_counter() - started)

        connector = aiohttp.TCPConnector(limit=connections)
        timeout = aiohttp.ClientTimeout(total=5)
        started = time.monotonic()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(client(session, k) for k in range(connections)))
        latencies.sort()
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0  # noqa: E731
        return Result(
            count,
            time.monotonic() - started,
            errors,
            pick(0.5),
            pick(0.99),
            pick(1.0),
            f"python aiohttp loop, {connections} connections",
        )

    return asyncio.run(main())


def other_load() -> str:
    """Other load generators on this machine (their numbers and ours would disturb each other)."""
    try:
        out = subprocess.run(["pgrep", "-a", "-x", "wrk"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return "\n".join(ln for ln in out.splitlines() if ln.split(" ", 1)[0] not in {str(p) for p in _OWN_PIDS})


def main() -> int:
    seconds = int(env_float("SOAK_SECONDS", 600))
    connections = int(env_float("SOAK_CONNECTIONS", 32))
    warmup = env_float("SOAK_WARMUP", max(10.0, seconds * 0.1))
    interval = env_float("SOAK_SAMPLE", 5.0)
    report = Path(os.environ.get("SOAK_REPORT", ROOT / "docs" / "soak.md"))
    client = os.environ.get("SOAK_CLIENT") or ("wrk" if shutil.which("wrk") else "python")
    if seconds <= 0 or connections <= 0 or warmup >= seconds:
        print("SOAK_SECONDS and SOAK_CONNECTIONS must be > 0 and SOAK_WARMUP < SOAK_SECONDS", file=sys.stderr)
        return 2
    busy_before = other_load()
    if busy_before:
        print(f"warning: another load generator is running, numbers will be noisy:\n{busy_before}", file=sys.stderr)

    workdir = Path(tempfile.mkdtemp(prefix="lambdagate-soak-"))
    procs: list[Process] = []
    try:
        up_port, stub_port, gw_port = free_port(), free_port(), free_port()
        upstream = Process(python_module("tests.support.upstream", str(up_port)), workdir / "upstream.log")
        procs.append(upstream)
        stub = Process(python_module("tests.support.invoke_stub", str(stub_port)), workdir / "stub.log")
        procs.append(stub)
        wait_http(f"http://127.0.0.1:{up_port}/json/ready", proc=upstream.proc)
        wait_http(f"http://127.0.0.1:{stub_port}/__health", proc=stub.proc)
        lam = {
            "extra_config": {
                "backend/lambda": {
                    "function_name": "object",
                    "region": "us-east-1",
                    "endpoint": f"http://127.0.0.1:{stub_port}",
                }
            }
        }
        config = {
            "version": 3,
            "timeout": "3s",
            "host": [f"http://127.0.0.1:{up_port}"],
            "endpoints": [
                {"endpoint": "/http", "backend": [{"url_pattern": "/json/soak", "allow": ["name", "nested.a"]}]},
                {"endpoint": "/lambda", "backend": [{**lam, "deny": ["secret"]}]},
                {
                    "endpoint": "/merged",
                    "backend": [{"url_pattern": "/json/soak", "group": "http"}, {**lam, "group": "fn"}],
                },
            ],
        }
        (workdir / "krakend.json").write_text(json.dumps(config))
        args = ["run", "-c", str(workdir / "krakend.json"), "--port", str(gw_port), "--host", "127.0.0.1"]
        if os.environ.get("SOAK_ACCESS_LOG") != "1":
            args.append("--no-access-log")
        env = {
            "AWS_ACCESS_KEY_ID": "soak",
            "AWS_SECRET_ACCESS_KEY": "soak-secret",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        gateway = Process(python_module("lambdagate", *args), workdir / "gateway.log", env)
        procs.append(gateway)
        url = f"http://127.0.0.1:{gw_port}"
        wait_http(f"{url}/__health", proc=gateway.proc, timeout=30)
        for path in PATHS:
            wait_http(url + path, proc=gateway.proc)
        worker = worker_pid(gateway.proc.pid)
        print(
            f"soak: {seconds}s at {connections} connections ({client}) against {url}{', '.join(PATHS)}; "
            f"worker pid {worker}",
            file=sys.stderr,
        )

        samples: list[tuple[float, int]] = []
        busy: list[str] = []  # other load generators seen at each sample
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic() - started, rss_kib(worker)))
                busy.append(other_load())
                stop.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = (
                run_wrk(url, seconds, connections, workdir)
                if client == "wrk"
                else run_python(url, seconds, connections)
            )
        finally:
            stop.set()
            sampler.join(interval + 5)
        samples.append((time.monotonic() - started, rss_kib(worker)))
        log = gateway.log()
        log_problems = {k: log.count(k) for k in ("backend failed", "unhandled error", "Traceback", "refused")}
    finally:
        for proc in reversed(procs):
            proc.stop()

    after = [(t, kib) for t, kib in samples if t >= warmup]
    if len(after) < 2:
        print("too few RSS samples after warm-up: lengthen SOAK_SECONDS or shorten SOAK_SAMPLE", file=sys.stderr)
        return 2
    base = statistics.median(kib for _, kib in after[:3])
    final = statistics.median(kib for _, kib in after[-3:])
    peak = max(kib for _, kib in after)
    growth = (final - base) / base * 100
    total_errors = sum(result.errors.values()) + sum(log_problems.values())
    ok = total_errors == 0 and growth < 10
    seen = sum(1 for b in busy if b)
    other = f"in {seen} of {len(busy)} samples, e.g. `{next(b for b in busy if b).splitlines()[0]}`" if seen else ""
    text = render(result, samples, warmup, base, final, peak, growth, log_problems, ok, seconds, connections, other)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    print(text)
    print(f"soak: {'PASS' if ok else 'FAIL'} (report in {report})", file=sys.stderr)
    return 0 if ok else 1


def render(
    result: Result,
    samples: list[tuple[float, int]],
    warmup: float,
    base: float,
    final: float,
    peak: int,
    growth: float,
    log_problems: dict[str, int],
    ok: bool,
    seconds: int,
    connections: int,
    other: str,
) -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "?",
    )
    rps = result.requests / result.duration_s if result.duration_s else 0
    step = max(1, len(samples) // 20)
    rows = samples[::step]
    if rows[-1] != samples[-1]:
        rows.append(samples[-1])
    lines = [
        "# Soak test",
        "",
        f"`make soak` (tools/soak.py), run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: **{'PASS' if ok else 'FAIL'}** "
        "(errors must be 0, worker RSS growth after warm-up < 10 %).",
        "",
        "Setup: one `lambdagate run` worker (access log off) in front of the test HTTP upstream "
        "(tests/support/upstream.py) and the Invoke API stub (tests/support/invoke_stub.py), all on 127.0.0.1 of "
        f"the same machine ({os.cpu_count()} cores, {cpu}, Python {platform.python_version()}). Requests rotate "
        "over `/http` (an HTTP backend with `allow`), `/lambda` (a Lambda backend, SigV4-signed, with `deny`) and "
        "`/merged` (both, grouped). Backend client: "
        f"`{os.environ.get('LAMBDAGATE_HTTP_CLIENT') or 'fast'}` (lambdagate.client; `fast` is the default).",
        "",
        "| | |",
        "|---|---|",
        f"| duration | {seconds} s ({result.duration_s:.0f} s measured), warm-up {warmup:.0f} s |",
        f"| load | {result.client}, fixed concurrency {connections} |",
        f"| requests | {result.requests:,} ({rps:,.0f}/s) |",
        f"| latency | p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, max {result.max_ms:.2f} ms |",
        f"| errors | {', '.join(f'{k} {v}' for k, v in result.errors.items())} |",
        f"| gateway log | {', '.join(f'{k!r} {v}' for k, v in log_problems.items())} |",
        f"| worker RSS | {base / 1024:.1f} MiB after warm-up → {final / 1024:.1f} MiB at the end "
        f"(**{growth:+.1f} %**), peak {peak / 1024:.1f} MiB |",
        f"| other load generators on the machine | {other + ' (latency and throughput noisy)' if other else 'none seen'} |",
        "",
        "Worker RSS over time (medians of 3 samples are compared, so one sample's noise does not decide):",
        "",
        "| t (s) | RSS (MiB) |",
        "|---:|---:|",
        *(f"| {t:.0f}{' (warm-up)' if t < warmup else ''} | {kib / 1024:.1f} |" for t, kib in rows),
        "",
        "Latency and throughput are those of a 2-core machine that also runs the upstream, the stub and the load "
        "generator; they are not benchmarks. The soak's point is the zero errors and the flat memory.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
