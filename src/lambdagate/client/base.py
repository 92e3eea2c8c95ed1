"""The client seam: what every upstream HTTP call of the gateway needs from an HTTP client, and its errors.

One request is (method, URL, headers, body, response-size cap, TLS context, reply-head timeout); its result is the
final reply's status, headers and body (redirects are the caller's: backends.redirects). The deadline is the
caller's too (`asyncio.timeout`/`deadline_at` around the call): a cancelled call closes its connection instead of
returning it to the pool. Implementations: `client.aiohttp_client` (aiohttp) and `client.fast` (asyncio Protocols
with httptools); `client.new_client` picks one.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

# KrakenD's backends ask for gzip only; what a client decodes by itself.
DECODED_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})


class ClientError(Exception):
    """An upstream call failed without a usable reply."""


class ConnectError(ClientError):
    """No reply at all: the connection could not be made, or was lost before any of the reply arrived."""


class ConnectTimeout(ConnectError):
    """The connection was not made within the dial timeout."""


class TLSFailure(ClientError):
    """The TLS handshake or certificate check failed (retrying will not fix it)."""


class HeadTimeout(ClientError):
    """The reply's head did not arrive within the call's header timeout (the upstream may still be working)."""


class PayloadError(ClientError):
    """The reply's head arrived, then its body broke off or could not be decoded."""


class MalformedResponse(ClientError):
    """The upstream's reply is not valid HTTP/1.1 (bad status line, oversized or injected headers)."""


class TooLarge(ClientError):
    """The reply's body (decoded) is larger than the call's cap. Carries the reply's status and headers."""

    def __init__(self, message: str, status: int = 0, headers: CIMultiDictProxy | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers if headers is not None else CIMultiDictProxy(CIMultiDict())


@dataclass(slots=True)
class Reply:
    """The final reply of one call: its body already decoded (gzip) when the client `decompresses`."""

    status: int
    headers: CIMultiDictProxy
    body: bytes


class HttpClient(Protocol):
    """One worker's pooled HTTP/1.1 client. `decompresses`: gzip replies come back decoded (their
    Content-Encoding header still there, as received)."""

    decompresses: bool

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
    ) -> Reply: ...

    async def close(self) -> None: ...


def too_large(limit: int, status: int = 0, headers: CIMultiDictProxy | None = None, size: int | None = None):
    cause = f"reply of {size} bytes exceeds {limit}" if size is not None else f"reply exceeds {limit} bytes"
    return TooLarge(cause, status, headers)
