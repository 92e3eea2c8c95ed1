"""The fault matrix of docs/reliability.md: every row is a real faulty upstream or Invoke API on 127.0.0.1.

One gateway process serves an endpoint per (fault, backend type); each test checks what the client sees
(status, body, X-KrakenD-Completed, Retry-After) and what the gateway logged for that request id.
Faulty peers: tests/support/faulty.py (raw sockets: resets, 50 MiB replies, a gzip bomb, bad headers),
tests/support/invoke_stub.py (Lambda's error shapes, rotating container credentials) and
tests/support/upstream.py. DNS failures run the gateway in a network namespace (see test_dns_failure).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import Gateway, launch_gateway
from tests.support.procs import ROOT, Process, free_port
from tests.test_lambda_backend import AWS_ENV, http

MiB = 1024 * 1024


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def dead() -> str:
    """A loopback port nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


def http_backend(host: str, path: str, **fields) -> dict:
    return {"host": [host], "url_pattern": path, **fields}


def lambda_backend(endpoint: str, function: str, **fields) -> dict:
    group = fields.pop("group", None)
    backend = {
        "extra_config": {
            "backend/lambda": {"function_name": function, "endpoint": endpoint, "region": "us-east-1", **fields}
        }
    }
    return {**backend, "group": group} if group else backend


@pytest.fixture(scope="module")
def gw(upstream, faulty, stub, dead, tmp_path_factory) -> Iterator[Gateway]:
    endpoints = {
        # HTTP backends
        "/http/refused": [http_backend(dead, "/x")],
        "/http/reset": [http_backend(faulty, "/reset")],
        "/http/slow": [http_backend(upstream, "/slow/3000")],
        "/http/5xx": [http_backend(upstream, "/status/503")],
        "/http/429": [http_backend(faulty, "/throttle")],
        "/http/invalid": [http_backend(upstream, "/invalid")],
        "/http/huge": [http_backend(faulty, "/huge")],
        "/http/huge-chunked": [http_backend(faulty, "/huge-chunked")],
        "/http/gzip-bomb": [http_backend(faulty, "/gzip-bomb")],
        # Lambda backends (retries on, to show which faults are retried)
        "/lambda/refused": [lambda_backend(dead, "fn", max_retries=2)],
        "/lambda/reset": [lambda_backend(faulty, "reset", max_retries=2)],
        "/lambda/slow": [lambda_backend(stub, "slow", max_retries=2)],
        "/lambda/5xx": [lambda_backend(stub, "service-500", max_retries=1)],
        "/lambda/429": [lambda_backend(stub, "throttle", max_retries=2)],
        "/lambda/invalid": [lambda_backend(stub, "notjson", max_retries=2)],
        "/lambda/huge": [lambda_backend(faulty, "huge", max_retries=2)],
        "/lambda/huge-chunked": [lambda_backend(faulty, "huge-chunked", max_retries=2)],
        "/lambda/gzip-bomb": [lambda_backend(faulty, "gzip-bomb", max_retries=2)],
        # one of three merged backends down (or late)
        "/merged/http-down": [
            http_backend(upstream, "/json/a", group="a"),
            lambda_backend(stub, "object", group="fn"),
            http_backend(dead, "/x", group="down"),
        ],
        "/merged/lambda-down": [
            http_backend(upstream, "/json/a", group="a"),
            http_backend(upstream, "/json/b", group="b"),
            lambda_backend(dead, "fn", group="down"),
        ],
        "/merged/one-late": [
            http_backend(upstream, "/json/a", group="a"),
            lambda_backend(stub, "slow", group="late"),
            http_backend(upstream, "/json/b", group="b"),
        ],
        "/merged/one-huge": [
            http_backend(upstream, "/json/a", group="a"),
            http_backend(faulty, "/huge-chunked", group="big"),
            lambda_backend(faulty, "gzip-bomb", group="bomb"),
        ],
    }
    config = {
        "version": 3,
        "timeout": "2s",
        "endpoints": [
            {"endpoint": path, "backend": backends, **({"timeout": "1s"} if "slow" in path or "late" in path else {})}
            for path, backends in endpoints.items()
        ],
    }
    config["endpoints"] += [
        {"endpoint": "/noop/429", "output_encoding": "no-op", "backend": [http_backend(faulty, "/throttle")]},
        {"endpoint": "/noop/5xx", "output_encoding": "no-op", "backend": [http_backend(upstream, "/status/503")]},
        {"endpoint": "/noop/refused", "output_encoding": "no-op", "backend": [http_backend(dead, "/x")]},
        {
            "endpoint": "/noop/header-utf8",
            "output_encoding": "no-op",
            "backend": [http_backend(faulty, "/header-utf8")],
        },
        {"endpoint": "/noop/header-ctl", "output_encoding": "no-op", "backend": [http_backend(faulty, "/header-ctl")]},
    ]
    gateway = launch_gateway(config, tmp_path_factory.mktemp("gw"), env=AWS_ENV)
    yield gateway
    gateway.process.stop()


def logged(gw: Gateway, request_id: str, needle: str, timeout: float = 3.0) -> str:
    """The gateway's log line about `request_id` that contains `needle` (waits briefly for it)."""
    end = time.monotonic() + timeout
    while True:
        lines = [line for line in gw.log().splitlines() if f"request_id={request_id}" in line and needle in line]
        if lines:
            return lines[0]
        if time.monotonic() > end:
            raise AssertionError(f"no log line with {needle!r} for request {request_id}:\n{gw.log()[-3000:]}")
        time.sleep(0.05)


UNAVAILABLE = {"error": "the backend is unavailable"}
FAILED = {"error": "the backend failed"}
LATE = {"error": "the backend did not answer in time"}
TOO_LARGE = {"error": "the backend reply is too large"}

# (path, status, body, what the "backend failed" log line says)
ROWS = [
    ("/http/refused", 500, UNAVAILABLE, "ClientConnectorError: Cannot connect to host"),
    ("/http/reset", 500, UNAVAILABLE, "ClientPayloadError: Response payload is not completed"),
    ("/http/slow", 504, LATE, "deadline exceeded"),
    ("/http/5xx", 500, FAILED, "invalid status code 503"),
    ("/http/429", 500, FAILED, "invalid status code 429"),
    ("/http/invalid", 500, {"error": "the backend reply is not valid JSON"}, "invalid JSON"),
    ("/http/huge", 502, TOO_LARGE, f"reply of {50 * MiB + 2} bytes exceeds {16 * MiB}"),
    ("/http/huge-chunked", 502, TOO_LARGE, f"reply exceeds {16 * MiB} bytes"),
    ("/http/gzip-bomb", 502, TOO_LARGE, f"reply exceeds {16 * MiB} bytes"),
    ("/lambda/refused", 500, FAILED, "ConnectionError: ClientConnectorError"),
    ("/lambda/reset", 500, FAILED, "IncompleteReply: ClientPayloadError"),
    ("/lambda/slow", 504, LATE, "deadline exceeded"),
    ("/lambda/5xx", 500, FAILED, "ServiceException (HTTP 500)"),
    ("/lambda/429", 429, {"error": "too many requests"}, "TooManyRequestsException (HTTP 429)"),
    ("/lambda/invalid", 500, {"error": "the function reply is not valid JSON"}, "reply is not JSON"),
    ("/lambda/huge", 502, TOO_LARGE, "ResponseTooLarge"),
    ("/lambda/huge-chunked", 502, TOO_LARGE, "ResponseTooLarge"),
    ("/lambda/gzip-bomb", 502, TOO_LARGE, "ResponseTooLarge"),
    ("/noop/5xx", 503, {"status": 503}, None),
    ("/noop/refused", 502, UNAVAILABLE, "ClientConnectorError"),
    ("/noop/header-ctl", 502, {"error": "the backend reply is malformed"}, "header X-Ctl holds a control character"),
]


@pytest.mark.parametrize(("path", "status", "body", "cause"), ROWS, ids=[r[0] for r in ROWS])
def test_fault_row(gw, path, status, body, cause):
    started = time.monotonic()
    got, headers, raw = http("GET", gw.url + path)
    took = time.monotonic() - started
    assert (got, json.loads(raw)) == (status, body)
    assert headers["X-KrakenD-Completed"] == "false"
    assert headers["Content-Type"].startswith("application/json")
    # Never hangs: a late backend (3 s) is cut at the endpoint's deadline (1 s), the rest answer at once.
    assert took < (2.8 if "slow" in path else 2.0)
    if cause:
        line = logged(gw, headers["X-Request-Id"], "backend failed:")
        assert cause in line and f"{path} backend[0]" in line and f"status={status}" in line


def test_lambda_retries_only_when_the_function_did_not_run(gw, faulty, stub):
    def invocations(path: str, counter: str) -> int:
        before = get_json(counter)["calls"]
        http("GET", gw.url + path)
        return get_json(counter)["calls"] - before

    # refused: the function cannot have run, so both retries happen (and are logged)
    _, headers, _ = http("GET", gw.url + "/lambda/refused")
    assert "attempt=2/3" in logged(gw, headers["X-Request-Id"], "lambda invoke retry")
    assert "attempt=3/3" in logged(gw, headers["X-Request-Id"], "lambda invoke retry: function=fn attempt=3")
    # reset after the reply's headers: the function ran, so it is never invoked twice
    assert invocations("/lambda/reset", f"{faulty}/__calls/reset") == 1
    # 5xx from the Lambda service: retried (max_retries 1: 2 calls)
    assert invocations("/lambda/5xx", f"{stub}/__calls/service-500") == 2
    # 429 whose Retry-After (3s) is past the deadline (2s): given up at once, Retry-After passed on
    assert invocations("/lambda/429", f"{stub}/__calls/throttle") == 1
    status, headers, _ = http("GET", gw.url + "/lambda/429")
    assert (status, headers["Retry-After"]) == (429, "3")
    # an invalid reply is the function's answer: never retried
    assert invocations("/lambda/invalid", f"{stub}/__calls/notjson") == 1
    # a reply over the size limit: the function ran, never retried
    assert invocations("/lambda/huge", f"{faulty}/__calls/huge") == 1


def test_429_passes_retry_after_with_no_op(gw):
    status, headers, body = http("GET", gw.url + "/noop/429")
    assert (status, headers["Retry-After"], json.loads(body)) == (429, "7", {"message": "slow down"})
    assert headers["X-KrakenD-Completed"] == "false"


def test_no_op_header_bytes_pass_unchanged(gw):
    """A header value outside Latin-1 (or not UTF-8 at all) is passed on byte for byte, not a 500."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]), timeout=10)
    conn.request("GET", "/noop/header-utf8")
    resp = conn.getresponse()
    raw = {k.lower(): v.encode("latin-1") for k, v in resp.getheaders()}  # http.client decodes as Latin-1
    assert resp.status == 200 and json.loads(resp.read()) == {"name": "header-utf8"}
    assert raw["x-utf8"] == "price: 5\u20ac".encode() and raw["x-latin1"] == b"caf\xe9"
    conn.close()


@pytest.mark.parametrize(
    ("path", "present", "absent"),
    [
        ("/merged/http-down", {"a", "fn"}, "down"),
        ("/merged/lambda-down", {"a", "b"}, "down"),
        ("/merged/one-late", {"a", "b"}, "late"),
        ("/merged/one-huge", {"a"}, "big"),
    ],
)
def test_one_of_three_merged_backends_down(gw, path, present, absent):
    started = time.monotonic()
    status, headers, raw = http("GET", gw.url + path)
    body = json.loads(raw)
    assert status == 200 and set(body) == present and headers["X-KrakenD-Completed"] == "false"
    assert time.monotonic() - started < 2.8  # the late one (3 s) is dropped at the deadline (1 s)
    line = logged(gw, headers["X-Request-Id"], "backend failed:")
    assert f"{path} backend[" in line


# ------------------------------------------------------------------------------------------ memory


def worker_pid(gw: Gateway) -> int:
    pid = gw.process.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children  # one granian worker
    return int(children[0])


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_50_mib_replies_never_buffered(gw):
    """Peak RSS of the worker (VmHWM, reset first) stays far below one 50 MiB reply: refused by size, or counted
    while read and cut at max_backend_response_bytes (16 MiB; Lambda's 6 MiB)."""
    pid = worker_pid(gw)
    for path in ("/http/huge", "/lambda/huge"):  # warm up the code paths
        http("GET", gw.url + path)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = memory_kib(pid, "VmHWM")
    for _ in range(2):
        for path in (
            "/http/huge",
            "/http/huge-chunked",
            "/http/gzip-bomb",
            "/lambda/huge",
            "/lambda/huge-chunked",
            "/lambda/gzip-bomb",
        ):
            assert http("GET", gw.url + path)[0] == 502
        assert http("GET", gw.url + "/merged/one-huge")[0] == 200
    growth_mib = (memory_kib(pid, "VmHWM") - before) / 1024
    assert growth_mib < 30, f"peak RSS grew by {growth_mib:.1f} MiB"
    # and nothing stays pinned: repeated refusals do not add up (each used to hold its 16 MiB until a GC pass)
    rss = memory_kib(pid, "VmRSS")
    for _ in range(8):
        http("GET", gw.url + "/http/huge-chunked")
    assert (memory_kib(pid, "VmRSS") - rss) / 1024 < 30
    assert http("GET", gw.url + "/merged/lambda-down")[0] == 200  # still serving


# ------------------------------------------------------------------------------ credentials


def test_credentials_expiring_mid_run_are_refreshed(stub, tmp_path):
    """ECS-style container credentials from a loopback endpoint, each key valid for 4 s (time-compressed, see
    tests/support/invoke_stub.py). Traffic runs across several expiries and an idle gap longer than a key's life:
    keys rotate and not one request fails."""
    env = {
        **AWS_ENV,
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{stub}/creds",
    }
    config = {
        "version": 3,
        "timeout": "2s",
        "endpoints": [{"endpoint": "/fn", "backend": [lambda_backend(stub, "creds-check")]}],
    }
    gateway = launch_gateway(config, tmp_path, env=env)
    try:
        assert "AWS credentials from container-role" in gateway.log()
        statuses: list[int] = []

        def traffic(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                statuses.append(http("GET", gateway.url + "/fn")[0])
                time.sleep(0.02)

        time.sleep(5)  # idle past the first key's life before the first request
        threads = [threading.Thread(target=traffic, args=(9,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(5)  # idle again, longer than a key lives
        traffic(1)
        keys = get_json(f"{stub}/__keys")["used"]
        assert statuses and set(statuses) == {200}, f"{statuses.count(200)} ok of {len(statuses)}: {set(statuses)}"
        assert len(set(keys)) >= 4 and all(k.startswith("ASIAROT") for k in keys)
        assert "refused the credentials" not in gateway.log()
    finally:
        gateway.process.stop()


# ------------------------------------------------------------------------------------------ DNS

NETNS_REASON = (
    "needs root and `ip netns`: the gateway must run in a network namespace whose only interface is "
    "loopback and whose resolv.conf points at a loopback DNS stub, so that no lookup leaves loopback"
)


def _netns_available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and Path("/etc").is_dir()


@pytest.fixture
def netns(tmp_path) -> Iterator[str]:
    if not _netns_available():
        pytest.skip(NETNS_REASON)
    name = f"lgdns{os.getpid()}"
    etc = Path("/etc/netns") / name
    made_parent = not etc.parent.exists()
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"{NETNS_REASON} ({made.stderr.strip()})")
    try:
        etc.mkdir(parents=True, exist_ok=True)
        # Bind-mounted over /etc/resolv.conf by `ip netns exec`: lookups go to the stub, one try, one second.
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        shutil.rmtree(etc, ignore_errors=True)
        if made_parent:
            try:
                etc.parent.rmdir()
            except OSError:  # another namespace's files are there now: leave it
                pass


_CLIENT = """
import json, sys, urllib.request, urllib.error
out = []
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            out.append([r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()])
    except urllib.error.HTTPError as e:
        out.append([e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()])
print(json.dumps(out))
"""


def test_dns_failure(netns, tmp_path):
    """Names that do not resolve (NXDOMAIN from a loopback DNS stub) inside a loopback-only network namespace."""
    inside = ["ip", "netns", "exec", netns]
    queries = tmp_path / "dns-queries.log"
    dns = Process([*inside, sys.executable, "-m", "tests.support.dns_stub", "53", str(queries)], tmp_path / "dns.log")
    config = {
        "version": 3,
        "timeout": "3s",
        "endpoints": [
            {"endpoint": "/http", "backend": [http_backend("http://backend.invalid:8080", "/x")]},
            {"endpoint": "/lambda", "backend": [lambda_backend("http://lambda.invalid:9000", "fn", max_retries=1)]},
        ],
    }
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(config))
    port = free_port()
    gw = Process(
        [
            *inside,
            sys.executable,
            "-m",
            "lambdagate",
            "run",
            "-c",
            str(path),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        tmp_path / "gateway.log",
        AWS_ENV,
    )
    try:
        urls = [f"http://127.0.0.1:{port}{p}" for p in ("/__health", "/http", "/lambda")]
        result = None
        for _ in range(100):  # the gateway is only reachable from inside the namespace
            run = subprocess.run(
                [*inside, sys.executable, "-c", _CLIENT, *urls], capture_output=True, text=True, timeout=30, cwd=ROOT
            )
            if run.returncode == 0:
                result = json.loads(run.stdout)
                break
            assert gw.proc.poll() is None, gw.log()
            time.sleep(0.2)
        assert result is not None, f"gateway unreachable in the namespace:\n{gw.log()}"
        (_, _, _), (http_status, http_headers, http_body), (lam_status, lam_headers, lam_body) = result
        assert (http_status, json.loads(http_body)) == (500, UNAVAILABLE)
        assert (lam_status, json.loads(lam_body)) == (500, FAILED)
        assert http_headers["x-krakend-completed"] == lam_headers["x-krakend-completed"] == "false"
        log = gw.log()
        assert "Cannot connect to host backend.invalid:8080" in log
        assert "lambda invoke retry: function=fn attempt=2/2" in log  # a lookup failure: the function did not run
        names = set(queries.read_text().split())
        assert {"backend.invalid", "lambda.invalid"} <= names, names  # the lookups reached the loopback stub
    finally:
        gw.stop()
        dns.stop()
