"""Limits, graceful shutdown and safe reload, against a real gateway process."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import orjson

from tests.support.gateway import launch_gateway
from tests.support.rawhttp import exchange
from tests.test_lambda_backend import http


def limits_config(upstream: str, **limits) -> dict:
    return {
        "version": 3,
        "host": [upstream],
        "timeout": "10s",
        "extra_config": {"lambdagate/server": limits},
        "endpoints": [
            {"endpoint": "/echo", "method": "POST", "backend": [{"url_pattern": "/echo"}]},
            {"endpoint": "/get", "backend": [{"url_pattern": "/echo"}]},
            {"endpoint": "/slow/{ms}", "backend": [{"url_pattern": "/slow/{ms}"}]},
        ],
    }


def test_request_limits(upstream, start_gateway):
    gw = start_gateway(
        limits_config(upstream, max_body_bytes=1000, max_url_length=200, max_header_count=20, max_header_bytes=2000)
    )
    assert http("POST", f"{gw.url}/echo", b"x" * 1000)[0] == 200
    status, _, body = http("POST", f"{gw.url}/echo", b"x" * 1001)
    assert status == 413 and json.loads(body) == {"error": "request body larger than 1000 bytes"}
    assert http("GET", f"{gw.url}/get?q=" + "a" * 300)[0] == 414
    many = {f"X-H{i}": "v" for i in range(25)}
    assert http("GET", f"{gw.url}/get", None, many)[0] == 431
    assert http("GET", f"{gw.url}/get", None, {"X-Big": "v" * 3000})[0] == 431
    assert http("GET", f"{gw.url}/get")[0] == 200


def test_chunked_body_over_the_limit_is_refused(upstream, start_gateway):
    gw = start_gateway(limits_config(upstream, max_body_bytes=1000))
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        chunk = b"x" * 600
        req = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
            + b"0\r\n\r\n"
        )
        sock.sendall(req)
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def test_slow_body_gets_408(upstream, start_gateway):
    gw = start_gateway(limits_config(upstream, read_timeout="500ms"))
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-a-part")
        started = time.monotonic()
        assert sock.recv(100).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 3


def test_in_flight_cap_gives_503_with_retry_after(upstream, start_gateway):
    gw = start_gateway(limits_config(upstream, max_in_flight=2))
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(http("GET", f"{gw.url}/slow/1500")[0])) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # both are in flight now
    status, headers, _ = http("GET", f"{gw.url}/get")
    for t in threads:
        t.join()
    assert status == 503 and headers["Retry-After"] == "1"
    assert results == [200, 200]
    assert http("GET", f"{gw.url}/get")[0] == 200
    assert "requests in flight (max_in_flight)" in gw.log()


def _partial_post(port: int) -> socket.socket:
    """A POST /echo whose body (100 bytes) is only partly sent: the request waits for the rest."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + b"a" * 10
    )
    return sock


def test_trickled_bodies_hold_no_in_flight_place(upstream, start_gateway):
    # Requests waiting for their bodies are not work: clients trickling bodies must not lock everyone out (503).
    gw = start_gateway(limits_config(upstream, max_in_flight=2, read_timeout="10s"))
    port = int(gw.url.rsplit(":", 1)[1])
    waiting = [_partial_post(port) for _ in range(4)]
    try:
        time.sleep(0.5)  # all four are admitted and waiting for their bodies
        assert http("GET", f"{gw.url}/get")[0] == 200
        for sock in waiting:  # each body completes: served, one after the other
            sock.sendall(b"a" * 90)
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        for sock in waiting:
            sock.close()


def test_body_arriving_at_the_in_flight_cap_gets_503(upstream, start_gateway):
    gw = start_gateway(limits_config(upstream, max_in_flight=2, read_timeout="10s"))
    port = int(gw.url.rsplit(":", 1)[1])
    with _partial_post(port) as sock:
        time.sleep(0.3)
        results: list[int] = []
        slow = [
            threading.Thread(target=lambda: results.append(http("GET", f"{gw.url}/slow/1500")[0])) for _ in range(2)
        ]
        for t in slow:
            t.start()
        time.sleep(0.5)  # the two slow requests fill the cap
        sock.sendall(b"a" * 90)
        head = sock.recv(1000)
        for t in slow:
            t.join()
    assert head.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in head.lower()
    assert b"server busy, retry later" in head
    assert results == [200, 200]
    assert "after its body: 2 requests in flight (max_in_flight)" in gw.log()


def test_http11_request_without_host_gets_400(upstream, start_gateway):
    gw = start_gateway(limits_config(upstream))
    port = int(gw.url.rsplit(":", 1)[1])
    reply = exchange(port, b"GET /get HTTP/1.1\r\nAccept: */*\r\nConnection: close\r\n\r\n")
    assert reply.status == 400 and b"missing required Host header" in reply.body
    assert exchange(port, b"GET /get HTTP/1.0\r\n\r\n").status == 200  # HTTP/1.0 has no Host to require


def test_a_large_yaml_reply_does_not_stall_the_other_requests(upstream, start_gateway):
    # YAML is encoded in Python (~1 s a MB): a client asking for a large reply in YAML must not hold up the worker.
    cfg = limits_config(upstream)
    negotiated = {
        "endpoint": "/records/{n}",
        "output_encoding": "negotiate",
        "backend": [{"url_pattern": "/records/{n}"}],
    }
    cfg["endpoints"].append(negotiated)
    gw = start_gateway(cfg)
    yaml_reply: list = []

    def ask_yaml() -> None:
        started = time.monotonic()
        reply = http("GET", f"{gw.url}/records/12000", None, {"Accept": "application/x-yaml"})
        yaml_reply.append((reply, time.monotonic() - started))

    asking = threading.Thread(target=ask_yaml)
    asking.start()
    time.sleep(0.3)  # the backend's reply is in and being rendered
    probes: list[tuple[int, float]] = []
    while asking.is_alive() and len(probes) < 50:
        started = time.monotonic()
        probes.append((http("GET", f"{gw.url}/get")[0], time.monotonic() - started))
        time.sleep(0.02)
    asking.join()
    (status, headers, body), took = yaml_reply[0]
    assert status == 200 and headers["Content-Type"].startswith("application/x-yaml")
    assert body.startswith(b"records:") and body.count(b"-   id: ") == 12000
    assert took > 1.0, "the YAML reply was too quick to show a stall: make it larger"
    assert len(probes) >= 5 and all(s == 200 for s, _ in probes)
    assert max(t for _, t in probes) < 0.5, probes


def test_a_client_that_stops_reading_a_large_reply_is_dropped_after_send_timeout(upstream, start_gateway):
    cfg = limits_config(upstream, send_timeout="1s")
    cfg["endpoints"].append(
        {
            "endpoint": "/big/{n}",
            "output_encoding": "no-op",
            "backend": [{"url_pattern": "/big/{n}", "encoding": "no-op"}],
        }
    )
    gw = start_gateway(cfg)
    size = 8 * 1024 * 1024
    status, headers, body = http("GET", f"{gw.url}/big/{size}")  # a client that reads gets it whole, in order
    assert status == 200 and body == b'"' + b"x" * size + b'"'
    assert headers["Content-Length"] == str(size + 2) and "Transfer-Encoding" not in headers
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /big/{size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        _wait_for(lambda: "took none of a" in gw.log(), timeout=15)
    line = next(line for line in gw.log().splitlines() if "took none of a" in line)
    assert f"of a {size + 2}-byte reply for 1s (send_timeout)" in line  # and the body is let go
    assert http("GET", f"{gw.url}/get")[0] == 200


def test_sigterm_lets_in_flight_requests_finish(upstream, tmp_path):
    gateway = launch_gateway(limits_config(upstream, shutdown_grace="5s"), tmp_path)
    proc, url = gateway.process, gateway.url
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(http("GET", f"{url}/slow/1500")[0])) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    proc.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert proc.proc.wait(15) == 0
    assert results == [200] * 5
    proc.stop()


def test_reload_refuses_invalid_and_swaps_valid_config(upstream, tmp_path):
    cfg = limits_config(upstream)
    gateway = launch_gateway(cfg, tmp_path, "--watch")
    proc, url, path = gateway.process, gateway.url, tmp_path / "krakend.json"
    try:
        # invalid: refused with check's messages, the old config keeps serving
        path.write_text(
            '{"version": 3, "endpoints": [{"endpoint": "/x/{a}", "backend": [{"url_pattern": "/{b}", "host": ["h"]}]}]}'
        )
        # The refusal's line comes before its list of errors: wait for the error itself.
        _wait_for(lambda: "placeholder {b} is not in endpoint /x/{a}" in proc.log())
        assert "reload (file changed) refused" in proc.log()
        assert http("GET", f"{url}/get")[0] == 200
        # valid: swapped in; a request in flight during the swap finishes on the old config
        slow: list[int] = []
        t = threading.Thread(target=lambda: slow.append(http("GET", f"{url}/slow/2500")[0]))
        t.start()
        time.sleep(0.3)
        cfg["endpoints"].append({"endpoint": "/new", "backend": [{"url_pattern": "/echo"}]})
        path.write_bytes(orjson.dumps(cfg))
        _wait_for(lambda: http("GET", f"{url}/new")[0] == 200, timeout=20)
        t.join()
        assert slow == [200]
        # SIGHUP reloads as well
        cfg["endpoints"].append({"endpoint": "/newer", "backend": [{"url_pattern": "/echo"}]})
        path.write_bytes(orjson.dumps(cfg))
        proc.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: http("GET", f"{url}/newer")[0] == 200, timeout=20)
        # Where logs go and the metrics listener belong to the main process: the reload says they need a restart.
        cfg.setdefault("extra_config", {})["telemetry/logging"] = {"level": "WARNING"}
        path.write_bytes(orjson.dumps(cfg))
        _wait_for(lambda: "telemetry/logging changed; it applies at the next restart" in proc.log())
    finally:
        proc.stop()


def test_overlapping_reloads_settle_on_the_last_config(upstream, tmp_path):
    """SIGHUP and --watch fire for the same edits, several times in a row: the gateway ends up serving the last file
    (no reload loses a snapshot a respawning worker is loading)."""
    cfg = limits_config(upstream)
    gateway = launch_gateway(cfg, tmp_path, "--watch", "--workers", "2")
    proc, url, path = gateway.process, gateway.url, tmp_path / "krakend.json"
    try:
        for i in range(4):
            cfg["endpoints"].append({"endpoint": f"/round{i}", "backend": [{"url_pattern": "/echo"}]})
            path.write_bytes(orjson.dumps(cfg))
            proc.proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)
        for _ in range(10):  # both workers, whichever answers
            _wait_for(lambda: http("GET", f"{url}/round3")[0] == 200, timeout=30)
        assert "Traceback" not in proc.log() and proc.proc.poll() is None
    finally:
        proc.stop()


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_router_errors_and_health_methods(upstream, start_gateway):
    gw = start_gateway(limits_config(upstream))
    status, headers, _ = http("GET", f"{gw.url}/nope")
    assert status == 404 and headers["X-KrakenD-Completed"] == "false"
    status, headers, _ = http("POST", f"{gw.url}/__health", b"")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_accept_encoding_is_never_forwarded(upstream, start_gateway):
    cfg = limits_config(upstream)
    cfg["endpoints"][1]["input_headers"] = ["*"]
    gw = start_gateway(cfg)
    status, _, body = http("GET", f"{gw.url}/get", None, {"Accept-Encoding": "br", "X-Keep": "1"})
    headers = json.loads(body)["headers"]
    assert status == 200 and headers["x-keep"] == "1" and "br" not in headers.get("accept-encoding", "")
