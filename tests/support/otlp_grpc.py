"""An OTLP/gRPC trace collector for tests, run as its own process: `python -m tests.support.otlp_grpc PORT`.

The gRPC TraceService (`Export`) listens on a second loopback port, chosen by the system; PORT serves the same
HTTP routes as tests/support/otlp.py (GET/DELETE /spans, where each span has "transport": "grpc"), plus:
  GET /grpc-port   {"port": N}: where the gRPC service listens
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support import otlp


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        otlp.record(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


async def serve(port: int) -> None:
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = otlp.make_app()
    app.router.add_get("/grpc-port", lambda request: web.json_response({"port": grpc_port}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
