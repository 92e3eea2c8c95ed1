"""Observability end to end: one real gateway (two workers) with metrics, JSON logs and tracing on, real
upstreams, the Invoke-API stub and an OTLP/HTTP collector stub, all on 127.0.0.1.

What is asserted is what an operator sees: the scraped /metrics text after known traffic, the spans the
collector received, the access log lines, and the headers that reached the backends.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import Gateway, launch_gateway
from tests.support.procs import free_port, serve_module
from tests.test_lambda_backend import AWS_ENV, http

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def otlp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_module("tests.support.otlp", "/spans", tmp_path_factory.mktemp("otlp")) as url:
        yield url


def lam(stub: str, function: str | None, **fields) -> dict:
    named = {"function_name": function} if function else {}
    return {"extra_config": {"backend/lambda": {**named, "endpoint": stub, "region": "us-east-1", **fields}}}


@pytest.fixture(scope="module")
def gw(upstream, stub, otlp, tmp_path_factory) -> Iterator[tuple[Gateway, str]]:
    metrics_port = free_port()
    otlp_port = int(otlp.rsplit(":", 1)[1])
    config = {
        "version": 3,
        "timeout": "2s",
        "extra_config": {
            "telemetry/metrics": {"listen_address": f"127.0.0.1:{metrics_port}"},
            "telemetry/logging": {"level": "INFO", "format": "logstash", "prefix": "[GW]"},
            "telemetry/opentelemetry": {
                "service_name": "obs-test",
                "trace_sample_rate": 1,
                "exporters": {"otlp": [{"name": "local", "host": "127.0.0.1", "port": otlp_port, "use_http": True}]},
            },
        },
        "endpoints": [
            {
                "endpoint": "/obs/http",
                "input_headers": ["X-Client"],
                "backend": [{"host": [upstream], "url_pattern": "/echo/obs"}],
            },
            {"endpoint": "/obs/status/{code}", "backend": [{"host": [upstream], "url_pattern": "/status/{code}"}]},
            {
                "endpoint": "/obs/details",
                "backend": [
                    {
                        "host": [upstream],
                        "url_pattern": "/status/404",
                        "extra_config": {"backend/http": {"return_error_details": "up"}},
                    }
                ],
            },
            {"endpoint": "/obs/lambda", "backend": [lam(stub, "echo-obs")]},
            {
                "endpoint": "/obs/v2",
                "input_headers": ["X-Client"],
                "backend": [lam(stub, "echo-v2", payload_format="apigateway_v2")],
            },
            {"endpoint": "/obs/fn-error", "backend": [lam(stub, "unhandled")]},
            {"endpoint": "/obs/throttle", "backend": [lam(stub, "throttle")]},
            {"endpoint": "/obs/flaky", "backend": [lam(stub, "flaky-2", max_retries=3)]},
            {"endpoint": "/obs/timeout", "backend": [lam(stub, "sandbox-timeout")]},
            {"endpoint": "/obs/fn/{name}", "backend": [lam(stub, None, function_param_name="name")]},
            {
                "endpoint": "/obs/creds",
                "backend": [
                    {"host": [upstream.replace("//", "//user:s3cret@")], "url_pattern": "/echo/creds?api_key=k3y"}
                ],
            },
            {
                "endpoint": "/obs/partial",
                "timeout": "300ms",
                "backend": [
                    {"host": [upstream], "url_pattern": "/json/fast", "group": "fast"},
                    {"host": [upstream], "url_pattern": "/slow/2000", "group": "slow"},
                ],
            },
            {
                "endpoint": "/obs/merge",
                "backend": [
                    {"host": [upstream], "url_pattern": "/json/a", "group": "http"},
                    {**lam(stub, "object"), "group": "fn"},
                ],
            },
        ],
    }
    env = {**AWS_ENV, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    gateway = launch_gateway(config, tmp_path_factory.mktemp("obs"), "--workers", "2", env=env)
    try:
        yield gateway, f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        gateway.process.stop()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return "\n".join(
            x for x in resp.read().decode().splitlines() if x.startswith("lambdagate_") and "_bucket" not in x
        )


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_deltas(
    metrics_url: str, before: dict, expected: dict[tuple, float], timeout: float = 5.0
) -> tuple[dict, dict]:
    """Scrape until every series in `expected` ((name, label pairs...) → change) moved by that much since
    `before`; each worker writes its counts on its own, twice a second. Returns the last scrape and the changes."""
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(metrics_url)
        got = {key: value(s, key[0], **dict(key[1:])) - value(before, key[0], **dict(key[1:])) for key in expected}
        if got == expected or time.monotonic() > deadline:
            return s, got
        time.sleep(0.1)


def wait_for(check, timeout: float = 5.0):
    """Poll until `check()` returns a truthy value (snapshots and span batches arrive within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def access_lines(gateway: Gateway) -> list[dict]:
    lines = []
    for line in gateway.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)  # every JSON-looking line must parse
            if entry.get("logger") == "lambdagate.access":
                lines.append(entry)
    return lines


def test_request_id_round_trip(gw):
    gateway, _ = gw
    status, headers, body = http("GET", gateway.url + "/obs/http", headers={"X-Request-Id": "req-abc.123"})
    assert status == 200 and headers["X-Request-Id"] == "req-abc.123"
    assert json.loads(body)["headers"]["x-request-id"] == "req-abc.123"  # forwarded to the HTTP backend
    # A client id that could smuggle text into logs is replaced by a generated one.
    status, headers, body = http("GET", gateway.url + "/obs/http", headers={"X-Request-Id": "bad id\tinjected"})
    generated = headers["X-Request-Id"]
    assert status == 200 and generated != "bad id\tinjected" and " " not in generated
    assert json.loads(body)["headers"]["x-request-id"] == generated
    _, first, _ = http("GET", gateway.url + "/obs/http")
    _, second, _ = http("GET", gateway.url + "/obs/http")
    assert first["X-Request-Id"] != second["X-Request-Id"]


def test_access_log_json_line_per_request(gw):
    gateway, _ = gw
    http("GET", gateway.url + "/obs/merge", headers={"X-Request-Id": "log-merge-1"})
    http("GET", gateway.url + "/obs/status/503", headers={"X-Request-Id": "log-503-1"})
    http("GET", gateway.url + "/nowhere", headers={"X-Request-Id": "log-404-1"})
    http("GET", gateway.url + "/obs/details", headers={"X-Request-Id": "log-details-1"})

    def lines():
        found = {e["request_id"]: e for e in access_lines(gateway)}
        return found if {"log-merge-1", "log-503-1", "log-404-1", "log-details-1"} <= found.keys() else None

    found = wait_for(lines)
    assert found, gateway.log()[-3000:]
    merge = found["log-merge-1"]
    assert (merge["method"], merge["route"], merge["path"], merge["status"]) == ("GET", "/obs/merge", "/obs/merge", 200)
    assert merge["bytes"] > 0 and merge["duration_ms"] > 0 and merge["module"] == "[GW]"
    assert merge["client_ip"] == "127.0.0.1"
    assert sorted(b["outcome"] for b in merge["backends"]) == ["success", "success"]
    assert any(b["backend"].startswith("lambda object") for b in merge["backends"])
    failed = found["log-503-1"]
    assert failed["status"] == 500 and failed["route"] == "/obs/status/{code}"
    assert [b["outcome"] for b in failed["backends"]] == ["error"]
    # A failed call whose details the client gets (backend/http return_error_details) is still a failed call.
    details = found["log-details-1"]
    assert (details["status"], [b["outcome"] for b in details["backends"]]) == (200, ["error"])
    assert found["log-404-1"]["status"] == 404 and found["log-404-1"]["route"] is None
    # The backend failure itself is logged as a warning carrying the request id.
    warnings = [json.loads(x) for x in gateway.log().splitlines() if x.startswith("{") and '"WARNING"' in x]
    assert any(w.get("message", "").find("request_id=log-503-1") >= 0 for w in warnings)


def test_metrics_count_traffic_across_workers(gw):
    gateway, metrics_url = gw
    time.sleep(1.2)  # the earlier tests' requests reach the workers' snapshots (written every 0.5 s)
    before = scrape(metrics_url)
    calls = {
        "/obs/http": 6,
        "/obs/lambda": 4,
        "/obs/fn-error": 2,
        "/obs/throttle": 1,
        "/obs/flaky": 1,
        "/obs/status/500": 3,
    }
    for path, n in calls.items():
        for _ in range(n):
            http("GET", gateway.url + path)

    R, D, L = "lambdagate_requests_total", "lambdagate_request_duration_seconds", "lambdagate_lambda_invocations_total"
    expected = {
        (R, ("endpoint", "/obs/http"), ("method", "GET"), ("status", "200")): 6,
        (R, ("endpoint", "/obs/fn-error"), ("method", "GET"), ("status", "500")): 2,
        (R, ("endpoint", "/obs/throttle"), ("method", "GET"), ("status", "429")): 1,
        (R, ("endpoint", "/obs/status/{code}"), ("method", "GET"), ("status", "500")): 3,
        (D + "_count", ("endpoint", "/obs/http"), ("method", "GET")): 6,
        (D + "_bucket", ("endpoint", "/obs/http"), ("le", "+Inf"), ("method", "GET")): 6,
        # Lambda, per function and outcome; flaky-2 succeeded after two throttled attempts (retries).
        (L, ("function", "echo-obs"), ("outcome", "success")): 4,
        (L, ("function", "unhandled"), ("outcome", "function_error")): 2,
        (L, ("function", "throttle"), ("outcome", "throttled")): 1,
        (L, ("function", "flaky-2"), ("outcome", "success")): 1,
        ("lambdagate_lambda_retries_total", ("function", "flaky-2")): 2,
        ("lambdagate_lambda_invocation_duration_seconds_count", ("function", "echo-obs")): 4,
    }
    s, got = wait_for_deltas(metrics_url, before, expected)
    assert got == expected, f"{scrape_text(metrics_url)}\n{gateway.log()[-2000:]}"
    # Backend calls with their outcome.
    http_backend = [
        k for k in s if k[0] == "lambdagate_backend_calls_total" and ("endpoint", "/obs/status/{code}") in k[1]
    ]
    assert http_backend and all(dict(k[1])["outcome"] == "error" for k in http_backend)
    assert sum(s[k] - before.get(k, 0) for k in http_backend) == 3
    assert value(s, "lambdagate_in_flight_requests") == 0
    assert value(s, "lambdagate_workers") == 2


def test_metrics_are_not_on_the_api_port(gw):
    gateway, _ = gw
    status, _, _ = http("GET", gateway.url + "/metrics")
    assert status == 404


def spans_of(otlp: str, trace_id: str) -> list[dict]:
    with urllib.request.urlopen(otlp + "/spans", timeout=5) as resp:
        return [s for s in json.loads(resp.read()) if s["trace_id"] == trace_id]


def test_trace_spans_and_propagation_to_http(gw, otlp):
    gateway, _ = gw
    traceparent = f"00-{TRACE_ID}-{CLIENT_PARENT}-01"
    status, _, body = http(
        "GET", gateway.url + "/obs/http", headers={"traceparent": traceparent, "X-Request-Id": "traced-1"}
    )
    assert status == 200
    seen = json.loads(body)["headers"]["traceparent"]
    version, trace_id, parent_id, flags = seen.split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")

    spans = wait_for(lambda: (lambda sp: sp if len(sp) >= 2 else None)(spans_of(otlp, TRACE_ID)))
    assert spans, "the collector got no spans"
    server = next(s for s in spans if s["kind"] == "SERVER")
    client = next(s for s in spans if s["kind"] == "CLIENT")
    assert server["parent_span_id"] == CLIENT_PARENT and server["name"] == "GET /obs/http"
    assert server["service_name"] == "obs-test"
    assert client["parent_span_id"] == server["span_id"]
    assert parent_id == client["span_id"]  # the upstream's parent is the gateway's client span
    # Logs and traces link both ways: the access line names the trace, the span names the request id.
    assert server["attributes"]["lambdagate.request_id"] == "traced-1"
    entry = wait_for(lambda: next((e for e in access_lines(gateway) if e["request_id"] == "traced-1"), None))
    assert entry and entry["trace_id"] == TRACE_ID


def test_trace_context_reaches_lambda(gw, otlp, stub):
    gateway, _ = gw
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    status, _, _ = http("GET", gateway.url + "/obs/v2", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    assert status == 200
    with urllib.request.urlopen(stub + "/__last/echo-v2", timeout=5) as resp:
        last = json.loads(resp.read())
    amzn = last["headers"]["X-Amzn-Trace-Id"]
    assert amzn.startswith(f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent=") and amzn.endswith(";Sampled=1")
    event = json.loads(last["payload"])
    assert event["headers"]["traceparent"].split("-")[1] == trace_id  # inside the API Gateway v2 event

    spans = wait_for(lambda: (lambda sp: sp if len(sp) >= 3 else None)(spans_of(otlp, trace_id)))
    assert spans, "the collector got no spans"
    by_name = {s["name"]: s for s in spans}
    invoke = next(s for s in spans if s["name"].startswith("lambda.invoke"))
    backend = next(s for s in spans if s["name"].startswith("backend "))
    assert invoke["parent_span_id"] == backend["span_id"]
    assert invoke["attributes"]["faas.invoked_name"] == "echo-v2"
    assert amzn.split("Parent=")[1].split(";")[0] == invoke["span_id"]
    assert by_name["GET /obs/v2"]["span_id"] == backend["parent_span_id"]


def test_unmatched_refused_unknown_and_timed_out_are_counted(gw):
    gateway, metrics_url = gw
    time.sleep(1.2)
    before = scrape(metrics_url)
    assert http("GET", gateway.url + "/obs/nothing-here")[0] == 404
    status, headers, _ = http("GET", gateway.url + "/obs/http?q=" + "a" * 9000)  # over max_url_length (8192)
    assert status == 414 and headers["X-Request-Id"]  # refusals carry a request id too
    assert http("GET", gateway.url + "/obs/fn/made-up-name")[0] == 404
    assert http("GET", gateway.url + "/obs/timeout")[0] == 500
    assert http("GET", gateway.url + "/obs/fn/%2E%2E")[0] == 400  # refused by a matched endpoint: counted there

    expected = {
        ("lambdagate_requests_total", ("endpoint", "_unmatched"), ("method", "*"), ("status", "404")): 1,
        ("lambdagate_requests_total", ("endpoint", "_refused"), ("method", "*"), ("status", "414")): 1,
        ("lambdagate_requests_total", ("endpoint", "/obs/fn/{name}"), ("method", "GET"), ("status", "400")): 1,
        ("lambdagate_lambda_invocations_total", ("function", "_unknown"), ("outcome", "aws_error")): 1,
        ("lambdagate_lambda_invocations_total", ("function", "sandbox-timeout"), ("outcome", "timeout")): 1,
    }
    s, got = wait_for_deltas(metrics_url, before, expected)
    assert got == expected, scrape_text(metrics_url)
    assert not any(dict(k[1]).get("function") == "made-up-name" for k in s)


def test_backend_labels_hide_credentials(gw):
    gateway, metrics_url = gw
    status, _, body = http("GET", gateway.url + "/obs/creds", headers={"X-Request-Id": "creds-1"})
    assert status == 200 and json.loads(body)["query"] == {"api_key": ["k3y"]}  # still sent upstream
    entry = wait_for(lambda: next((e for e in access_lines(gateway) if e["request_id"] == "creds-1"), None))
    assert entry and entry["backends"][0]["backend"].endswith("/echo/creds")
    time.sleep(0.7)
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    for secret in ("s3cret", "k3y"):
        assert secret not in text and secret not in json.dumps(entry)


def test_timed_out_merge_backend_is_in_the_access_line(gw):
    gateway, _ = gw
    status, headers, _ = http("GET", gateway.url + "/obs/partial", headers={"X-Request-Id": "partial-1"})
    assert status == 200 and headers["X-KrakenD-Completed"] == "false"
    entry = wait_for(lambda: next((e for e in access_lines(gateway) if e["request_id"] == "partial-1"), None))
    assert entry, gateway.log()[-2000:]
    assert sorted(b["outcome"] for b in entry["backends"]) == ["success", "timeout"]
