"""The worker's HTTP client for backends, built from the service's pool keys and `client_tls`
(config/backend_client.py), and the `backend/http/client` namespace.

`ClientSettings` is the one object the client reads: a later client can replace aiohttp behind it.
What maps where (KrakenD's Go transport → aiohttp):
  disable_keep_alives → force_close; idle_connection_timeout → keepalive_timeout (30 s when not set);
  dialer_timeout → the TCP connect timeout; dialer_fallback_delay → happy-eyeballs delay;
  dialer_keep_alive → TCP keep-alive probes (Go's 15 s when not set); response_header_timeout → a limit from the
  start of each call to the reply's head; disable_compression → no `Accept-Encoding: gzip`;
  client_tls → the TLS context. Go's idle-connection caps have no aiohttp equivalent (warned by `check`).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from lambdagate import __version__
from lambdagate.client.aiohttp_client import AiohttpClient
from lambdagate.client.base import HttpClient
from lambdagate.client.fast import FastClient
from lambdagate.config.backend_client import (
    HTTP_CLIENT_NAMESPACE,
    HttpClientOptions,
    PoolSettings,
    pool_settings,
    service_tls,
    tls_context,
    tls_issues,
)
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import ServiceConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError

log = logging.getLogger("lambdagate")
USER_AGENT = f"lambdagate/{__version__}"
_GO_KEEP_ALIVE = 15.0  # Go's dialer default when dialer_keep_alive is not set
_IDLE_DEFAULT = 30.0  # seconds an idle backend connection is kept when idle_connection_timeout is not set
# aiohttp adds these unless skipped: `Accept: */*`, `Accept-Encoding: gzip, deflate[, br]` and, for a body,
# `Content-Type: application/octet-stream`. KrakenD sends none of them: backend calls skip them (per call, not
# per session: the session's other users, such as an OAuth2 token form post, need their Content-Type).
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True)
class ClientSettings:
    """What the backend HTTP client is built from."""

    pool: PoolSettings = field(default_factory=PoolSettings)
    ssl: ssl.SSLContext | bool = True  # True: the system's CAs, TLS 1.2+ (no client_tls given)
    insecure: bool = False


def client_settings(service: ServiceConfig) -> ClientSettings:
    tls = service_tls(service)
    context: ssl.SSLContext | bool = True if tls is None else tls_context(tls)
    return ClientSettings(pool_settings(service), context, tls is not None and tls.allow_insecure_connections)


def _keep_alive_socket(seconds: float | None):
    """A socket factory turning on TCP keep-alive probes every `seconds` (off for 0, as Go's negative)."""
    idle = _GO_KEEP_ALIVE if seconds is None else seconds

    def make(addr_info: Any) -> socket.socket:
        family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
        sock = socket.socket(family, type_, proto)
        if idle > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(idle)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(idle)))
        return sock

    return make


def new_http_session(
    settings: ClientSettings | None = None, resolver: aiohttp.abc.AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """The worker's one HTTP client session, shared by every backend."""
    settings = settings or ClientSettings()
    pool = settings.pool
    if settings.insecure:
        log.warning("client_tls: %s", "backend TLS certificates are NOT verified (allow_insecure_connections)")
    connector = aiohttp.TCPConnector(
        limit=1024,
        limit_per_host=512,
        ttl_dns_cache=60,
        keepalive_timeout=None if pool.disable_keep_alives else (pool.idle_connection_timeout or _IDLE_DEFAULT),
        force_close=pool.disable_keep_alives,
        happy_eyeballs_delay=pool.dialer_fallback_delay or 0.3,
        socket_factory=_keep_alive_socket(pool.dialer_keep_alive),
        ssl=settings.ssl,
        resolver=resolver,
    )
    # No cookie jar: a shared one would replay cookies one client's backend call received on every other
    # client's calls. User-Agent is a default header for the other users of the session (client credentials);
    # backend calls set theirs (backends.http.outgoing_headers).
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=pool.dialer_timeout),
        auto_decompress=True,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT},
    )


CLIENT_KINDS = ("fast", "aiohttp")
CLIENT_ENV = "LAMBDAGATE_HTTP_CLIENT"


def client_kind(configured: str | None) -> str:
    """`lambdagate/server` `http_client`, else $LAMBDAGATE_HTTP_CLIENT, else "fast"."""
    kind = configured or os.environ.get(CLIENT_ENV, "").strip().lower() or "fast"
    if kind not in CLIENT_KINDS:
        raise ValueError(f"{CLIENT_ENV}={kind!r}: expected one of {', '.join(CLIENT_KINDS)}")
    return kind


def new_backend_client(
    kind: str, session: aiohttp.ClientSession, settings: ClientSettings | None = None, resolver: Any = None
) -> HttpClient:
    """The client of backend and Lambda calls: the fast one, or aiohttp's `session` behind the seam. The pool keys
    map as for aiohttp (see the module docstring); max_idle_connections_per_host and max_idle_connections bound
    the idle connections per host and in all."""
    if kind == "aiohttp":
        return AiohttpClient(session)
    settings = settings or ClientSettings()
    pool = settings.pool
    keep_alive = _GO_KEEP_ALIVE if pool.dialer_keep_alive is None else pool.dialer_keep_alive
    return FastClient(
        ssl=settings.ssl,
        max_per_host=512,
        max_idle=pool.max_idle_connections_per_host or 250,
        max_idle_total=pool.max_idle_connections,
        idle_timeout=pool.idle_connection_timeout or _IDLE_DEFAULT,
        keep_alive=not pool.disable_keep_alives,
        connect_timeout=pool.dialer_timeout,
        tcp_keep_alive=keep_alive,
        resolver=resolver,
    )


def parse_http_client(value: Any, ctx: NamespaceContext) -> HttpClientOptions:
    options = parse_namespace_model(HttpClientOptions, value, ctx, '{"no_redirect": true}')
    if options.client_tls is not None:
        errors, warnings = tls_issues(options.client_tls)
        if errors:
            raise NamespaceError([(f"client_tls{'.' + p if p else ''}", m) for p, m in errors])
        ctx.warnings.extend((f"client_tls.{p}", m) for p, m in warnings)
    if options.proxy_address is not None:
        ctx.warnings.append(("proxy_address", "not supported, ignored: the backend is called directly"))
    return options


HTTP_CLIENT = Namespace(HTTP_CLIENT_NAMESPACE, "backend", parse_http_client)
