"""The gateway as a plain ASGI application: route, build the backend request, run the endpoint pipeline.

Everything derived from the config (routes, pipelines, header and query allow-lists) is built at start-up,
in the worker's own event loop; a request only looks things up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
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

log = logging.getLogger("lambdagate")
access_log = logging.getLogger("lambdagate.access")

# Never forwarded, even with "*": they describe the client's connection, not the request.
# Accept-Encoding too: the gateway decodes backend replies itself and only understands what its client asks for.
_NEVER_FORWARD = frozenset({b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding",
                            b"te", b"trailer", b"upgrade", b"proxy-authorization", b"proxy-connection",
                            b"accept-encoding"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Route:
    """An endpoint pipeline plus the request-side rules of its endpoint, precomputed."""

    __slots__ = ("pipeline", "all_headers", "headers", "all_query", "query", "reads_body")

    def __init__(self, pipeline: EndpointPipeline, config: EndpointConfig) -> None:
        self.pipeline = pipeline
        self.all_headers = "*" in config.input_headers
        self.headers = frozenset(h.lower().encode("latin-1") for h in config.input_headers) - _NEVER_FORWARD
        self.all_query = "*" in config.input_query_strings
        self.query = frozenset(config.input_query_strings)
        self.reads_body = config.method in _BODY_METHODS


class Gateway:
    def __init__(self, loaded: LoadedConfig, *, debug: bool = False, local_lambda_endpoint: str | None = None,
                 access_log_enabled: bool = True) -> None:
        self.loaded = loaded
        self.debug = debug
        self.local_lambda_endpoint = local_lambda_endpoint
        self.access_log_enabled = access_log_enabled
        self.options = server_options(loaded.service)
        self.max_body_bytes = self.options.max_body_bytes
        self.read_timeout = self.options.read_timeout
        self.router: Router[Route] = Router()
        self.resources: Resources | None = None
        self.started = time.monotonic()
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-"

    async def startup(self) -> None:
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=512, ttl_dns_cache=60, keepalive_timeout=30)
        # No cookie jar: a shared one would replay cookies one client's backend call received on every other
        # client's calls. User-Agent is a default header, not a skipped auto-header: aiohttp rebuilds a header
        # dict on every request that has skip_auto_headers.
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                        auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar(),
                                        headers={"User-Agent": USER_AGENT})
        self.resources = Resources(session=session, local_lambda_endpoint=self.local_lambda_endpoint,
                                   max_response_bytes=self.options.max_backend_response_bytes)
        service = self.loaded.service
        try:
            for endpoint in service.endpoints:
                pipeline = await build_endpoint(service, endpoint, self.resources, factory_for)
                self.router.add(endpoint.method, endpoint.endpoint, Route(pipeline, endpoint))
        except BaseException:
            await self.shutdown()
            raise
        log.info("serving %d endpoints from %s", len(service.endpoints), self.loaded.source or "config")

    async def shutdown(self) -> None:
        if self.resources is not None:
            await self.resources.close()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

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
        started = time.perf_counter() if self.access_log_enabled else 0.0
        request_id = self._id_prefix + str(next(self._ids))
        method = scope["method"]
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1").partition("?")[0] if raw_path else quote(scope["path"])
        try:
            reply = await self._dispatch(scope, receive, method, path, request_id)
        except RequestRejected as exc:
            reply = json_reply(exc.status, {"error": exc.message})
        except Exception:  # noqa: BLE001 - the client gets a plain 500, the log gets the traceback
            log.exception("unhandled error serving %s %s request_id=%s", method, path, request_id)
            reply = json_reply(500, {"error": "internal error"})
        headers = reply.headers + [(b"x-request-id", request_id.encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})
        if self.access_log_enabled:
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            access_log.info("%s %s %d %.2fms request_id=%s", method, path, reply.status, duration_ms, request_id,
                            extra={"method": method, "path": path, "status": reply.status,
                                   "duration_ms": duration_ms, "request_id": request_id})

    async def _dispatch(self, scope: dict, receive: Any, method: str, path: str, request_id: str) -> Reply:
        if path.startswith("/__"):
            builtin = await self._builtin(scope, receive, method, path)
            if builtin is not None:
                return builtin
        match = self.router.match(method, path)
        if match is None:
            return json_reply(404, {"error": "not found"}, [INCOMPLETE])
        route = match.handler
        if route is None:
            return json_reply(405, {"error": "method not allowed"}, [(b"allow", match.allow.encode()), INCOMPLETE])
        for value in match.params.values():
            if value in (".", "..") or any(ord(c) < 0x20 or c == "\x7f" for c in value):
                raise RequestRejected(400, "invalid path parameter")
        body = await self._read_body(receive) if route.reads_body else b""
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
            scheme=scope.get("scheme", "http"),
        )
        return await pipeline(req)

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


def app_from_env() -> Admission:
    """granian's factory target: each worker loads and validates the config named by the environment."""
    from lambdagate.logs import configure

    debug = os.environ.get("LAMBDAGATE_DEBUG") == "1"
    configure(os.environ.get("LAMBDAGATE_LOG_FORMAT", "text"), debug)
    local = os.environ.get("LAMBDAGATE_LOCAL_LAMBDA_ENDPOINT") or None
    loaded = load_config(os.environ["LAMBDAGATE_CONFIG"], LoadOptions(local_lambda_endpoint=local))
    gateway = Gateway(loaded, debug=debug, local_lambda_endpoint=local,
                      access_log_enabled=os.environ.get("LAMBDAGATE_ACCESS_LOG", "1") == "1")
    return Admission(gateway, gateway.options)
