"""KrakenD telemetry compatibility: OTLP over gRPC through a real gateway, `telemetry/opencensus` mapped onto the
metrics and tracing namespaces, and the old namespace names read as their current ones."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from lambdagate.config import guards, load_config, namespaces
from lambdagate.errors import ConfigError
from lambdagate.telemetry.metrics import metrics_options
from lambdagate.telemetry.tracing import tracing_options
from tests.support.procs import free_port, serve_module
from tests.test_lambda_backend import http

OC = 'extra_config["telemetry/opencensus"]'


def write(tmp_path: Path, extra: dict, **service: Any) -> Path:
    doc = {
        "version": 3,
        **service,
        "extra_config": extra,
        "endpoints": [{"endpoint": "/a", "backend": [{"host": ["http://svc:1"], "url_pattern": "/a"}]}],
    }
    path = tmp_path / "krakend.json"
    path.write_bytes(orjson.dumps(doc))
    return path


def warnings_of(loaded) -> list[str]:
    return [str(w) for w in loaded.warnings]


# --- telemetry/opencensus ---------------------------------------------------------------------------------


def test_opencensus_prometheus_and_jaeger_are_mapped_with_the_v3_names(tmp_path: Path) -> None:
    opencensus = {
        "sample_rate": 25,
        "reporting_period": 1,
        "exporters": {
            "prometheus": {"port": 9191, "tag_path": True},
            "jaeger": {"endpoint": "http://jaeger.svc:14268/api/traces", "service_name": "krakend"},
            "zipkin": {"collector_url": "http://zipkin:9411/api/v2/spans"},
        },
    }
    loaded = load_config(write(tmp_path, {"telemetry/opencensus": opencensus}))
    assert metrics_options(loaded.service).address == ("127.0.0.1", 9191)
    tracing = tracing_options(loaded.service)
    assert (tracing.service_name, tracing.trace_sample_rate, tracing.trace_urls) == (
        "krakend",
        0.25,
        ["http://jaeger.svc:4317"],
    )
    assert warnings_of(loaded) == [
        f"{OC}.exporters.prometheus: served as lambdagate's Prometheus metrics on http://127.0.0.1:9191/metrics "
        "(loopback: in KrakenD all interfaces; lambdagate's metric names); write the v3 form instead: "
        '"telemetry/metrics": {"listen_address": "0.0.0.0:9191"}',
        f"{OC}.exporters.prometheus.tag_path: not supported, ignored",
        f"{OC}.exporters.jaeger: spans go over OTLP/gRPC to http://jaeger.svc:4317 (Jaeger's OTLP port, Jaeger 1.35 "
        'or later), sampled at 25%; write the v3 form instead: "telemetry/opentelemetry": {"trace_sample_rate":0.25,'
        '"exporters":{"otlp":[{"name":"jaeger","host":"http://jaeger.svc","port":4317}]}}',
        f"{OC}.exporters.zipkin: OpenCensus exporter not supported, ignored (KrakenD v3 has none either): send spans "
        'over OTLP with "telemetry/opentelemetry" to an OpenTelemetry Collector that forwards them',
        f"{OC}.reporting_period: accepted, ignored (OpenCensus only)",
    ]


@pytest.mark.parametrize("first", ["metrics", "opencensus"])
def test_the_v3_namespaces_win_over_opencensus_in_either_order(tmp_path: Path, first: str) -> None:
    v3 = {
        "telemetry/metrics": {"listen_address": "127.0.0.1:9300"},
        "telemetry/opentelemetry": {"exporters": {"otlp": [{"name": "c", "host": "otel", "port": 4317}]}},
    }
    opencensus = {"exporters": {"prometheus": {"port": 9191}, "jaeger": {"agent_endpoint": "jaeger:6831"}}}
    extra = (
        {**v3, "telemetry/opencensus": opencensus} if first == "metrics" else {"telemetry/opencensus": opencensus, **v3}
    )
    loaded = load_config(write(tmp_path, extra))
    assert metrics_options(loaded.service).address == ("127.0.0.1", 9300)
    assert tracing_options(loaded.service).trace_urls == ["http://otel:4317"]
    assert [w for w in warnings_of(loaded) if w.startswith(OC)] == [
        f'{OC}.exporters.prometheus: ignored: "telemetry/metrics" serves the Prometheus metrics',
        f'{OC}.exporters.jaeger: ignored: "telemetry/opentelemetry" exports the traces',
    ]


def test_the_old_opencensus_name_and_endpoint_level_opencensus(tmp_path: Path) -> None:
    path = write(tmp_path, {"github_com/devopsfaith/krakend-opencensus": {"exporters": {"jaeger": {}}}})
    doc = orjson.loads(path.read_bytes())
    doc["endpoints"][0]["extra_config"] = {"telemetry/opencensus": {"path_aggregation": "lastparam"}}
    path.write_bytes(orjson.dumps(doc))
    loaded = load_config(path)
    old = 'extra_config["github_com/devopsfaith/krakend-opencensus"]'
    assert warnings_of(loaded) == [
        f"{old}: `github_com/devopsfaith/krakend-opencensus` is the old name of `telemetry/opencensus` and is read "
        "as `telemetry/opencensus`; write `telemetry/opencensus` (KrakenD 2 reads this spelling too)",
        f'{old}.exporters.jaeger: ignored: no "endpoint" (e.g. "http://jaeger:14268/api/traces") or "agent_endpoint"',
        f"endpoints[0].{OC}: not supported, ignored (OpenCensus is replaced by telemetry/opentelemetry)",
    ]
    assert tracing_options(loaded.service) is None and metrics_options(loaded.service) is None


@pytest.mark.parametrize(
    ("opencensus", "expected"),
    [
        ({"sample_rate": "100"}, "sample_rate: must be a whole number of percent from 0 to 100, got '100'"),
        ({"sample_rate": 101}, "sample_rate: must be a whole number of percent from 0 to 100, got 101"),
        ({"exporters": {"prometheus": {"port": "9091"}}}, "exporters.prometheus.port: Input should be a valid integer"),
        ({"exporters": {"jaeger": {"endpoint": 5}}}, "exporters.jaeger.endpoint: Input should be a valid string"),
    ],
)
def test_values_go_would_not_decode_are_refused_with_their_path(
    tmp_path: Path, opencensus: dict, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {"telemetry/opencensus": opencensus}))
    assert [str(i) for i in info.value.issues][0].startswith(f"{OC}.{expected}")


# --- old namespace names ------------------------------------------------------------------------------------

# KrakenD CE's alias table (cmd/krakend-ce/main.go): the old spellings it reads, and their current names.
KRAKEND_CE_ALIASES = {
    "github_com/devopsfaith/krakend/transport/http/server/handler": "plugin/http-server",
    "github.com/devopsfaith/krakend/transport/http/client/executor": "plugin/http-client",
    "github.com/devopsfaith/krakend/proxy/plugin": "plugin/req-resp-modifier",
    "github.com/devopsfaith/krakend/proxy": "proxy",
    "github_com/luraproject/lura/router/gin": "router",
    "github.com/devopsfaith/krakend-httpcache": "qos/http-cache",
    "github.com/devopsfaith/krakend-circuitbreaker/gobreaker": "qos/circuit-breaker",
    "github.com/devopsfaith/krakend-oauth2-clientcredentials": "auth/client-credentials",
    "github.com/devopsfaith/krakend-jose/validator": "auth/validator",
    "github.com/devopsfaith/krakend-jose/signer": "auth/signer",
    "github_com/devopsfaith/bloomfilter": "auth/revoker",
    "github_com/devopsfaith/krakend-botdetector": "security/bot-detector",
    "github_com/devopsfaith/krakend-httpsecure": "security/http",
    "github_com/devopsfaith/krakend-cors": "security/cors",
    "github.com/devopsfaith/krakend-cel": "validation/cel",
    "github.com/devopsfaith/krakend-jsonschema": "validation/json-schema",
    "github.com/devopsfaith/krakend-amqp/agent": "async/amqp",
    "github.com/devopsfaith/krakend-amqp/consume": "backend/amqp/consumer",
    "github.com/devopsfaith/krakend-amqp/produce": "backend/amqp/producer",
    "github.com/devopsfaith/krakend-lambda": "backend/lambda",
    "github.com/devopsfaith/krakend-pubsub/publisher": "backend/pubsub/publisher",
    "github.com/devopsfaith/krakend-pubsub/subscriber": "backend/pubsub/subscriber",
    "github.com/devopsfaith/krakend/transport/http/client/graphql": "backend/graphql",
    "github.com/devopsfaith/krakend/http": "backend/http",
    "github_com/devopsfaith/krakend-gelf": "telemetry/gelf",
    "github_com/devopsfaith/krakend-gologging": "telemetry/logging",
    "github_com/devopsfaith/krakend-logstash": "telemetry/logstash",
    "github_com/devopsfaith/krakend-metrics": "telemetry/metrics",
    "github_com/letgoapp/krakend-influx": "telemetry/influx",
    "github_com/devopsfaith/krakend-opencensus": "telemetry/opencensus",
    "github.com/devopsfaith/krakend-lua/router": "modifier/lua-endpoint",
    "github.com/devopsfaith/krakend-lua/proxy": "modifier/lua-proxy",
    "github.com/devopsfaith/krakend-lua/proxy/backend": "modifier/lua-backend",
    "github.com/devopsfaith/krakend-martian": "modifier/martian",
}


def test_every_krakend_ce_alias_maps_to_its_current_name() -> None:
    assert {old: guards.canonical(old) for old in KRAKEND_CE_ALIASES} == KRAKEND_CE_ALIASES
    assert guards.KRAKEND_READS == set(KRAKEND_CE_ALIASES)
    # Other spellings of the same names (the 1.x github.com/ and github_com/ forms) map too.
    for old, new in KRAKEND_CE_ALIASES.items():
        other = old.replace("github_com/", "github.com/") if old.startswith("github_com/") else "github_com/" + old[11:]
        assert guards.canonical(other) == new, other


def test_a_namespace_registered_by_its_current_name_reads_every_old_name() -> None:
    # A namespace another part registers (here a stand-in for `modifier/martian`) needs no alias of its own.
    saved = dict(namespaces._REGISTRY)
    try:
        if namespaces.lookup("modifier/martian") is None:
            namespaces.register(namespaces.Namespace("modifier/martian", "backend", lambda value, ctx: value))
        martian = namespaces.lookup("modifier/martian")
        for old in ("github.com/devopsfaith/krakend-martian", "github_com/devopsfaith/krakend-martian"):
            assert namespaces.lookup(old) is martian
        assert namespaces.lookup("github.com/devopsfaith/krakend-martianx") is None
    finally:
        namespaces._REGISTRY.clear()
        namespaces._REGISTRY.update(saved)


def test_old_telemetry_names_are_read_with_a_warning(tmp_path: Path) -> None:
    loaded = load_config(
        write(
            tmp_path,
            {
                "github_com/devopsfaith/krakend-gologging": {"level": "ERROR", "stdout": True},
                "github_com/devopsfaith/krakend-metrics": {"listen_address": "127.0.0.1:9400"},
            },
        )
    )
    assert loaded.service.namespaces["telemetry/logging"].level == "ERROR"
    assert metrics_options(loaded.service).address == ("127.0.0.1", 9400)
    assert [w.message for w in loaded.warnings] == [
        f"`{old}` is the old name of `{new}` and is read as `{new}`; write `{new}` (KrakenD 2 reads this spelling too)"
        for old, new in (
            ("github_com/devopsfaith/krakend-gologging", "telemetry/logging"),
            ("github_com/devopsfaith/krakend-metrics", "telemetry/metrics"),
        )
    ]


# --- real processes -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with serve_module("tests.support.otlp_grpc", "/spans", tmp_path_factory.mktemp("otlp-grpc")) as url:
        with urllib.request.urlopen(f"{url}/grpc-port", timeout=5) as resp:
            yield url, json.loads(resp.read())["port"]


def poll(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_a_gateway_exports_spans_over_grpc_by_default(start_gateway, upstream, grpc_collector) -> None:
    url, grpc_port = grpc_collector
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4736"
    otel = {
        "service_name": "gw-grpc",
        "exporters": {"otlp": [{"name": "local", "host": "127.0.0.1", "port": grpc_port}]},
    }
    gateway = start_gateway(
        {
            "version": 3,
            "extra_config": {"telemetry/opentelemetry": otel},
            "endpoints": [{"endpoint": "/traced", "backend": [{"host": [upstream], "url_pattern": "/echo/traced"}]}],
        }
    )
    status, _, _ = http("GET", gateway.url + "/traced", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert status == 200

    def spans() -> list[dict]:
        with urllib.request.urlopen(url + "/spans", timeout=5) as resp:
            found = [s for s in json.loads(resp.read()) if s["trace_id"] == trace_id]
        return found if len(found) >= 2 else []

    got = poll(spans)
    assert sorted((s["kind"], s["transport"], s["service_name"]) for s in got) == [
        ("CLIENT", "grpc", "gw-grpc"),
        ("SERVER", "grpc", "gw-grpc"),
    ], gateway.log()
    server = next(s for s in got if s["kind"] == "SERVER")
    assert server["name"] == "GET /traced" and server["parent_span_id"] == "00f067aa0ba902b7"


def test_a_gateway_serves_opencensus_prometheus_metrics(start_gateway, upstream) -> None:
    port = free_port()
    gateway = start_gateway(
        {
            "version": 3,
            "extra_config": {"telemetry/opencensus": {"exporters": {"prometheus": {"port": port}}}},
            "endpoints": [{"endpoint": "/counted", "backend": [{"host": [upstream], "url_pattern": "/echo/c"}]}],
        }
    )
    assert http("GET", gateway.url + "/counted")[0] == 200

    def counted() -> bool:
        status, _, body = http("GET", f"http://127.0.0.1:{port}/metrics")
        return status == 200 and b'endpoint="/counted"' in body

    assert poll(counted), gateway.log()


# --- telemetry/logging, telemetry/logstash, telemetry/gelf ------------------------------------------------------


def test_an_unknown_logging_format_is_the_default_one_as_in_krakend(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, {"telemetry/logging": {"format": "json"}}))
    assert loaded.service.namespaces["telemetry/logging"].format == "default"
    assert warnings_of(loaded) == [
        'extra_config["telemetry/logging"].format: \'json\' is no KrakenD format ("default", "logstash" or "custom"): '
        'the default text format is used, as KrakenD does; write "logstash" for JSON lines'
    ]
    with pytest.raises(ConfigError) as info:  # a value Go would not decode into a string is still refused
        load_config(write(tmp_path, {"telemetry/logging": {"format": 1}}))
    assert str(info.value.issues[0]).startswith(
        'extra_config["telemetry/logging"].format: Input should be a valid string'
    )


def test_logstash_turns_logging_into_json_lines_and_needs_logging(tmp_path: Path) -> None:
    from lambdagate.telemetry.logs import logging_options

    loaded = load_config(write(tmp_path, {"telemetry/logstash": {"enabled": True}, "telemetry/logging": {}}))
    assert loaded.warnings == [] and logging_options(loaded.service).format == "logstash"
    alone = load_config(write(tmp_path, {"github_com/devopsfaith/krakend-logstash": {"enabled": True}}))
    assert logging_options(alone.service) is None
    assert warnings_of(alone)[1] == (
        'extra_config["github_com/devopsfaith/krakend-logstash"]: ignored without "telemetry/logging", as in KrakenD: '
        'add "telemetry/logging": {"level": "INFO"}'
    )


def test_a_gateway_with_logstash_logs_json_lines(start_gateway, upstream) -> None:
    gateway = start_gateway(
        {
            "version": 3,
            "extra_config": {"telemetry/logging": {"level": "INFO"}, "telemetry/logstash": {"enabled": True}},
            "endpoints": [{"endpoint": "/logged", "backend": [{"host": [upstream], "url_pattern": "/echo/l"}]}],
        }
    )
    assert http("GET", gateway.url + "/logged")[0] == 200

    def access() -> list[dict]:
        lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
        return [e for e in lines if e.get("path") == "/logged"]

    entries = poll(access)
    assert entries and entries[0]["status"] == 200, gateway.log()
    # krakend-logstash's record: its keys (module: the prefix, else KRAKEND), sorted as Go's json.Marshal sorts them.
    line = next(line for line in gateway.log().splitlines() if '"path":"/logged"' in line)
    assert line.startswith('{"@timestamp":"') and list(json.loads(line)) == sorted(json.loads(line))
    entry = entries[0]
    assert (entry["@version"], entry["level"], entry["module"], entry["message"]) == (
        1,
        "INFO",
        "KRAKEND",
        "GET /logged 200",
    )
    assert entry["host"] and len(entry["@timestamp"]) == len("2018-05-16T10:02:47.000000+00:00")
    app = [json.loads(line) for line in gateway.log().splitlines() if '"serving 1 endpoints' in line]
    assert app and app[0]["logger"].startswith("lambdagate") and app[0]["@version"] == 1
