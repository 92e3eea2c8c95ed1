"""The gateway's upstream HTTP client seam (client.base) and its two implementations: `fast` (asyncio Protocols
with httptools, the default) and `aiohttp`. `backends.client_options.new_backend_client` builds a worker's."""

from lambdagate.client.base import (
    ClientError,
    ConnectError,
    ConnectTimeout,
    HeadTimeout,
    HttpClient,
    MalformedResponse,
    PayloadError,
    Reply,
    TLSFailure,
    TooLarge,
)

__all__ = [
    "ClientError",
    "ConnectError",
    "ConnectTimeout",
    "HeadTimeout",
    "HttpClient",
    "MalformedResponse",
    "PayloadError",
    "Reply",
    "TLSFailure",
    "TooLarge",
]
