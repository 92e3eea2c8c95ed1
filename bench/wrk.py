"""Run wrk (always bounded by -d) and parse its report; measure the server's CPU time around the run."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from procs import cpu_seconds

PACED_LUA = Path(__file__).with_name("paced.lua")
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + non-2xx/3xx replies
    cpu_s: float  # CPU time of the server process tree during the run

    @property
    def cpu_us_per_req(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else 0.0


def _latency(text: str, pct: str) -> float:
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        raise ValueError(f"no {pct}% latency in wrk output:\n{text}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse(text: str) -> tuple[float, int, float, float, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    return rps, requests, _latency(text, "50"), _latency(text, "99"), errors


def post_script(body: str) -> str:
    """A wrk script that POSTs `body` as JSON; its path (a temporary file, kept for the run)."""
    assert "]]" not in body
    script = f'wrk.method = "POST"\nwrk.body = [[{body}]]\nwrk.headers["Content-Type"] = "application/json"\n'
    handle, path = tempfile.mkstemp(suffix=".lua", prefix="bench-post-")
    with os.fdopen(handle, "w") as out:
        out.write(script)
    return path


def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    server_pids: list[int],
    cpus: str | None,
    delay_ms: int | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> WrkResult:
    """One wrk run. `delay_ms` paces each connection (paced.lua): wrk 4.1 has no -R (that is wrk2). `body`: POST
    it as JSON (a generated script; not with `delay_ms`)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if delay_ms is not None:
        assert body is None, "a paced run sends GETs only"
        cmd += ["-s", str(PACED_LUA)]
    elif body is not None:
        cmd += ["-s", post_script(body)]
    cmd.append(url)
    if delay_ms is not None:
        cmd += ["--", str(delay_ms)]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    before = cpu_seconds(server_pids)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    cpu = cpu_seconds(server_pids) - before
    rps, requests, p50, p99, errors = parse(out)
    return WrkResult(rps, requests, p50, p99, errors, cpu)
