"""The gateway as a plain ASGI application: its lifespan, and the composition of its request stack.

Everything derived from the config (routes, pipelines, allow-lists) is built at start-up, in the worker's own
event loop (`lambdagate.stack.build_stack` declares the order); a request only looks things up.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

import aiohttp

from lambdagate import __version__, plugins
from lambdagate.asgi import Receive, Scope, Send
from lambdagate.backends import Resources
from lambdagate.backends.client_options import client_kind, client_settings, new_backend_client, new_http_session
from lambdagate.backends.dns_sd import DirectoryResolver, SrvDirectory
from lambdagate.config import LoadedConfig, LoadOptions, load_config, server_options
from lambdagate.config.guards import allow_list_from_env
from lambdagate.config.model import BackendConfig, ServiceConfig
from lambdagate.config.router_options import router_options
from lambdagate.errors import StartupError
from lambdagate.front import Exchange, Handler
from lambdagate.front.admission import Admission
from lambdagate.pipeline import BackendFactory, build_endpoint
from lambdagate.stack import Observers, build_stack
from lambdagate.telemetry.logs import AccessLog, LineWriter, LogSettings, flush_outputs
from lambdagate.telemetry.logs import configure as configure_logs
from lambdagate.telemetry.metrics import WorkerMetrics, metrics_options
from lambdagate.telemetry.tracing import tracing_options

log = logging.getLogger("lambdagate")
# Reply bodies over this size go to the server in pieces (Gateway._send_in_pieces), each within send_timeout.
LARGE_REPLY_BYTES = 1024 * 1024
# granian's send does not fail once the client is gone (it logs a line per piece): pieces are large enough that a
# client leaving a 16 MiB reply costs 16 such lines, small enough that a stalled client is seen within a piece.
REPLY_PIECE_BYTES = 1024 * 1024


def _backend_client(service: ServiceConfig, kind: str | None) -> tuple[aiohttp.ClientSession, Any, SrvDirectory | None]:
    """The worker's aiohttp session and backend client (`kind`: lambdagate/server http_client), resolving SRV
    targets themselves when a backend uses `sd: "dns"`."""
    try:
        settings, kind = client_settings(service), client_kind(kind)
    except ValueError as exc:  # a bad LAMBDAGATE_HTTP_CLIENT (the config's value is checked when it is read)
        raise StartupError(str(exc)) from None
    if not any(b.sd == "dns" for e in service.endpoints for b in e.backend):
        session = new_http_session(settings)
        return session, new_backend_client(kind, session, settings), None
    directory = SrvDirectory(service.dns_cache_ttl)
    resolver = DirectoryResolver(directory)
    session = new_http_session(settings, resolver)
    return session, new_backend_client(kind, session, settings, resolver), directory


class Gateway:
    """The ASGI application of one worker. `backend_factory` picks how each backend is built (tests pass fakes)."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        debug: bool = False,
        local_lambda_endpoint: str | None = None,
        log_settings: LogSettings | None = None,
        metrics_dir: str | None = None,
        backend_factory: Callable[[BackendConfig], BackendFactory] = plugins.backend_factory,
    ) -> None:
        self.loaded = loaded
        self.debug = debug
        self.local_lambda_endpoint = local_lambda_endpoint
        self.log_settings = log_settings or LogSettings()
        self.options = server_options(loaded.service)
        self.router_options = router_options(loaded.service)
        # KrakenD's X-KrakenD header, on every reply; hide_version_header gives Lura's "Version undefined".
        version = "undefined" if self.router_options.hide_version_header else __version__
        self.version_header = (b"x-krakend", f"Version {version}".encode())
        self.admission = Admission(self.options)
        self.backend_factory = backend_factory
        self.metrics_dir = metrics_dir
        self.resources: Resources | None = None
        self.metrics: WorkerMetrics | None = None
        self.observers = Observers()
        self.handler: Handler | None = None
        self._tasks: list[asyncio.Task] = []

    async def startup(self) -> None:
        try:
            await self._build()
        except BaseException:
            await self.shutdown()  # stops the background tasks started so far
            raise

    async def _build(self) -> None:
        writer = configure_logs(self.log_settings)
        self._background(writer.run())
        self._start_telemetry(writer)
        service = self.loaded.service
        tracing = self.observers.tracing
        metrics_opts = metrics_options(service)
        session, client, directory = _backend_client(service, self.options.http_client)
        self.resources = Resources(
            session=session,
            client=client,
            local_lambda_endpoint=self.local_lambda_endpoint,
            max_response_bytes=self.options.max_backend_response_bytes,
            # the request's header limits bound what a backend's reply may pass on too
            max_reply_headers=self.options.max_header_count,
            max_reply_header_bytes=self.options.max_header_bytes,
            metrics=self.metrics,
            tracing=tracing,
            backend_metrics=metrics_opts is not None and metrics_opts.backend_metrics,
            record_calls=self.observers.access_log is not None,
        )
        if directory is not None:
            self.resources.shared[SrvDirectory] = directory
            self.resources.on_close(directory.close)
        pipelines = [
            await build_endpoint(
                service,
                endpoint,
                self.resources,
                self.backend_factory,
                plugins.RESPONSE_STEPS,
                plugins.ENDPOINT_WRAPPERS,
            )
            for endpoint in service.endpoints
        ]
        self.handler = await build_stack(
            service,
            pipelines,
            self.resources,
            self.options,
            self.admission,
            self.observers,
            started=time.monotonic(),
            debug=self.debug,
        )
        log.info("serving %d endpoints from %s", len(service.endpoints), self.loaded.source or "config")
        writer.flush()  # start-up lines are out before the first request is served
        # Everything built so far lives as long as the worker: move it out of the collector's reach, so the
        # periodic full collections triggered by per-request garbage stay short (fewer latency spikes).
        gc.collect()
        gc.freeze()

    def _start_telemetry(self, writer: LineWriter) -> None:
        service = self.loaded.service
        if self.log_settings.access and not self.router_options.disable_access_log:
            self.observers.access_log = AccessLog(self.log_settings, writer)
            self.observers.access_log.skip_paths = frozenset(self.router_options.logger_skip_paths)
        metrics_opts = metrics_options(service)
        if metrics_opts is not None and self.metrics_dir:
            admission = self.admission
            self.metrics = WorkerMetrics(self.metrics_dir, in_flight_of=lambda: admission.in_flight)
            self._background(self.metrics.run())
            if metrics_opts.endpoint_metrics:
                self.observers.metrics = self.metrics
        tracing_opts = tracing_options(service)
        if tracing_opts is not None:
            from lambdagate.telemetry.tracing import Tracing

            self.observers.tracing = Tracing(tracing_opts)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coroutine))

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
        flush_outputs()
        if self.observers.tracing is not None:
            self.observers.tracing.shutdown()  # flushes the queued spans, bounded in time

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        raw_path = scope.get("raw_path")
        method = scope["method"]
        path = raw_path.decode("latin-1").partition("?")[0] if raw_path else quote(scope["path"])
        reply = await self.handler(Exchange(scope, receive, method, path))  # type: ignore[misc] - set at start-up
        headers = [*reply.headers, self.version_header]
        body = b"" if method == "HEAD" else reply.body
        if len(body) <= LARGE_REPLY_BYTES:
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        else:  # sent in pieces: its length is said up front, as the server says it for a body sent whole
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            await self._send_in_pieces(send, body, scope)

    async def _send_in_pieces(self, send: Send, body: bytes, scope: Scope) -> None:
        """A large body in pieces: the server takes a piece only when its buffers for the client have room, so a
        client reading none of it would keep the whole body in this worker's memory. A piece not taken within
        `send_timeout` drops the connection (the body is let go)."""
        last, timeout = len(body) - REPLY_PIECE_BYTES, self.options.send_timeout
        for start in range(0, len(body), REPLY_PIECE_BYTES):
            message = {"type": "http.response.body", "body": body[start : start + REPLY_PIECE_BYTES]}
            message["more_body"] = start < last
            try:
                async with asyncio.timeout(timeout):
                    await send(message)
            except TimeoutError:
                client = scope.get("client")
                log.warning(
                    "dropped the connection of %s: it took none of a %d-byte reply for %gs (send_timeout), %d sent",
                    client[0] if client else "a client",
                    len(body),
                    timeout,
                    start,
                )
                return

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except StartupError as exc:
                    log.error("start-up failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def app_from_env() -> Gateway:
    """granian's factory target: each worker loads and validates the config named by the environment."""
    plugins.install()
    settings = LogSettings.from_env()
    configure_logs(settings)
    local = os.environ.get("LAMBDAGATE_LOCAL_LAMBDA_ENDPOINT") or None
    loaded = load_config(
        os.environ["LAMBDAGATE_CONFIG"],
        LoadOptions(local_lambda_endpoint=local, allow_unsupported=allow_list_from_env()),
    )
    return Gateway(
        loaded,
        debug=os.environ.get("LAMBDAGATE_DEBUG") == "1",
        local_lambda_endpoint=local,
        log_settings=settings,
        metrics_dir=os.environ.get("LAMBDAGATE_METRICS_DIR") or None,
    )
