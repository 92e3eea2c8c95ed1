"""`telemetry/opencensus` (KrakenD 1.x/2.x's telemetry, replaced by `telemetry/opentelemetry` in KrakenD v3):
its exporters mapped onto what lambdagate serves, each with a warning naming the v3 replacement.

```json
"extra_config": {"telemetry/opencensus": {"sample_rate": 100, "exporters": {
    "prometheus": {"port": 9091}, "jaeger": {"endpoint": "http://jaeger:14268/api/traces", "service_name": "gw"}}}}
```
- `prometheus` turns on lambdagate's Prometheus metrics (`telemetry/metrics`) on the exporter's port (on loopback,
  as a `telemetry/metrics` listen address without a host; the metric names are lambdagate's, not OpenCensus's).
- `jaeger` turns on tracing (`telemetry/opentelemetry`): spans go over OTLP/gRPC to the Jaeger host's OTLP port
  (4317; Jaeger reads OTLP since 1.35, its old collector and agent ports are not spoken), sampled at
  `sample_rate` percent, named after the exporter's `service_name`.
- Every other exporter (zipkin, influxdb, datadog, xray, stackdriver, ocagent, logger), `reporting_period` and
  `enabled_layers` are warned about and ignored: KrakenD v3 has no such exporters either (an OpenTelemetry
  Collector fed over OTLP forwards spans to them).
When the config has `telemetry/metrics` or `telemetry/opentelemetry` itself, that one is used and the mapped
exporter is ignored with a warning. At endpoint and backend level (`path_aggregation`) the namespace is ignored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from lambdagate.config import guards
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext
from lambdagate.telemetry import metrics, tracing

NAMESPACE = "telemetry/opencensus"
_EXAMPLE = '{"sample_rate": 100, "exporters": {"prometheus": {"port": 9091}}}'
_OTHER_EXPORTERS = ("zipkin", "influxdb", "datadog", "xray", "stackdriver", "ocagent", "logger")
_NO_EXPORTER = (
    "OpenCensus exporter not supported, ignored (KrakenD v3 has none either): send spans over OTLP with "
    '"telemetry/opentelemetry" to an OpenTelemetry Collector that forwards them'
)


class PrometheusExporter(BaseModel):
    model_config = ConfigDict(extra="allow")

    port: StrictInt = Field(default=0, ge=0, le=65535)
    namespace: StrictStr = ""


class JaegerExporter(BaseModel):
    model_config = ConfigDict(extra="allow")

    endpoint: StrictStr = ""  # the collector's HTTP endpoint, e.g. "http://jaeger:14268/api/traces"
    agent_endpoint: StrictStr = ""  # the agent's UDP address, e.g. "jaeger:6831"
    service_name: StrictStr = ""
    buffer_max_count: StrictInt = 0


class Exporters(BaseModel):
    model_config = ConfigDict(extra="allow")

    prometheus: PrometheusExporter | None = None
    jaeger: JaegerExporter | None = None


class OpenCensusOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    sample_rate: StrictInt = Field(default=0, ge=0, le=100)  # percent, as in krakend-opencensus
    reporting_period: StrictInt = Field(default=0, ge=0)
    enabled_layers: dict[str, Any] | None = None
    exporters: Exporters = Field(default_factory=Exporters)


def parse(value: Any, ctx: NamespaceContext) -> OpenCensusOptions | None:
    if ctx.endpoint is not None:  # `path_aggregation` of an endpoint or backend: only for OpenCensus metrics
        ctx.warnings.append(("", "not supported, ignored (OpenCensus is replaced by telemetry/opentelemetry)"))
        return None
    options = parse_namespace_model(
        OpenCensusOptions,
        value,
        ctx,
        _EXAMPLE,
        {"sample_rate": "must be a whole number of percent from 0 to 100"},
    )
    exporters = options.exporters
    if exporters.prometheus is not None:
        _map_prometheus(exporters.prometheus, ctx)
    if exporters.jaeger is not None:
        _map_jaeger(exporters.jaeger, options.sample_rate, ctx)
    for key in exporters.model_extra or {}:
        message = _NO_EXPORTER if key in _OTHER_EXPORTERS else "not supported, ignored"
        ctx.warnings.append((f"exporters.{key}", message))
    for key in ("reporting_period", "enabled_layers"):
        if key in value:
            ctx.warnings.append((key, "accepted, ignored (OpenCensus only)"))
    return options


def _given(ctx: NamespaceContext, name: str) -> bool:
    """Whether the service's extra_config has namespace `name` under any of its names."""
    return any(guards.canonical(key) == name for key in ctx.service.extra_config)


def _map_prometheus(exporter: PrometheusExporter, ctx: NamespaceContext) -> None:
    path = "exporters.prometheus"
    if _given(ctx, metrics.NAMESPACE):
        ctx.warnings.append((path, f'ignored: "{metrics.NAMESPACE}" serves the Prometheus metrics'))
        return
    port = exporter.port or 9091
    listen = f"127.0.0.1:{port}"
    ctx.service.namespaces[metrics.NAMESPACE] = metrics.MetricsOptions(listen_address=listen)
    ctx.warnings.append(
        (
            path,
            f"served as lambdagate's Prometheus metrics on http://{listen}/metrics (loopback: in KrakenD all "
            f"interfaces; lambdagate's metric names); write the v3 form instead: "
            f'"{metrics.NAMESPACE}": {{"listen_address": "0.0.0.0:{port}"}}',
        )
    )
    for key in exporter.model_extra or {}:
        ctx.warnings.append((f"{path}.{key}", "not supported, ignored"))
    if exporter.namespace:
        ctx.warnings.append((f"{path}.namespace", "not supported, ignored: the metric names start with lambdagate_"))


def _map_jaeger(exporter: JaegerExporter, sample_rate: int, ctx: NamespaceContext) -> None:
    path = "exporters.jaeger"
    if _given(ctx, tracing.NAMESPACE):
        ctx.warnings.append((path, f'ignored: "{tracing.NAMESPACE}" exports the traces'))
        return
    host = _jaeger_host(exporter)
    if host is None:  # KrakenD logs the exporter's error and starts without it
        ctx.warnings.append(
            (path, 'ignored: no "endpoint" (e.g. "http://jaeger:14268/api/traces") or "agent_endpoint"')
        )
        return
    otlp = {"name": "jaeger", "host": host, "port": tracing.GRPC_PORT}
    options = tracing.TracingOptions(
        service_name=exporter.service_name or ctx.service.name or "lambdagate",
        trace_sample_rate=sample_rate / 100,
        exporters={"otlp": [otlp]},
    )
    ctx.service.namespaces[tracing.NAMESPACE] = options
    v3 = {"trace_sample_rate": options.trace_sample_rate, "exporters": {"otlp": [otlp]}}
    ctx.warnings.append(
        (
            path,
            f"spans go over OTLP/gRPC to {host}:{tracing.GRPC_PORT} (Jaeger's OTLP port, Jaeger 1.35 or later), "
            f'sampled at {sample_rate}%; write the v3 form instead: "{tracing.NAMESPACE}": {_json(v3)}',
        )
    )
    for key in exporter.model_extra or {}:
        ctx.warnings.append((f"{path}.{key}", "not supported, ignored"))


def _jaeger_host(exporter: JaegerExporter) -> str | None:
    """The Jaeger host as "http://name": from the collector endpoint, else from the agent's "host:port"."""
    for address in (exporter.endpoint, exporter.agent_endpoint):
        if not address:
            continue
        try:
            hostname = urlsplit(address if "://" in address else f"udp://{address}").hostname
        except ValueError:
            hostname = None
        if hostname:
            return f"http://[{hostname}]" if ":" in hostname else f"http://{hostname}"
    return None


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


OPENCENSUS_NAMESPACE = Namespace(NAMESPACE, "service", parse, other_scopes=("endpoint", "backend"))
