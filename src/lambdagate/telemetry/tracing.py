"""OpenTelemetry traces (`telemetry/opentelemetry`): a SERVER span per request, a CLIENT span per backend call
and per Lambda Invoke, exported over OTLP/gRPC (KrakenD's default) or OTLP/HTTP (`"use_http": true`).

```json
"extra_config": {"telemetry/opentelemetry": {"trace_sample_rate": 0.25, "exporters": {"otlp": [
    {"name": "local", "host": "otel-collector", "port": 4317}]}}}
```
The KrakenD subset we read: service_name (default: the config's `name`, else "lambdagate"), service_version,
deploy_env, trace_sample_rate, skip_paths and `otlp` exporters. As in KrakenD, an exporter's host defaults to
"localhost", a host without a scheme or with "http://" is spoken to in plaintext and "https://" uses TLS; the
port defaults to 4317 for gRPC (KrakenD's default for both) and to 4318, the OTLP/HTTP port, with "use_http".
`prometheus` exporters, `layers` and OTLP metrics are not supported
(metrics are served by `telemetry/metrics`). Trace context comes in as W3C traceparent/tracestate or, without a
valid traceparent, as AWS X-Ray's X-Amzn-Trace-Id; it goes to each backend as traceparent, tracestate and
X-Amzn-Trace-Id (see `ProxyRequest.trace_headers`). A request on a skip path has no span, and neither have its
backend calls: they get no trace headers.

The namespace parses without OpenTelemetry installed (it only checks that the packages are there when the config
turns tracing on, so a config the workers could not start with is refused up front); only `Tracing` imports it.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import ServiceConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.errors import BackendError, StartupError
from lambdagate.proxy import Backend, ProxyRequest, ProxyResponse

NAMESPACE = "telemetry/opentelemetry"
# KrakenD's defaults: a trailing "/" skips everything under it, "{name}" matches one path segment.
DEFAULT_SKIP_PATHS = ["/__health", "/__debug/", "/__echo/", "/__stats/"]
_EXAMPLE = '{"exporters": {"otlp": [{"name": "collector", "host": "localhost", "port": 4317}]}}'
_NOT_TRACED = "not supported, ignored: lambdagate reports one span per request, backend call and Lambda Invoke"
_NO_METRICS = 'ignored: OpenTelemetry metrics are not exported, Prometheus metrics are served by "telemetry/metrics"'
# OpenTelemetry is a dependency of lambdagate: it is missing only from an install made without its dependencies.
_NOT_INSTALLED = (
    "turns tracing on but OpenTelemetry is not installed (a dependency of lambdagate): pip install lambdagate"
)
# The packages `Tracing` imports: the SDK and each exporter.
_OTEL_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.exporter.otlp.proto.grpc",
)
GRPC_PORT, HTTP_PORT = 4317, 4318
# Export bounds: a dead collector must not hold up a worker's shutdown (see `Tracing.shutdown`).
EXPORT_TIMEOUT = 5.0  # seconds per export, retries included (the OTLP exporter's retries stop at this deadline)
SHUTDOWN_TIMEOUT = 2.0  # seconds `Tracing.shutdown` waits for the last export


class OtlpExporter(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: StrictStr
    host: StrictStr = (
        "http://localhost"  # "collector", "http://collector" or "https://collector"; the port goes in `port`
    )
    # KrakenD reads 0 as "not given": 4317 there, whatever the protocol (see `endpoint_port`).
    port: StrictInt = Field(default=0, ge=0, le=65535)
    use_http: StrictBool = False  # KrakenD's default: OTLP over gRPC
    disable_traces: StrictBool = False
    disable_metrics: StrictBool = False  # accepted: metrics are never pushed over OTLP

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        url = urlsplit(value if "://" in value else f"http://{value}")
        try:
            port = url.port
        except ValueError:
            port = -1
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/") or url.query:
            raise ValueError(f'{value!r} is not a collector host: write it like "otel-collector" or "http://10.0.0.5"')
        if port is not None:
            raise ValueError(f'{value!r} carries a port: write the host alone and the port in "port"')
        return f"{url.scheme}://{url.netloc}"

    @property
    def endpoint_port(self) -> int:
        return self.port or (HTTP_PORT if self.use_http else GRPC_PORT)

    @property
    def traces_url(self) -> str:
        """Where spans go: the OTLP/HTTP traces URL, or the gRPC target as "http(s)://host:port"."""
        base = f"{self.host}:{self.endpoint_port}"
        return f"{base}/v1/traces" if self.use_http else base


class Exporters(BaseModel):
    model_config = ConfigDict(extra="allow")

    otlp: list[OtlpExporter] = []
    prometheus: list[Any] = []


class TracingOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    service_name: StrictStr = "lambdagate"
    service_version: StrictStr | None = None
    deploy_env: StrictStr | None = None
    trace_sample_rate: Annotated[float, Field(strict=True, ge=0, le=1)] = 1.0
    skip_paths: list[StrictStr] = Field(default_factory=lambda: list(DEFAULT_SKIP_PATHS))
    exporters: Exporters = Field(default_factory=Exporters)
    layers: Any = None
    metric_reporting_period: Any = None

    @property
    def trace_exporters(self) -> list[OtlpExporter]:
        return [e for e in self.exporters.otlp if not e.disable_traces]

    @property
    def trace_urls(self) -> list[str]:
        """Where spans go: see `OtlpExporter.traces_url`."""
        return [e.traces_url for e in self.trace_exporters]


def parse(value: Any, ctx: NamespaceContext) -> TracingOptions:
    options = parse_namespace_model(
        TracingOptions,
        value,
        ctx,
        _EXAMPLE,
        {"trace_sample_rate": "must be a number from 0 to 1 (the share of traces kept, e.g. 0.25)"},
    )
    if "exporters" not in value:
        raise NamespaceError([("", f'required: add "exporters" with an OTLP exporter, such as {_EXAMPLE}')])
    issues, seen = [], set()
    for i, exporter in enumerate(options.exporters.otlp):
        path = f"exporters.otlp[{i}]"
        if exporter.name in seen:
            issues.append((f"{path}.name", f"duplicate exporter name {exporter.name!r}: give each one its own"))
        seen.add(exporter.name)
        ctx.warnings.extend((f"{path}.{key}", "not supported, ignored") for key in exporter.model_extra or {})
    if options.trace_urls and not _otel_installed():
        issues.append(("", _NOT_INSTALLED))
    if issues:
        raise NamespaceError(issues)
    ctx.warnings.extend((f"exporters.{key}", "not supported, ignored") for key in options.exporters.model_extra or {})
    ctx.warnings.extend((f"exporters.prometheus[{i}]", _NO_METRICS) for i in range(len(options.exporters.prometheus)))
    if "layers" in value:
        ctx.warnings.append(("layers", _NOT_TRACED))
    if "metric_reporting_period" in value:
        ctx.warnings.append(("metric_reporting_period", _NO_METRICS))
    if not options.trace_urls:
        ctx.warnings.append(("exporters", "no OTLP exporter sends traces: tracing is off"))
    if "service_name" not in value and ctx.service.name:
        options.service_name = ctx.service.name  # as KrakenD does
    return options


TRACING_NAMESPACE = Namespace(NAMESPACE, "service", parse)


def _otel_installed() -> bool:
    """Whether the packages `Tracing` imports are installed, found without importing them (their parents are
    namespace packages: nothing runs)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in _OTEL_MODULES)
    except (ImportError, ValueError):  # a parent package is missing
        return False


def tracing_options(service: ServiceConfig) -> TracingOptions | None:
    """The options, or None when the config does not turn tracing on (no namespace, or no exporter for traces)."""
    options = service.namespaces.get(NAMESPACE)
    return options if options is not None and options.trace_urls else None


# --- runtime: only built when tracing is on --------------------------------------------------------------------


def _trace_headers(sc: Any) -> dict[str, str]:
    """The propagation headers naming span context `sc` as the parent: W3C and AWS X-Ray."""
    tid, sid, flags = format(sc.trace_id, "032x"), format(sc.span_id, "016x"), sc.trace_flags
    headers = {
        "traceparent": f"00-{tid}-{sid}-{flags:02x}",
        "x-amzn-trace-id": f"Root=1-{tid[:8]}-{tid[8:]};Parent={sid};Sampled={flags & 1}",
    }
    if sc.trace_state:
        headers["tracestate"] = sc.trace_state.to_header()
    return headers


_XRAY_ROOT = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})\Z")
_XRAY_PARENT = re.compile(r"[0-9a-fA-F]{16}\Z")


def parse_xray_header(value: str) -> tuple[int, int, bool | None] | None:
    """(trace id, parent span id, sampled) from an X-Amzn-Trace-Id value such as
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", or None if it names no valid
    parent (no Root or Parent, as from an ALB, or a malformed field). `sampled` is None when the caller left the
    decision open (no Sampled, or "Sampled=?"). Other fields (Self, Lineage, ...) are ignored."""
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, _, field = part.partition("=")
        fields.setdefault(key.strip(), field.strip())
    root, parent, sampled = _XRAY_ROOT.match(fields.get("Root", "")), fields.get("Parent", ""), fields.get("Sampled")
    if root is None or not _XRAY_PARENT.match(parent) or sampled not in (None, "0", "1", "?"):
        return None
    trace_id, span_id = int(root[1] + root[2], 16), int(parent, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, None if sampled in (None, "?") else sampled == "1"


def _compile_skips(paths: list[str]) -> tuple[frozenset[str], tuple[str, ...], list[re.Pattern[str]]]:
    exact, prefixes, patterns = set(), [], []
    for p in paths:
        if "{" in p:
            patterns.append(re.compile("[^/]+".join(map(re.escape, re.split(r"\{[^/{}]*\}", p))) + r"\Z"))
        elif p.endswith("/") and p != "/":
            prefixes.append(p)
            exact.add(p[:-1])
        elif p:
            exact.add(p)
    return frozenset(exact), tuple(prefixes), patterns


def _span_exporter(exporter: OtlpExporter) -> Any:
    """The OTLP span exporter for one `otlp` entry: gRPC unless `use_http` (imported here: only when tracing is on)."""
    if exporter.use_http:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        return HttpSpanExporter(endpoint=exporter.traces_url, timeout=EXPORT_TIMEOUT)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    # The scheme says plaintext ("http://", the default as in KrakenD) or TLS with the system's roots ("https://").
    secure = exporter.host.startswith("https://")
    return GrpcSpanExporter(endpoint=exporter.traces_url, insecure=not secure, timeout=EXPORT_TIMEOUT)


class ServerSpan:
    """The request's SERVER span, current in the request's context until `end`."""

    __slots__ = ("_tracing", "_span", "_token")

    def __init__(self, tracing: Tracing, span: Any, token: Any) -> None:
        self._tracing, self._span, self._token = tracing, span, token

    @property
    def trace_id(self) -> str:
        """The trace's id as 32 hex digits, for the access log (links a log line to its trace)."""
        return format(self._span.get_span_context().trace_id, "032x")

    def set_request_id(self, request_id: str) -> None:
        self._span.set_attribute("lambdagate.request_id", request_id)

    def set_route(self, method: str, route: str) -> None:
        """Name the span after the endpoint once routing matched one."""
        self._span.update_name(f"{method} {route}")
        self._span.set_attribute("http.route", route)

    def end(self, status: int, error: str | None = None) -> None:
        span = self._span
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                self._tracing._error(span, error or f"HTTP {status}", str(status))
        span.end()
        if self._token is not None:
            self._tracing._detach(self._token)
            self._token = None


class InvokeSpan:
    """One Lambda Invoke call (with its retries): a CLIENT span under the current backend span."""

    __slots__ = ("_tracing", "_name", "_attributes", "_span")

    def __init__(self, tracing: Tracing, name: str, attributes: dict[str, Any]) -> None:
        self._tracing, self._name, self._attributes, self._span = tracing, name, attributes, None

    def __enter__(self) -> InvokeSpan:
        tracing = self._tracing
        self._span = tracing._tracer.start_span(self._name, kind=tracing._client, attributes=self._attributes)
        return self

    def set(self, outcome: str, retries: int = 0, lambda_request_id: str | None = None) -> None:
        span = self._span
        span.set_attribute("lambdagate.lambda.outcome", outcome)
        span.set_attribute("lambdagate.lambda.retries", retries)
        if lambda_request_id:
            span.set_attribute("aws.request_id", lambda_request_id)
        if outcome != "success":
            self._tracing._error(span, outcome)

    def headers(self) -> dict[str, str]:
        return _trace_headers(self._span.get_span_context())

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self._tracing._failed(self._span, exc)
        self._span.end()


class _NoInvokeSpan:
    """`invoke_span` outside a traced request: records nothing and sends no trace header."""

    __slots__ = ()

    def __enter__(self) -> _NoInvokeSpan:
        return self

    def set(self, outcome: str, retries: int = 0, lambda_request_id: str | None = None) -> None:
        pass

    def headers(self) -> dict[str, str]:
        return {}

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        pass


_NO_INVOKE_SPAN = _NoInvokeSpan()


class Tracing:
    """The worker's tracer: its own TracerProvider (the global one is left alone), batch export per exporter."""

    def __init__(self, options: TracingOptions, *, span_exporter: Any = None) -> None:
        try:
            from opentelemetry import context, trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            exporters = (
                [span_exporter] if span_exporter is not None else [_span_exporter(e) for e in options.trace_exporters]
            )
        except ImportError as exc:
            raise StartupError(
                f'"{NAMESPACE}" turns tracing on but OpenTelemetry is not installed ({exc.name}, a dependency of '
                "lambdagate): pip install lambdagate"
            ) from None
        from lambdagate import __version__

        class XRayIds(RandomIdGenerator):
            """Trace ids that start with the epoch seconds, so AWS X-Ray accepts them as root ids."""

            def generate_trace_id(self) -> int:
                return (int(time.time()) << 96) | (super().generate_trace_id() & ((1 << 96) - 1))

        attributes = {"service.name": options.service_name}
        if options.service_version:
            attributes["service.version"] = options.service_version
        if options.deploy_env:
            attributes["deployment.environment"] = attributes["deployment.environment.name"] = options.deploy_env
        self._ratio = TraceIdRatioBased(options.trace_sample_rate)
        self._provider = TracerProvider(
            sampler=ParentBased(self._ratio), resource=Resource.create(attributes), id_generator=XRayIds()
        )
        for exporter in exporters:
            self._provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* env vars apply
        self._tracer = self._provider.get_tracer("lambdagate", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._root = context.Context()
        self._attach, self._detach = context.attach, context.detach
        self._trace = trace
        self._in_context, self._current_span = trace.set_span_in_context, trace.get_current_span
        self._server, self._client = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
        self._status_error = lambda description: trace.Status(trace.StatusCode.ERROR, description)
        self._skip_exact, self._skip_prefixes, self._skip_patterns = _compile_skips(options.skip_paths)

    def skips(self, path: str) -> bool:
        return (
            path in self._skip_exact
            or path.startswith(self._skip_prefixes)
            or any(p.match(path) for p in self._skip_patterns)
        )

    def start_server_span(
        self, method: str, route: str | None, path: str, headers: list[tuple[bytes, bytes]]
    ) -> ServerSpan:
        traceparent: list[str] = []
        tracestate: list[str] = []
        xray: list[str] = []
        for name, value in headers:
            if name == b"traceparent":
                traceparent.append(value.decode("latin-1"))
            elif name == b"tracestate":
                tracestate.append(value.decode("latin-1"))
            elif name == b"x-amzn-trace-id":
                xray.append(value.decode("latin-1"))
        # Several traceparent headers are invalid (a new trace starts); several tracestate headers are one list.
        carrier = {"traceparent": traceparent[0]} if len(traceparent) == 1 else None
        if carrier is not None and tracestate:
            carrier["tracestate"] = ",".join(tracestate)
        parent = self._propagator.extract(carrier, context=self._root) if carrier else self._root
        if len(xray) == 1 and not self._current_span(parent).get_span_context().is_valid:
            parent = self._xray_parent(xray[0])
        attributes = {"http.request.method": method, "url.path": path}
        if route is not None:
            attributes["http.route"] = route
        span = self._tracer.start_span(
            f"{method} {route}" if route else method, context=parent, kind=self._server, attributes=attributes
        )
        return ServerSpan(self, span, self._attach(self._in_context(span)))

    def _xray_parent(self, header: str) -> Any:
        """The context continuing an AWS caller's X-Ray trace, or a new trace's if the header is not valid."""
        ids = parse_xray_header(header)
        if ids is None:
            return self._root
        trace_id, span_id, sampled = ids
        if sampled is None:
            # The caller left the decision to us: decide as for a new trace, by the trace id and our rate.
            sampled = self._ratio.should_sample(None, trace_id, "").decision.is_sampled()
        trace = self._trace
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT)
        parent = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
        return self._in_context(trace.NonRecordingSpan(parent), self._root)

    def wrap_backend(self, call: Backend, *, label: str, kind: str) -> Backend:
        tracer, client, in_context, current_span = self._tracer, self._client, self._in_context, self._current_span
        attach, detach = self._attach, self._detach
        name = f"backend {label}"
        attributes = {"lambdagate.backend": label, "lambdagate.backend.kind": kind}

        async def traced(req: ProxyRequest) -> ProxyResponse:
            # No request span (a skip path): a span here would be the root of an orphan trace. An unsampled
            # request still has one (valid, not recording), and its Sampled=0 decision goes downstream.
            if not current_span().get_span_context().is_valid:
                return await call(req)
            span = tracer.start_span(name, kind=client, attributes=attributes)
            token = attach(in_context(span))
            try:
                resp = await call(replace(req, trace_headers=_trace_headers(span.get_span_context())))
            except BaseException as exc:
                self._failed(span, exc)
                raise
            else:
                if span.is_recording():
                    span.set_attribute("http.response.status_code", resp.status)
                    if resp.status >= 500:
                        self._error(span, f"backend answered {resp.status}")
                return resp
            finally:
                detach(token)
                span.end()

        return traced

    def invoke_span(self, function: str, region: str | None) -> InvokeSpan | _NoInvokeSpan:
        if not self._current_span().get_span_context().is_valid:
            return _NO_INVOKE_SPAN  # not under a traced request: see `wrap_backend`
        attributes = {
            "faas.invoked_name": function,
            "faas.invoked_provider": "aws",
            "rpc.system": "aws-api",
            "rpc.service": "Lambda",
            "rpc.method": "Invoke",
        }
        if region:
            attributes["faas.invoked_region"] = region
        return InvokeSpan(self, f"lambda.invoke {function}", attributes)

    def shutdown(self) -> None:
        """Export what is queued and stop the export threads, waiting at most SHUTDOWN_TIMEOUT seconds."""
        # SDK 1.45 bounds neither call: force_flush ignores its timeout and shutdown waits up to 30 s per exporter.
        # So shut down on a daemon thread and stop waiting for it in time; a dead collector's spans are lost.
        stopping = threading.Thread(target=self._provider.shutdown, name="lambdagate-tracing-shutdown", daemon=True)
        stopping.start()
        stopping.join(SHUTDOWN_TIMEOUT)

    def _error(self, span: Any, description: str, error_type: str | None = None) -> None:
        if span.is_recording():
            span.set_attribute("error.type", error_type or description)
            span.set_status(self._status_error(description))

    def _failed(self, span: Any, exc: BaseException) -> None:
        """Mark a span failed by `exc`: a BackendError by its status, a cancellation (deadline), or a bug."""
        if not span.is_recording():
            return
        if isinstance(exc, BackendError):
            span.set_attribute("lambdagate.error.status", exc.status)
            if exc.cause:
                span.set_attribute("lambdagate.error.cause", exc.cause)
            self._error(span, exc.message, "timeout" if exc.timed_out else str(exc.status))
        elif isinstance(exc, Exception):
            if span.status.is_unset:
                span.record_exception(exc)
                self._error(span, f"{type(exc).__name__}: {exc}"[:200], type(exc).__qualname__)
        elif span.status.is_unset:
            self._error(span, "cancelled", type(exc).__name__)
