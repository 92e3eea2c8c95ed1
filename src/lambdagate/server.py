"""The gateway as a plain ASGI application: route, build the backend request, run the endpoint pipeline.

Everything derived from the config (routes, pipelines, header and query allow-lists) is built at start-up,
in the worker's own event loop; a request only looks things up.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import re
import secrets
import time
from time import perf_counter
from typing import Any
from urllib.parse import parse_qsl, quote

import aiohttp

from lambdagate import __version__
from lambdagate.backends import Resources, factory_for
from lambdagate.backends.http import USER_AGENT
from lambdagate.admission import Admission
from lambdagate.config import LoadedConfig, LoadOptions, load_config, server_options
from lambdagate.config.model import EndpointConfig
from lambdagate.errors import RequestRejected, StartupError
from lambdagate.pipeline import EndpointPipeline, Reply, build_endpoint
from lambdagate.pipeline.render import INCOMPLETE, json_reply
from lambdagate.proxy import ProxyRequest
from lambdagate.router import Router
from lambdagate.telemetry.logs import AccessLog, LogSettings, configure as configure_logs
from lambdagate.telemetry.metrics import WorkerMetrics, metrics_options
from lambdagate.telemetry.tracing import tracing_options

log = logging.getLogger("lambdagate")
# A client's X-Request-Id is kept when it is short and plain (it ends up in logs and backend headers).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")

# Never forwarded, even with "*": they describe the client's connection, not the request.
# Accept-Encoding too: the gateway decodes backend replies itself and only understands what its client asks for.
_NEVER_FORWARD = frozenset({b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding",
                            b"te", b"trailer", b"upgrade", b"proxy-authorization", b"proxy-connection",
                            b"accept-encoding"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Route:
    """An endpoint pipeline plus the request-side rules of its endpoint, precomputed."""

    __slots__ = ("pipeline", "template", "all_headers", "headers", "all_query", "query", "reads_body", "stats")

    def __init__(self, pipeline: EndpointPipeline, config: EndpointConfig, stats: Any = None) -> None:
        self.pipeline = pipeline
        self.template = config.endpoint
        self.stats = stats  # telemetry.metrics.EndpointStats, when metrics are on
        self.all_headers = "*" in config.input_headers
        self.headers = frozenset(h.lower().encode("latin-1") for h in config.input_headers) - _NEVER_FORWARD
        self.all_query = "*" in config.input_query_strings
        self.query = frozenset(config.input_query_strings)
        self.reads_body = config.method in _BODY_METHODS


class Gateway:
    """The ASGI application of one worker. Admission checks run first, before any work is done."""

    def __init__(self, loaded: LoadedConfig, *, debug: bool = False, local_lambda_endpoint: str | None = None,
                 log_settings: LogSettings | None = None, metrics_dir: str | None = None) -> None:
        self.loaded = loaded
        self.debug = debug
        self.local_lambda_endpoint = local_lambda_endpoint
        self.log_settings = log_settings or LogSettings()
        self.options = server_options(loaded.service)
        self.admission = Admission(self.options)
        self.max_body_bytes = self.options.max_body_bytes
        self.read_timeout = self.options.read_timeout
        self.router: Router[Route] = Router()
        self.resources: Resources | None = None
        self.started = time.monotonic()
        self.access_log: AccessLog | None = None
        self.metrics_dir = metrics_dir
        self.metrics: Any = None  # telemetry.metrics.WorkerMetrics
        self.tracing: Any = None  # telemetry.tracing.Tracing
        self.unmatched_stats: Any = None  # telemetry.metrics.EndpointStats for 404/405
        self._tasks: list[asyncio.Task] = []
        self._ids = itertools.count(1)
        # Generated request ids: random per worker, then a counter (unique without a syscall per request).
        self._id_prefix = f"{secrets.token_hex(4)}-"

    async def startup(self) -> None:
        try:
            await self._build()
        except BaseException:
            await self.shutdown()  # stops the background tasks started so far
            raise

    async def _build(self) -> None:
        loop = asyncio.get_running_loop()
        writer = configure_logs(self.log_settings)
        self._tasks.append(loop.create_task(writer.run()))
        if self.log_settings.access:
            self.access_log = AccessLog(self.log_settings, writer)
        service = self.loaded.service
        metrics_opts = metrics_options(service)
        endpoint_metrics = False
        if metrics_opts is not None and self.metrics_dir:
            admission = self.admission
            self.metrics = WorkerMetrics(self.metrics_dir, in_flight_of=lambda: admission.in_flight)
            self._tasks.append(loop.create_task(self.metrics.run()))
            endpoint_metrics = metrics_opts.endpoint_metrics
            if endpoint_metrics:  # requests no endpoint took: router misses and admission refusals
                self.unmatched_stats = self.metrics.endpoint("*", "_unmatched")
                self.admission.stats = self.metrics.endpoint("*", "_refused")
        tracing_opts = tracing_options(service)
        if tracing_opts is not None:
            from lambdagate.telemetry.tracing import Tracing

            self.tracing = Tracing(tracing_opts)
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=512, ttl_dns_cache=60, keepalive_timeout=30)
        # No cookie jar: a shared one would replay cookies one client's backend call received on every other
        # client's calls. User-Agent is a default header, not a skipped auto-header: aiohttp rebuilds a header
        # dict on every request that has skip_auto_headers.
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                        auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar(),
                                        headers={"User-Agent": USER_AGENT})
        self.resources = Resources(session=session, local_lambda_endpoint=self.local_lambda_endpoint,
                                   max_response_bytes=self.options.max_backend_response_bytes,
                                   metrics=self.metrics, tracing=self.tracing,
                                   backend_metrics=metrics_opts is not None and metrics_opts.backend_metrics,
                                   record_calls=self.access_log is not None)
        for endpoint in service.endpoints:
            pipeline = await build_endpoint(service, endpoint, self.resources, factory_for)
            stats = self.metrics.endpoint(endpoint.method, endpoint.endpoint) if endpoint_metrics else None
            self.router.add(endpoint.method, endpoint.endpoint, Route(pipeline, endpoint, stats))
        log.info("serving %d endpoints from %s", len(service.endpoints), self.loaded.source or "config")
        writer.flush()  # start-up lines are out before the first request is served
        # Everything built so far lives as long as the worker: move it out of the collector's reach, so the
        # periodic full collections triggered by per-request garbage stay short (fewer latency spikes).
        gc.collect()
        gc.freeze()

    async def shutdown(self) -> None:
        if self.resources is not None:
            await self.resources.close()
            self.resources = None
        # Logs and counts first (cheap, local), then the spans (a network export that may have to time out).
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.metrics is not None:
            self.metrics.close()
        if self.tracing is not None:
            self.tracing.shutdown()  # flushes the queued spans, bounded in time

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        admission = self.admission
        refusal = admission.check(scope)
        if refusal is not None:
            await self._refuse(scope, send, refusal)
            return
        admission.in_flight += 1
        try:
            await self._http(scope, receive, send)
        finally:
            admission.in_flight -= 1

    def _new_request_id(self) -> str:
        return self._id_prefix + str(next(self._ids))

    async def _refuse(self, scope: dict, send: Any, refusal: tuple[dict, dict]) -> None:
        """An admission refusal: the prebuilt reply plus a fresh request id, counted and logged like the rest."""
        start, body = refusal
        request_id = self._new_request_id()
        await send({**start, "headers": [*start["headers"], (b"x-request-id", request_id.encode())]})
        await send(body)
        if self.admission.stats is not None:
            self.admission.stats.observe(start["status"], 0.0)
        if self.access_log is not None:
            client = scope.get("client")
            self.access_log.write(scope["method"], None, scope["path"][:200], start["status"], 0.0,
                                  len(body["body"]), request_id, client[0] if client else "", None)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except StartupError as exc:
                    log.error("start-up failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        started = perf_counter()
        method = scope["method"]
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1").partition("?")[0] if raw_path else quote(scope["path"])
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        if not request_id or not _REQUEST_ID.fullmatch(request_id):
            if request_id:
                log.debug("replaced the client's X-Request-Id %r: 1-128 characters of %s", request_id[:64],
                          _REQUEST_ID.pattern)
            request_id = self._new_request_id()
        calls: list | None = [] if self.access_log is not None else None
        route: Route | None = None
        span = None
        if self.tracing is not None and not self.tracing.skips(path):
            span = self.tracing.start_server_span(method, None, path, scope["headers"])
            span.set_request_id(request_id)
        try:
            route, reply = await self._dispatch(scope, receive, method, path, request_id, calls, span)
        except RequestRejected as exc:
            reply = json_reply(exc.status, {"error": exc.message})
        except Exception:  # noqa: BLE001 - the client gets a plain 500, the log gets the traceback
            log.exception("unhandled error serving %s %s request_id=%s", method, path, request_id)
            reply = json_reply(500, {"error": "internal error"})
        headers = reply.headers + [(b"x-request-id", request_id.encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})
        seconds = perf_counter() - started
        if span is not None:
            span.end(reply.status)
        if route is not None:
            if route.stats is not None:
                route.stats.observe(reply.status, seconds)
        elif self.unmatched_stats is not None and reply.status in (404, 405):
            self.unmatched_stats.observe(reply.status, seconds)
        if self.access_log is not None:
            client = scope.get("client")
            self.access_log.write(method, route.template if route else None, path, reply.status,
                                  round(seconds * 1000, 2), len(reply.body), request_id,
                                  client[0] if client else "", calls, span.trace_id if span is not None else None)

    async def _dispatch(self, scope: dict, receive: Any, method: str, path: str, request_id: str,
                        calls: list | None, span: Any) -> tuple[Route | None, Reply]:
        if path.startswith("/__"):
            builtin = await self._builtin(scope, receive, method, path)
            if builtin is not None:
                return None, builtin
        match = self.router.match(method, path)
        if match is None:
            return None, json_reply(404, {"error": "not found"}, [INCOMPLETE])
        route = match.handler
        if route is None:
            return None, json_reply(405, {"error": "method not allowed"}, [(b"allow", match.allow.encode()), INCOMPLETE])
        if span is not None:
            span.set_route(method, route.template)
        # Refusals past this point belong to the endpoint (its metrics and access line), so they are returned.
        for value in match.params.values():
            if value in (".", "..") or any(ord(c) < 0x20 or c == "\x7f" for c in value):
                return route, json_reply(400, {"error": "invalid path parameter"})
        try:
            body = await self._read_body(receive) if route.reads_body else b""
        except RequestRejected as exc:
            return route, json_reply(exc.status, {"error": exc.message})
        headers: dict[str, str] = {}
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif route.all_headers and name not in _NEVER_FORWARD or name in route.headers:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
        query: list[tuple[str, str]] = []
        if (route.all_query or route.query) and scope["query_string"]:
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            query = pairs if route.all_query else [p for p in pairs if p[0] in route.query]
        client = scope.get("client")
        pipeline = route.pipeline
        req = ProxyRequest(
            method=method, path=path, params=match.params, query=query, headers=headers, body=body,
            client_ip=client[0] if client else "", request_id=request_id,
            deadline=asyncio.get_running_loop().time() + pipeline.timeout, host=host,
            scheme=scope.get("scheme", "http"), calls=calls,
        )
        return route, await pipeline(req)

    async def _read_body(self, receive: Any) -> bytes:
        try:
            async with asyncio.timeout(self.read_timeout):
                return await self._receive_body(receive)
        except TimeoutError:
            raise RequestRejected(408, "request body not received in time") from None

    async def _receive_body(self, receive: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestRejected(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestRejected(413, f"request body larger than {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _builtin(self, scope: dict, receive: Any, method: str, path: str) -> Reply | None:
        if path == "/__health":
            if method not in ("GET", "HEAD"):
                return json_reply(405, {"error": "method not allowed"}, [(b"allow", b"GET, HEAD")])
            return json_reply(200, {"status": "ok", "version": __version__,
                                    "uptime_s": round(time.monotonic() - self.started, 3)})
        if self.debug and path.startswith("/__echo/"):
            body = await self._read_body(receive)
            return json_reply(200, {
                "method": method,
                "path": path,
                "query": _multi(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
                "headers": _multi([(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]),
                "body": body.decode("utf-8", "replace"),
            })
        return None


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def app_from_env() -> Gateway:
    """granian's factory target: each worker loads and validates the config named by the environment."""
    settings = LogSettings.from_env()
    configure_logs(settings)
    local = os.environ.get("LAMBDAGATE_LOCAL_LAMBDA_ENDPOINT") or None
    from lambdagate.config.guards import allow_list_from_env  # the guards `run --allow-unsupported` let through

    loaded = load_config(os.environ["LAMBDAGATE_CONFIG"],
                         LoadOptions(local_lambda_endpoint=local, allow_unsupported=allow_list_from_env()))
    return Gateway(loaded, debug=os.environ.get("LAMBDAGATE_DEBUG") == "1", local_lambda_endpoint=local,
                   log_settings=settings, metrics_dir=os.environ.get("LAMBDAGATE_METRICS_DIR") or None)
