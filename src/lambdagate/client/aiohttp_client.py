"""The client seam on aiohttp: a worker's `aiohttp.ClientSession` behind `client.base.HttpClient`.

aiohttp's own additions are off (no `Accept`, `Accept-Encoding` or invented `Content-Type`: KrakenD sends none),
so are its redirects (backends.redirects follows them as Go does); its errors become the seam's. Its decoding of
compressed replies is off too: a session that decompresses has gzip and deflate bodies decoded by client.inflate,
as the fast client does (aiohttp serves a gzip body that stops early as if whole).
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from lambdagate.client.base import (
    ClientError,
    ConnectError,
    ConnectTimeout,
    HeadTimeout,
    MalformedResponse,
    PayloadError,
    Reply,
    TLSFailure,
    too_large,
)
from lambdagate.client.inflate import Inflater

# What aiohttp would add on its own and KrakenD never sends (callers set Accept-Encoding themselves).
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type")


def seam_error(exc: aiohttp.ClientError) -> ClientError:
    """aiohttp's exception as the seam's, with the same text (and the TLS error's own, which aiohttp's text of a
    failed handshake leaves out as "[None]")."""
    text = f"{type(exc).__name__}: {exc}"
    if type(exc) is aiohttp.ClientConnectorSSLError and exc.strerror is None:
        text = f"{type(exc).__name__}: Cannot connect to host {exc.host}:{exc.port} [{exc.os_error}]"
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch)):
        return TLSFailure(text)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(text)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return HeadTimeout(text)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return PayloadError(text)
    if isinstance(exc, aiohttp.ClientResponseError):
        return MalformedResponse(text)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return ConnectError(text)
    return ClientError(text)


async def read_capped(resp: aiohttp.ClientResponse, limit: int, decode: bool = False) -> bytes:
    """The body, TooLarge as soon as it passes `limit`; with `decode`, a gzip or deflate body decoded as it is
    read (client.inflate), its decoded size counted as well."""
    length = resp.content_length
    if length is not None and length > limit:
        raise too_large(limit, resp.status, resp.headers, length)
    encoding = resp.headers.get("Content-Encoding") if decode else None
    inflater = None if encoding is None else Inflater.for_encoding(encoding, limit, resp.status, resp.headers)
    if length is not None and inflater is None:
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise too_large(limit, resp.status, resp.headers)
            if inflater is None:
                chunks.append(chunk)
            else:
                inflater.feed(chunk, chunks)
        return b"".join(chunks) if inflater is None else inflater.finish(chunks)
    except ClientError:
        chunks.clear()  # let go now: the exception's traceback holds this frame
        raise


class AiohttpClient:
    """`HttpClient` on an aiohttp session (the session is the caller's: `close` leaves it open)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.decompresses = session.auto_decompress  # done here (read_capped), not by aiohttp

    async def request(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict,
        body: bytes | None,
        *,
        limit: int,
        ssl: ssl.SSLContext | bool = True,
        header_timeout: float | None = None,
    ) -> Reply:
        try:
            resp = await self._send(method, url, headers, body, ssl, header_timeout)
            async with resp:
                return Reply(resp.status, resp.headers, await read_capped(resp, limit, self.decompresses))
        except aiohttp.ClientError as exc:
            raise seam_error(exc) from None
        except ValueError as exc:  # yarl/aiohttp refusing a URL or header value
            raise ClientError(f"{type(exc).__name__}: {exc}") from None

    async def _send(self, method, url, headers, body, ssl, header_timeout) -> aiohttp.ClientResponse:
        request = self.session.request(
            method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=SKIP_AUTO_HEADERS,
            ssl=ssl,
            auto_decompress=False,
        )
        if header_timeout is None:
            return await request
        try:
            async with asyncio.timeout(header_timeout):
                return await request
        except TimeoutError:
            raise HeadTimeout(f"no reply head within {header_timeout:g}s") from None

    async def close(self) -> None:
        """The session is closed by its owner (backends.Resources)."""
