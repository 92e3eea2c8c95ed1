"""OpenTelemetry traces: the `telemetry/opentelemetry` namespace, spans and their parents, propagation headers,
and export to real OTLP/HTTP and OTLP/gRPC collector processes."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from lambdagate.errors import BackendError
from lambdagate.proxy import ProxyRequest, ProxyResponse
from lambdagate.telemetry.tracing import DEFAULT_SKIP_PATHS, Tracing, TracingOptions, parse_xray_header, tracing_options
from tests.support.configs import load_with_namespace, namespace_errors
from tests.support.procs import ROOT, serve_module

PATH = 'extra_config["telemetry/opentelemetry"]'
OTLP = {"name": "collector", "host": "localhost", "use_http": True}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
XRAY_ROOT, XRAY_PARENT = "1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
XRAY_TRACE_ID = "5759e988bd862e3fe1be46a994272793"

# --- the namespace, through the real loader ---------------------------------------------------------------


def load(tmp_path: Path, otel: Any = None, **service: Any) -> Any:
    return load_with_namespace(tmp_path, "telemetry/opentelemetry", otel, **service)


def config_errors(tmp_path: Path, otel: Any) -> list[str]:
    return namespace_errors(tmp_path, "telemetry/opentelemetry", otel)


def test_tracing_is_off_without_the_namespace(tmp_path: Path) -> None:
    assert tracing_options(load(tmp_path).service) is None


def test_defaults(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"exporters": {"otlp": [OTLP]}})
    options = tracing_options(loaded.service)
    assert options is not None and loaded.warnings == []
    assert (options.service_name, options.service_version, options.deploy_env, options.trace_sample_rate) == (
        "lambdagate",
        None,
        None,
        1.0,
    )
    assert options.skip_paths == DEFAULT_SKIP_PATHS == ["/__health", "/__debug/", "/__echo/", "/__stats/"]
    assert options.trace_urls == ["http://localhost:4318/v1/traces"]


def test_good_values_are_parsed(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            "service_version": "1.2.3",
            "deploy_env": "prod",
            "trace_sample_rate": 0.25,
            "skip_paths": ["/users/{id}"],
            "exporters": {
                "otlp": [
                    {**OTLP, "host": "https://otel.example.com", "port": 443},
                    {**OTLP, "name": "b", "host": "http://10.0.0.5"},
                    {**OTLP, "name": "c", "disable_traces": True},
                ]
            },
        },
        name="my gateway",
    )
    options = tracing_options(loaded.service)
    assert options.service_name == "my gateway"  # the config's name, as in KrakenD
    assert (options.service_version, options.deploy_env, options.trace_sample_rate, options.skip_paths) == (
        "1.2.3",
        "prod",
        0.25,
        ["/users/{id}"],
    )
    assert options.trace_urls == ["https://otel.example.com:443/v1/traces", "http://10.0.0.5:4318/v1/traces"]
    assert (
        tracing_options(
            load(tmp_path, {"service_name": "explicit", "exporters": {"otlp": [OTLP]}}, name="ignored").service
        ).service_name
        == "explicit"
    )


def test_grpc_export_is_the_default_as_in_krakend(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            "exporters": {
                "otlp": [
                    {"name": "a"},
                    {"name": "b", "host": "https://otel.example.com", "use_http": False},
                    {"name": "c", "host": "collector", "port": 0},
                    {"name": "d", "host": "collector", "port": 4318, "use_http": True},
                ]
            }
        },
    )
    options = tracing_options(loaded.service)
    assert loaded.warnings == []
    # KrakenD's defaults: host localhost, port 4317 (0 is "not given"); with use_http the OTLP/HTTP port.
    assert options.trace_urls == [
        "http://localhost:4317",
        "https://otel.example.com:4317",
        "http://collector:4317",
        "http://collector:4318/v1/traces",
    ]


@pytest.mark.parametrize("rate", [1.5, -0.1, "0.5", True])
def test_a_bad_sample_rate_is_refused(tmp_path: Path, rate: Any) -> None:
    assert config_errors(tmp_path, {"trace_sample_rate": rate, "exporters": {"otlp": [OTLP]}}) == [
        f"{PATH}.trace_sample_rate: must be a number from 0 to 1 (the share of traces kept, e.g. 0.25), got {rate!r}"
    ]


@pytest.mark.parametrize(
    "otel, expected",
    [
        pytest.param({}, [f'{PATH}: required: add "exporters" with an OTLP exporter, such as '], id="no-exporters"),
        pytest.param([], [f"{PATH}: must be an object such as "], id="not-an-object"),
        pytest.param(
            {"exporters": {"otlp": [{**OTLP, "host": "localhost:4318"}]}},
            [
                f"{PATH}.exporters.otlp[0].host: 'localhost:4318' carries a port: write the host alone and the port "
                'in "port"'
            ],
            id="host-with-port",
        ),
        pytest.param(
            {"exporters": {"otlp": [{**OTLP, "host": "grpc://collector/x"}]}},
            [f"{PATH}.exporters.otlp[0].host: 'grpc://collector/x' is not a collector host"],
            id="bad-host",
        ),
        pytest.param(
            {"exporters": {"otlp": [{**OTLP, "port": 70000}]}},
            [f"{PATH}.exporters.otlp[0].port: Input should be less than or equal to 65535"],
            id="bad-port",
        ),
        pytest.param(
            {"exporters": {"otlp": [{"host": "localhost", "use_http": True}]}},
            [f'{PATH}.exporters.otlp[0].name: required: add "name"'],
            id="no-name",
        ),
        pytest.param(
            {"exporters": {"otlp": [OTLP, OTLP]}},
            [f"{PATH}.exporters.otlp[1].name: duplicate exporter name 'collector': give each one its own"],
            id="duplicate-name",
        ),
    ],
)
def test_bad_values_are_refused_with_their_path(tmp_path: Path, otel: Any, expected: list[str]) -> None:
    errors = config_errors(tmp_path, otel)
    assert len(errors) == len(expected)
    for error, start in zip(errors, expected):
        assert error.startswith(start), error


def test_unsupported_keys_are_warned_about(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            "layers": {"global": {"report_headers": True}},
            "metric_reporting_period": 10,
            "custom": 1,
            "exporters": {"otlp": [{**OTLP, "timeout": 3}], "prometheus": [{"name": "p", "port": 9090}], "zipkin": []},
        },
    )
    assert tracing_options(loaded.service) is not None
    assert [str(w) for w in loaded.warnings] == [
        f"{PATH}.custom: not supported, ignored",
        f"{PATH}.exporters.otlp[0].timeout: not supported, ignored",
        f"{PATH}.exporters.zipkin: not supported, ignored",
        f"{PATH}.exporters.prometheus[0]: ignored: OpenTelemetry metrics are not exported, Prometheus metrics are "
        f'served by "telemetry/metrics"',
        f"{PATH}.layers: not supported, ignored: lambdagate reports one span per request, backend call and Lambda "
        f"Invoke",
        f"{PATH}.metric_reporting_period: ignored: OpenTelemetry metrics are not exported, Prometheus metrics are "
        f'served by "telemetry/metrics"',
    ]


def test_no_exporter_for_traces_means_tracing_off(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"exporters": {"prometheus": [{"name": "p"}], "otlp": [{**OTLP, "disable_traces": True}]}})
    assert tracing_options(loaded.service) is None
    assert f"{PATH}.exporters: no OTLP exporter sends traces: tracing is off" in [str(w) for w in loaded.warnings]


def test_without_opentelemetry_a_config_that_turns_tracing_on_is_refused(tmp_path: Path) -> None:
    # The main process refuses it at load (start or reload), before any worker fails to start.
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir(), off.mkdir()
    load(on, {"exporters": {"otlp": [OTLP]}})  # writes the files
    load(off, {"exporters": {"otlp": [{**OTLP, "disable_traces": True}]}})
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # any import of it fails\n"
        "from lambdagate import plugins\n"
        "from lambdagate.config import load_config\n"
        "from lambdagate.errors import ConfigError, StartupError\n"
        "plugins.install()\n"
        "from lambdagate.telemetry.tracing import Tracing, TracingOptions, tracing_options\n"
        "assert tracing_options(load_config(sys.argv[2]).service) is None  # tracing off: nothing to install\n"
        "try:\n"
        "    load_config(sys.argv[1])\n"
        "except ConfigError as exc:\n"
        "    print(*exc.issues, sep='\\n')\n"
        "assert not [m for m, v in sys.modules.items() if m.startswith('opentelemetry.') and v is not None]\n"
        "try:  # options built without the loader\n"
        "    Tracing(TracingOptions(exporters={'otlp': [" + repr(OTLP) + "]}))\n"
        "except StartupError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(on / "krakend.json"), str(off / "krakend.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == (
        f"{PATH}: turns tracing on but OpenTelemetry is not installed (a dependency of lambdagate): pip install lambdagate"
    )
    assert len(lines) == 2 and "a dependency of lambdagate): pip install lambdagate" in lines[1]


# --- spans, with an in-memory exporter ----------------------------------------------------------------------


def make_tracing(**options: Any) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(TracingOptions(**options), span_exporter=exporter), exporter


def finished(tracing: Tracing, exporter: InMemorySpanExporter) -> dict[str, Any]:
    tracing.shutdown()  # flushes the batch processor
    return {span.name: span for span in exporter.get_finished_spans()}


def request() -> ProxyRequest:
    return ProxyRequest(
        method="GET",
        path="/a",
        params={},
        query=[],
        headers={},
        body=b"",
        client_ip="127.0.0.1",
        request_id="r1",
        deadline=0.0,
    )


def recording(seen: list[ProxyRequest], reply: ProxyResponse | None = None, error: BaseException | None = None):
    async def call(req: ProxyRequest) -> ProxyResponse:
        seen.append(req)
        await asyncio.sleep(0)
        if error is not None:
            raise error
        return reply or ProxyResponse({"ok": True})

    return call


def hexid(span_id: int) -> str:
    return format(span_id, "016x")


def test_server_and_backend_spans_carry_the_incoming_trace() -> None:
    tracing, exporter = make_tracing(service_name="gw", service_version="1.0", deploy_env="test")
    seen: list[ProxyRequest] = []
    call = tracing.wrap_backend(recording(seen), label="users", kind="http")
    original = request()

    async def serve() -> ProxyResponse:
        span = tracing.start_server_span(
            "GET",
            None,
            "/users/7",
            [(b"host", b"x"), (b"traceparent", TRACEPARENT.encode()), (b"tracestate", b"congo=t61rcWkgMzE")],
        )
        span.set_route("GET", "/users/{id}")
        resp = await call(original)
        span.end(200)
        assert trace.get_current_span() is trace.INVALID_SPAN  # end() detached the request's context
        return resp

    assert asyncio.run(serve()).data == {"ok": True}
    spans = finished(tracing, exporter)
    server, client = spans["GET /users/{id}"], spans["backend users"]
    assert server.kind == SpanKind.SERVER and client.kind == SpanKind.CLIENT
    assert format(server.context.trace_id, "032x") == TRACE_ID and hexid(server.parent.span_id) == PARENT_ID
    assert client.context.trace_id == server.context.trace_id and client.parent.span_id == server.context.span_id
    assert dict(server.attributes) == {
        "http.request.method": "GET",
        "url.path": "/users/7",
        "http.route": "/users/{id}",
        "http.response.status_code": 200,
    }
    assert dict(client.attributes) == {
        "lambdagate.backend": "users",
        "lambdagate.backend.kind": "http",
        "http.response.status_code": 200,
    }
    assert server.status.status_code == client.status.status_code == StatusCode.UNSET
    resource = server.resource.attributes
    assert {k: resource.get(k) for k in ("service.name", "service.version", "deployment.environment")} == {
        "service.name": "gw",
        "service.version": "1.0",
        "deployment.environment": "test",
    }
    # The backend got a copy of the request carrying this client span's context; the original is untouched.
    assert original.trace_headers is None and seen[0] is not original and seen[0].path == original.path
    sid = hexid(client.context.span_id)
    assert seen[0].trace_headers == {
        "traceparent": f"00-{TRACE_ID}-{sid}-01",
        "tracestate": "congo=t61rcWkgMzE",
        "x-amzn-trace-id": f"Root=1-{TRACE_ID[:8]}-{TRACE_ID[8:]};Parent={sid};Sampled=1",
    }


def test_a_new_trace_gets_an_x_ray_compatible_id_and_a_route_name() -> None:
    tracing, exporter = make_tracing()

    async def serve() -> None:
        tracing.start_server_span("POST", "/orders", "/orders", [(b"traceparent", b"garbage")]).end(404)
        tracing.start_server_span("GET", None, "/nowhere", []).end(404)

    asyncio.run(serve())
    spans = finished(tracing, exporter)
    assert set(spans) == {"POST /orders", "GET"}
    for span in spans.values():
        assert span.parent is None and span.status.status_code == StatusCode.UNSET
        assert abs(int(format(span.context.trace_id, "032x")[:8], 16) - time.time()) < 600  # epoch seconds first
    assert spans["POST /orders"].attributes["http.route"] == "/orders"
    assert "http.route" not in spans["GET"].attributes


def test_failures_mark_spans_as_errors_and_propagate_unchanged() -> None:
    tracing, exporter = make_tracing()
    failure = BackendError("the backend failed", status=503, cause="connection refused")
    failing = tracing.wrap_backend(recording([], error=failure), label="down", kind="http")
    buggy = tracing.wrap_backend(recording([], error=RuntimeError("bug")), label="buggy", kind="lambda")
    bad_reply = tracing.wrap_backend(
        recording([], reply=ProxyResponse(None, status=502, body=b"")), label="bad", kind="http"
    )

    async def serve() -> None:
        span = tracing.start_server_span("GET", "/a", "/a", [])
        with pytest.raises(BackendError) as info:
            await failing(request())
        assert info.value is failure
        with pytest.raises(RuntimeError, match="bug"):
            await buggy(request())
        assert (await bad_reply(request())).status == 502
        span.end(503, "the backend failed")

    asyncio.run(serve())
    spans = finished(tracing, exporter)
    down, bug, bad, server = spans["backend down"], spans["backend buggy"], spans["backend bad"], spans["GET /a"]
    assert all(s.status.status_code == StatusCode.ERROR for s in (down, bug, bad, server))
    assert down.status.description == "the backend failed"
    assert (
        down.attributes["lambdagate.error.status"],
        down.attributes["lambdagate.error.cause"],
        down.attributes["error.type"],
    ) == (503, "connection refused", "503")
    assert bug.attributes["error.type"] == "RuntimeError" and bug.events[0].name == "exception"
    assert bug.attributes["lambdagate.backend.kind"] == "lambda"
    assert bad.attributes["http.response.status_code"] == 502
    assert server.status.description == "the backend failed" and server.attributes["http.response.status_code"] == 503


def test_a_timed_out_backend_and_a_cancelled_call_are_errors() -> None:
    tracing, exporter = make_tracing()
    timed_out = tracing.wrap_backend(
        recording([], error=BackendError("slow", status=504, timed_out=True)), label="slow", kind="http"
    )

    async def hang(req: ProxyRequest) -> ProxyResponse:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    cancelled = tracing.wrap_backend(hang, label="hang", kind="http")

    async def serve() -> None:
        span = tracing.start_server_span("GET", "/a", "/a", [])
        with pytest.raises(BackendError):
            await timed_out(request())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(cancelled(request()), 0.01)
        span.end(504)

    asyncio.run(serve())
    spans = finished(tracing, exporter)
    assert spans["backend slow"].attributes["error.type"] == "timeout"
    assert (spans["backend hang"].status.status_code, spans["backend hang"].status.description) == (
        StatusCode.ERROR,
        "cancelled",
    )
    assert spans["backend hang"].parent.span_id == spans["GET /a"].context.span_id


def test_invoke_spans_nest_under_the_backend_span() -> None:
    tracing, exporter = make_tracing()
    seen_headers: list[dict[str, str]] = []

    async def lambda_backend(req: ProxyRequest) -> ProxyResponse:
        with tracing.invoke_span("users", "eu-west-1") as invoke:
            seen_headers.append(invoke.headers())
            invoke.set("success", 1, "lambda-req-1")
        with pytest.raises(ConnectionError):
            with tracing.invoke_span("orders", None) as invoke:
                invoke.set("throttled", 2)
                raise ConnectionError("throttled")
        with pytest.raises(ValueError):
            with tracing.invoke_span("broken", None):
                raise ValueError("bad payload")
        return ProxyResponse({"ok": True})

    call = tracing.wrap_backend(lambda_backend, label="fn", kind="lambda")

    async def serve() -> None:
        span = tracing.start_server_span("GET", "/a", "/a", [])
        await call(request())
        span.end(200)

    asyncio.run(serve())
    spans = finished(tracing, exporter)
    backend, ok, throttled, broken = (
        spans[n] for n in ("backend fn", "lambda.invoke users", "lambda.invoke orders", "lambda.invoke broken")
    )
    for invoke in (ok, throttled, broken):
        assert invoke.kind == SpanKind.CLIENT and invoke.parent.span_id == backend.context.span_id
    assert dict(ok.attributes) == {
        "faas.invoked_name": "users",
        "faas.invoked_provider": "aws",
        "faas.invoked_region": "eu-west-1",
        "rpc.system": "aws-api",
        "rpc.service": "Lambda",
        "rpc.method": "Invoke",
        "lambdagate.lambda.outcome": "success",
        "lambdagate.lambda.retries": 1,
        "aws.request_id": "lambda-req-1",
    }
    assert ok.status.status_code == StatusCode.UNSET
    tid, sid = format(ok.context.trace_id, "032x"), hexid(ok.context.span_id)
    # Flags 03: sampled, and a random trace id (W3C level 2: its 7 rightmost bytes are random).
    assert seen_headers == [
        {"traceparent": f"00-{tid}-{sid}-03", "x-amzn-trace-id": f"Root=1-{tid[:8]}-{tid[8:]};Parent={sid};Sampled=1"}
    ]
    assert "faas.invoked_region" not in throttled.attributes
    assert (throttled.status.status_code, throttled.status.description) == (StatusCode.ERROR, "throttled")
    assert throttled.attributes["lambdagate.lambda.retries"] == 2
    assert broken.status.status_code == StatusCode.ERROR and broken.attributes["error.type"] == "ValueError"
    assert backend.status.status_code == StatusCode.UNSET


def test_merged_backends_called_concurrently_are_all_children_of_the_request() -> None:
    tracing, exporter = make_tracing()
    seen: list[ProxyRequest] = []
    calls = [tracing.wrap_backend(recording(seen), label=label, kind="http") for label in ("a", "b")]

    async def serve() -> None:
        span = tracing.start_server_span("GET", "/merged", "/merged", [])
        await asyncio.gather(*(call(request()) for call in calls))
        span.end(200)

    asyncio.run(serve())
    spans = finished(tracing, exporter)
    server = spans["GET /merged"]
    assert spans["backend a"].parent.span_id == spans["backend b"].parent.span_id == server.context.span_id
    parents = {req.trace_headers["traceparent"].split("-")[2] for req in seen}
    assert parents == {hexid(spans["backend a"].context.span_id), hexid(spans["backend b"].context.span_id)}


def test_backends_called_outside_a_traced_request_have_no_span_and_send_no_headers() -> None:
    # As on a skip path: no server span, so no orphan trace and nothing to propagate.
    tracing, exporter = make_tracing()
    seen: list[ProxyRequest] = []
    invokes: list[dict[str, str]] = []
    http = tracing.wrap_backend(recording(seen), label="alone", kind="http")

    async def fn(req: ProxyRequest) -> ProxyResponse:
        with tracing.invoke_span("users", "eu-west-1") as invoke:
            invoke.set("throttled", 2, "lambda-req-1")
            invokes.append(invoke.headers())
        return ProxyResponse({"ok": True})

    original = request()
    asyncio.run(http(original))
    asyncio.run(tracing.wrap_backend(fn, label="fn", kind="lambda")(original))
    assert seen == [original] and seen[0].trace_headers is None
    assert invokes == [{}]
    assert finished(tracing, exporter) == {}


def test_an_unsampled_request_still_sends_its_decision_downstream() -> None:
    tracing, exporter = make_tracing()
    seen: list[ProxyRequest] = []
    invokes: list[dict[str, str]] = []

    async def fn(req: ProxyRequest) -> ProxyResponse:
        seen.append(req)
        with tracing.invoke_span("users", None) as invoke:
            invokes.append(invoke.headers())
        return ProxyResponse({"ok": True})

    call = tracing.wrap_backend(fn, label="fn", kind="lambda")

    async def serve() -> None:
        unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00".encode()
        span = tracing.start_server_span("GET", "/a", "/a", [(b"traceparent", unsampled)])
        await call(request())
        span.end(200)

    asyncio.run(serve())
    assert finished(tracing, exporter) == {}
    for headers in (seen[0].trace_headers, invokes[0]):
        assert headers["traceparent"].startswith(f"00-{TRACE_ID}-") and headers["traceparent"].endswith("-00")
        assert headers["x-amzn-trace-id"].endswith(";Sampled=0")


def test_skip_paths() -> None:
    tracing, _ = make_tracing()
    assert [tracing.skips(p) for p in ("/__health", "/__echo", "/__echo/x/y", "/__debug/", "/__healthz", "/users")] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    tracing, _ = make_tracing(skip_paths=["/users/{id}", "/static/", "/exact"])
    assert [
        tracing.skips(p)
        for p in ("/users/7", "/users/7/x", "/users/", "/static/a.css", "/static", "/exact", "/exact/", "/__health")
    ] == [True, False, False, True, True, True, False, False]
    tracing, _ = make_tracing(skip_paths=[""])  # KrakenD's way of skipping nothing
    assert not any(tracing.skips(p) for p in ("/", "/__health", ""))


def test_sample_rate_zero_exports_nothing_but_still_propagates() -> None:
    tracing, exporter = make_tracing(trace_sample_rate=0)
    seen: list[ProxyRequest] = []
    call = tracing.wrap_backend(recording(seen), label="b", kind="http")

    async def serve(headers: list[tuple[bytes, bytes]]) -> None:
        span = tracing.start_server_span("GET", "/a", "/a", headers)
        await call(request())
        span.end(500)

    asyncio.run(serve([]))
    tracing._provider.force_flush()
    assert exporter.get_finished_spans() == ()
    headers = seen[0].trace_headers
    assert int(headers["traceparent"][-2:], 16) & 1 == 0 and headers["x-amzn-trace-id"].endswith(";Sampled=0")
    # A caller that sampled its trace wins over the rate (parent-based sampling).
    asyncio.run(serve([(b"traceparent", TRACEPARENT.encode())]))
    assert set(finished(tracing, exporter)) == {"GET /a", "backend b"}
    assert seen[1].trace_headers["x-amzn-trace-id"].endswith(";Sampled=1")


@pytest.mark.parametrize(
    "header, expected",
    [
        (f"Root={XRAY_ROOT};Parent={XRAY_PARENT};Sampled=1", (int(XRAY_TRACE_ID, 16), int(XRAY_PARENT, 16), True)),
        (f"Parent={XRAY_PARENT}; Root={XRAY_ROOT}; Sampled=0", (int(XRAY_TRACE_ID, 16), int(XRAY_PARENT, 16), False)),
        (
            f"Self=1-67891233-12456789abcdef012345678;Root={XRAY_ROOT};Parent={XRAY_PARENT};Lineage=a87bd80c:1",
            (int(XRAY_TRACE_ID, 16), int(XRAY_PARENT, 16), None),
        ),
        (f"Root={XRAY_ROOT};Parent={XRAY_PARENT};Sampled=?", (int(XRAY_TRACE_ID, 16), int(XRAY_PARENT, 16), None)),
    ],
)
def test_x_ray_headers_are_parsed(header: str, expected: tuple) -> None:
    assert parse_xray_header(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"Root={XRAY_ROOT}",
        f"Parent={XRAY_PARENT};Sampled=1",  # no parent, or no trace
        f"Root=2-5759e988-bd862e3fe1be46a994272793;Parent={XRAY_PARENT}",  # unknown version
        f"Root=1-5759e988-bd862e3fe1be46a99427279;Parent={XRAY_PARENT}",  # short trace id
        f"Root=1-5759e98g-bd862e3fe1be46a994272793;Parent={XRAY_PARENT}",  # not hex
        f"Root={XRAY_ROOT};Parent=53995c3f42cd8ad",  # short parent
        f"Root={XRAY_ROOT};Parent=0000000000000000",  # zero parent
        "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",  # zero trace id
        f"Root={XRAY_ROOT};Parent={XRAY_PARENT};Sampled=yes",
    ],
)
def test_malformed_x_ray_headers_are_ignored(header: str) -> None:
    assert parse_xray_header(header) is None


def test_a_request_without_traceparent_continues_its_x_ray_trace() -> None:
    tracing, exporter = make_tracing()
    xray = f"Root={XRAY_ROOT};Parent={XRAY_PARENT};Sampled=1".encode()

    async def serve() -> None:
        tracing.start_server_span("GET", "/xray", "/xray", [(b"x-amzn-trace-id", xray)]).end(200)
        tracing.start_server_span(
            "GET", "/bad-w3c", "/", [(b"traceparent", b"garbage"), (b"x-amzn-trace-id", xray)]
        ).end(200)
        tracing.start_server_span(
            "GET", "/w3c", "/", [(b"traceparent", TRACEPARENT.encode()), (b"x-amzn-trace-id", xray)]
        ).end(200)
        tracing.start_server_span("GET", "/two", "/", [(b"x-amzn-trace-id", xray), (b"x-amzn-trace-id", xray)]).end(200)
        tracing.start_server_span("GET", "/malformed", "/", [(b"x-amzn-trace-id", b"Root=1-xyz")]).end(200)

    asyncio.run(serve())
    spans = finished(tracing, exporter)
    for name in ("GET /xray", "GET /bad-w3c"):  # an invalid traceparent does not hide the X-Ray parent
        span = spans[name]
        assert format(span.context.trace_id, "032x") == XRAY_TRACE_ID
        assert hexid(span.parent.span_id) == XRAY_PARENT and span.parent.is_remote
    assert format(spans["GET /w3c"].context.trace_id, "032x") == TRACE_ID  # W3C wins
    assert spans["GET /two"].parent is None and spans["GET /malformed"].parent is None


def test_the_x_ray_sampling_decision_is_followed_and_made_when_left_open() -> None:
    def sampled(rate: float, header: str) -> bool:
        tracing, exporter = make_tracing(trace_sample_rate=rate)

        async def serve() -> None:
            tracing.start_server_span("GET", "/a", "/a", [(b"x-amzn-trace-id", header.encode())]).end(200)

        asyncio.run(serve())
        return bool(finished(tracing, exporter))

    ids = f"Root={XRAY_ROOT};Parent={XRAY_PARENT}"
    assert sampled(0, f"{ids};Sampled=1") and not sampled(1, f"{ids};Sampled=0")
    # Left open (no Sampled, or "?"): our rate decides, as for a new trace.
    assert sampled(1, ids) and sampled(1, f"{ids};Sampled=?")
    assert not sampled(0, ids) and not sampled(0, f"{ids};Sampled=?")


def test_shutdown_does_not_wait_long_for_a_dead_collector() -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tracing = Tracing(TracingOptions(exporters={"otlp": [{**OTLP, "host": "127.0.0.1", "port": port}]}))

    async def serve() -> None:
        for _ in range(3):
            tracing.start_server_span("GET", "/a", "/a", []).end(200)

    asyncio.run(serve())
    started = time.monotonic()
    tracing.shutdown()
    assert time.monotonic() - started < 3


def test_the_global_tracer_provider_is_left_alone() -> None:
    before = trace.get_tracer_provider()
    tracing, _ = make_tracing()
    assert trace.get_tracer_provider() is before is not tracing._provider
    tracing.shutdown()


# --- export to a real OTLP/HTTP collector ----------------------------------------------------------------


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_module("tests.support.otlp", "/spans", tmp_path_factory.mktemp("otlp")) as url:
        yield url


def collected(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(f"{url}/spans", method=method), timeout=5) as resp:
        return json.loads(resp.read())


def test_spans_reach_a_real_otlp_collector(collector: str, tmp_path: Path) -> None:
    collected(collector, "DELETE")
    port = int(collector.rsplit(":", 1)[1])
    loaded = load(
        tmp_path,
        {
            "service_name": "gw-e2e",
            "deploy_env": "test",
            "exporters": {
                "otlp": [
                    {"name": "local", "host": "http://127.0.0.1", "port": port, "use_http": True},
                    {"name": "metrics-only", "host": "127.0.0.1", "port": 9, "use_http": True, "disable_traces": True},
                ]
            },
        },
    )
    tracing = Tracing(tracing_options(loaded.service))

    async def fn(req: ProxyRequest) -> ProxyResponse:
        with tracing.invoke_span("users", "us-east-1") as invoke:
            invoke.set("success", 0, "lambda-req-9")
        return ProxyResponse({"ok": True})

    call = tracing.wrap_backend(fn, label="users-fn", kind="lambda")
    failing = tracing.wrap_backend(recording([], error=BackendError("down", status=502)), label="down", kind="http")

    async def serve() -> None:
        span = tracing.start_server_span("GET", "/users", "/users", [(b"traceparent", TRACEPARENT.encode())])
        await call(request())
        with pytest.raises(BackendError):
            await failing(request())
        span.end(502, "down")

    asyncio.run(serve())
    tracing.shutdown()  # flushes: the export is done when it returns
    spans = {s["name"]: s for s in collected(collector)}
    assert set(spans) == {"GET /users", "backend users-fn", "lambda.invoke users", "backend down"}
    server, backend, invoke, down = (
        spans[n] for n in ("GET /users", "backend users-fn", "lambda.invoke users", "backend down")
    )
    assert {s["trace_id"] for s in spans.values()} == {TRACE_ID}
    assert {s["service_name"] for s in spans.values()} == {"gw-e2e"}
    assert (server["kind"], server["parent_span_id"], server["status_code"]) == ("SERVER", PARENT_ID, "ERROR")
    assert server["attributes"]["http.route"] == "/users" and server["attributes"]["http.response.status_code"] == 502
    assert backend["parent_span_id"] == down["parent_span_id"] == server["span_id"]
    assert (invoke["kind"], invoke["parent_span_id"]) == ("CLIENT", backend["span_id"])
    attributes = invoke["attributes"]
    assert (attributes["faas.invoked_name"], attributes["aws.request_id"]) == ("users", "lambda-req-9")
    assert (down["status_code"], down["status_message"]) == ("ERROR", "down")


@pytest.fixture(scope="module")
def grpc_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The OTLP/gRPC collector stub: (its HTTP URL for /spans, its gRPC port)."""
    with serve_module("tests.support.otlp_grpc", "/spans", tmp_path_factory.mktemp("otlp-grpc")) as url:
        with urllib.request.urlopen(f"{url}/grpc-port", timeout=5) as resp:
            yield url, json.loads(resp.read())["port"]


def test_spans_reach_a_real_grpc_collector_by_default(grpc_collector: tuple[str, int], tmp_path: Path) -> None:
    url, port = grpc_collector
    collected(url, "DELETE")
    # No use_http: KrakenD's default, OTLP over gRPC, in plaintext for a host without a scheme.
    exporters = [{"name": "grpc", "host": "127.0.0.1", "port": port}]
    tracing = Tracing(
        tracing_options(load(tmp_path, {"service_name": "gw-grpc", "exporters": {"otlp": exporters}}).service)
    )
    call = tracing.wrap_backend(recording([]), label="users", kind="http")

    async def serve() -> None:
        span = tracing.start_server_span("GET", "/users", "/users", [(b"traceparent", TRACEPARENT.encode())])
        await call(request())
        span.end(200)

    asyncio.run(serve())
    tracing.shutdown()
    spans = {s["name"]: s for s in collected(url)}
    assert set(spans) == {"GET /users", "backend users"}
    assert {(s["transport"], s["trace_id"], s["service_name"]) for s in spans.values()} == {
        ("grpc", TRACE_ID, "gw-grpc")
    }
    assert spans["backend users"]["parent_span_id"] == spans["GET /users"]["span_id"]
    assert spans["GET /users"]["parent_span_id"] == PARENT_ID


def test_shutdown_does_not_wait_long_for_a_dead_grpc_collector() -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tracing = Tracing(TracingOptions(exporters={"otlp": [{"name": "dead", "host": "127.0.0.1", "port": port}]}))

    async def serve() -> None:
        for _ in range(3):
            tracing.start_server_span("GET", "/a", "/a", []).end(200)

    asyncio.run(serve())
    started = time.monotonic()
    tracing.shutdown()
    assert time.monotonic() - started < 3
