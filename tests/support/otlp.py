"""An OTLP/HTTP trace collector for tests, run as its own process: `python -m tests.support.otlp PORT`.

Routes:
  POST   /v1/traces   an ExportTraceServiceRequest (application/x-protobuf, optionally gzip): its spans are stored
  GET    /spans       the spans received, oldest first, as JSON objects: trace_id, span_id, parent_span_id (hex,
                      "" for a root), name, kind ("SERVER", "CLIENT", ...), attributes, status_code ("UNSET",
                      "OK", "ERROR"), status_message, service_name, transport ("http"; "grpc" in otlp_grpc)
  DELETE /spans       forget them
"""

from __future__ import annotations

import gzip
import sys
import zlib
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

spans: list[dict[str, Any]] = []


def _value(value: Any) -> Any:
    """An OTLP AnyValue as plain JSON."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


async def export(request: web.Request) -> web.Response:
    body = await request.read()
    encoding = request.headers.get("Content-Encoding", "")
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    if request.content_type != "application/x-protobuf":
        return web.Response(status=415, text="only application/x-protobuf is accepted")
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    record(message, "http")
    return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf")


def record(message: ExportTraceServiceRequest, transport: str) -> None:
    """Store the spans of one export, each with the transport it came over ("http" or "grpc")."""
    for resource_spans in message.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        "attributes": _attributes(span.attributes),
                        "status_code": Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                        "status_message": span.status.message,
                        "service_name": service,
                        "transport": transport,
                    }
                )


async def list_spans(request: web.Request) -> web.Response:
    return web.json_response(spans)


async def clear_spans(request: web.Request) -> web.Response:
    spans.clear()
    return web.json_response({"cleared": True})


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/spans", list_spans)
    app.router.add_delete("/spans", clear_spans)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
