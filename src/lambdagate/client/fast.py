"""The fast client: pooled HTTP/1.1 on asyncio Protocols with httptools (client.fast_conn), behind the seam.

Why its own: the aiohttp client costs ~240 µs of CPU per proxied call on this kind of machine, this one a fraction
(docs/benchmarks.md). What it does:
- a keep-alive pool per (scheme, host, port, TLS context), bounded in open connections (callers past the bound
  wait for one) and in idle ones (per pool, and optionally across pools, closing the one idle longest as Go's
  MaxIdleConns), each idle connection closed after the idle timeout;
- a request sent again when a pooled connection fails before any byte of the reply arrived and the request is
  idempotent or was never written (a keep-alive the server closed meanwhile), on the pool's next connection, as
  Go's transport does (each stale connection is used up by one try);
- host names resolved once per TTL (or by a resolver given, e.g. backends.dns_sd.DirectoryResolver);
- TLS with verification and SNI by default, or the context a call or the service gives (client_tls);
- errors whose text names the aiohttp error of the same case, so log lines read the same whichever client serves.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_mod
import time
from collections import deque
from typing import Any

from multidict import CIMultiDict
from yarl import URL

from lambdagate.client.base import ClientError, ConnectError, ConnectTimeout, Reply, TLSFailure
from lambdagate.client.fast_conn import Connection, NotWritten

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_EMPTY_LENGTH = frozenset({"POST", "PUT", "PATCH"})  # Go sends "Content-Length: 0" for these without a body
_NOT_SENT = frozenset({"host", "content-length", "transfer-encoding", "connection"})  # the client's to set
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Resolver:
    """Host → addresses, cached for `ttl` seconds; `upstream` (aiohttp's resolver interface) when given (its owner
    closes it)."""

    def __init__(self, ttl: float = 60.0, upstream: Any = None) -> None:
        self.ttl, self.upstream = ttl, upstream
        self._cache: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}

    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        key = (host, port)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        if self.upstream is not None:
            found = await self.upstream.resolve(host, port, socket.AF_UNSPEC)
            addresses = [(r["family"], r["host"]) for r in found]
        else:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys((info[0], info[4][0]) for info in infos))
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, addresses)
        return addresses


class Pool:
    """The connections to one (scheme, host, port, TLS context): idle ones last-in first-out."""

    def __init__(self, client: FastClient, host: str, port: int, context: ssl_mod.SSLContext | None) -> None:
        self.client, self.host, self.port, self.context = client, host, port, context
        self.idle: deque[Connection] = deque()
        self.open = 0
        self.waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> Connection:
        while True:
            idle = self.idle
            while idle:
                conn = idle.pop()
                if not conn.closed and time.monotonic() - conn.idle_since < self.client.idle_timeout:
                    conn.reused = True
                    return conn
                self.discard(conn)
            if self.open < self.client.max_per_host:
                self.open += 1
                try:
                    return await self.client.connect(self.host, self.port, self.context)
                except BaseException:
                    self.open -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
                elif not waiter.cancelled():
                    self._wake()  # woken and cancelled at once: pass the turn on
                raise

    def release(self, conn: Connection) -> None:
        client = self.client
        if conn.reusable and not conn.closed and client.keep_alive and len(self.idle) < client.max_idle:
            if client.max_idle_total:
                client.make_idle_room()
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
            self._wake()
            self.client.sweep_soon()
        else:
            self.discard(conn)

    def discard(self, conn: Connection) -> None:
        conn.close()
        self.open -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def sweep(self, now: float) -> None:
        """Close the connections idle for longer than the idle timeout (the oldest are at the left)."""
        idle, timeout = self.idle, self.client.idle_timeout
        while idle and (idle[0].closed or now - idle[0].idle_since >= timeout):
            self.discard(idle.popleft())


class FastClient:
    """`HttpClient` on asyncio Protocols (see the module's docstring). One per worker (it needs the loop)."""

    decompresses = True

    def __init__(
        self,
        *,
        ssl: ssl_mod.SSLContext | bool = True,
        max_per_host: int = 512,
        max_idle: int = 250,
        max_idle_total: int = 0,
        idle_timeout: float = 30.0,
        keep_alive: bool = True,
        connect_timeout: float | None = None,
        tcp_keep_alive: float = 15.0,
        dns_ttl: float = 60.0,
        resolver: Any = None,
    ) -> None:
        self.default_ssl = ssl
        self.max_per_host, self.max_idle = max_per_host, max(1, max_idle)
        self.max_idle_total = max(0, max_idle_total)  # across all pools; 0: no cap
        self.idle_timeout, self.keep_alive = idle_timeout, keep_alive
        self.connect_timeout, self.tcp_keep_alive = connect_timeout, tcp_keep_alive
        self.resolver = Resolver(dns_ttl, resolver)
        self._pools: dict[tuple, Pool] = {}
        self._contexts: dict[bool, ssl_mod.SSLContext] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict,
        body: bytes | None,
        *,
        limit: int,
        ssl: ssl_mod.SSLContext | bool = True,
        header_timeout: float | None = None,
    ) -> Reply:
        if self._closed:
            raise ClientError("ClientError: the client is closed")
        pool = self._pool(url, ssl)
        payload = serialise(method, url, headers, body, close=not self.keep_alive)
        head_only = method == "HEAD"
        # Go's transport: a request that failed on a pooled connection the server had closed meanwhile (nothing
        # received, and idempotent or never written) is sent again, on the next connection the pool gives. Each
        # such stale connection is used up by one try, so the tries are bounded by the pool's idle connections;
        # a fresh connection's failure ends the call, unless it closed before anything was written (once).
        fresh_retry, tries = True, self.max_idle + 2
        while True:
            tries -= 1
            conn = await pool.acquire()
            try:
                reply = await conn.exchange(payload, limit, head_only, header_timeout)
            except ConnectError as exc:
                pool.discard(conn)
                if tries > 0 and _replayable(conn, method, exc):
                    continue
                if tries > 0 and fresh_retry and isinstance(exc, NotWritten):
                    fresh_retry = False
                    continue
                raise
            except BaseException:  # cancelled (the deadline), too large, malformed: never back to the pool
                pool.discard(conn)
                raise
            pool.release(conn)
            return reply

    def _pool(self, url: URL, ssl: ssl_mod.SSLContext | bool) -> Pool:
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS or not url.raw_host:
            raise ClientError(f"InvalidURL: {str(url.with_query(None))[:200]!r}")
        context = None if scheme == "http" else self._context(ssl)
        key = (url.raw_host, url.port, id(context) if context is not None else 0)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(self, url.raw_host, url.port or _DEFAULT_PORTS[scheme], context)
        return pool

    def _context(self, ssl: ssl_mod.SSLContext | bool) -> ssl_mod.SSLContext:
        if ssl is True:
            ssl = self.default_ssl
        if isinstance(ssl, ssl_mod.SSLContext):
            return ssl
        context = self._contexts.get(ssl)
        if context is None:
            context = self._contexts[ssl] = ssl_mod.create_default_context()
            if not ssl:
                context.check_hostname, context.verify_mode = False, ssl_mod.CERT_NONE
        return context

    async def connect(self, host: str, port: int, context: ssl_mod.SSLContext | None) -> Connection:
        loop = asyncio.get_running_loop()
        where = f"{host}:{port} ssl:{'default' if context else False}"
        try:
            addresses = await self.resolver.resolve(host, port)
        except OSError as exc:
            raise ConnectError(f"ClientConnectorDNSError: Cannot connect to host {where} [{exc}]") from None
        last: Exception | None = None
        for _family, address in addresses:
            conn = Connection(loop)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.create_connection(
                        lambda conn=conn: conn, address, port, ssl=context, server_hostname=host if context else None
                    )
            except TimeoutError:
                raise ConnectTimeout(f"ConnectionTimeoutError: Connection timeout to host {where}") from None
            except (ssl_mod.SSLError, ssl_mod.CertificateError) as exc:
                raise TLSFailure(f"ClientConnectorCertificateError: Cannot connect to host {where} [{exc}]") from None
            except OSError as exc:
                last = exc
                continue
            self._tune(conn)
            return conn
        raise ConnectError(f"ClientConnectorError: Cannot connect to host {where} [{last}]")

    def _tune(self, conn: Connection) -> None:
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is None or self.tcp_keep_alive <= 0:
            return
        idle = max(1, int(self.tcp_keep_alive))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, idle)

    def make_idle_room(self) -> None:
        """Go's MaxIdleConns: with the idle connections of all pools at the cap, the one idle longest is closed."""
        pools = [pool for pool in self._pools.values() if pool.idle]
        if sum(len(pool.idle) for pool in pools) >= self.max_idle_total:
            oldest = min(pools, key=lambda pool: pool.idle[0].idle_since)
            oldest.discard(oldest.idle.popleft())

    def sweep_soon(self) -> None:
        if self._sweeper is None and not self._closed:
            delay = max(0.05, self.idle_timeout / 2)
            self._sweeper = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for pool in self._pools.values():
            pool.sweep(now)
        if any(pool.idle for pool in self._pools.values()):
            self.sweep_soon()

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for pool in self._pools.values():
            while pool.idle:
                pool.discard(pool.idle.pop())


def _replayable(conn: Connection, method: str, exc: ConnectError) -> bool:
    """A pooled connection that failed before any of the reply came, with a request safe to send again."""
    return conn.reused and conn.nothing_received() and (isinstance(exc, NotWritten) or method in _IDEMPOTENT)


def serialise(method: str, url: URL, headers: CIMultiDict, body: bytes | None, close: bool = False) -> bytes:
    """The request as sent: `Host` first, the headers in their order, then the body's length and the body;
    `Connection: close` without keep-alive (as Go's transport). A header name or value with CR, LF or NUL is
    refused (it would inject headers)."""
    target = url.raw_path_qs or "/"
    host = headers.get("host") or url.host_port_subcomponent or url.raw_host
    fields = headers.items()
    if "host" in headers or "content-length" in headers or "transfer-encoding" in headers or "connection" in headers:
        fields = [(name, value) for name, value in fields if name.lower() not in _NOT_SENT]
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *map(": ".join, fields)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    elif method in _EMPTY_LENGTH:
        lines.append("Content-Length: 0")
    if close:
        lines.append("Connection: close")
    lines.append("\r\n")
    head = "\r\n".join(lines)
    # Each line ends in the one CR LF put there: any other CR or LF came in a name or a value.
    if head.count("\n") != len(lines) or head.count("\r") != len(lines) or "\x00" in head:
        raise ClientError("ValueError: a header name or value holds CR, LF or NUL")
    data = head.encode("utf-8", "surrogateescape")
    return data + body if body else data
