"""One backend call with its redirects followed as Go's HTTP client (and so KrakenD) follows them.

- at most 10 redirects: the tenth redirect reply fails the call ("stopped after 10 redirects");
- 301/302/303: the next request is a GET (a HEAD stays a HEAD) without a body;
- 307/308: the method and body are kept; with a body, only when `send_body_on_redirect` is set (KrakenD CE),
  otherwise the 307/308 itself is the backend's reply, as Go returns it when it cannot replay the body;
- every hop carries the first request's headers, with `Referer` set to the previous URL (not from https to
  http); `Authorization`, `WWW-Authenticate`, `Cookie` and `Cookie2` only while the host (and port) stays the
  same or becomes a subdomain of the previous one;
- a 3xx without `Location`, and any 3xx with `backend/http/client` `no_redirect`, is the backend's reply.
aiohttp's own redirect handling is off (it differs on each of these points).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

MAX_REDIRECTS = 10
_SENSITIVE = ("authorization", "www-authenticate", "cookie", "cookie2")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What aiohttp would add on its own and KrakenD never sends (the gateway sets Accept-Encoding itself).
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type")
ReadBody = Callable[[aiohttp.ClientResponse], Awaitable[bytes]]


@dataclass(frozen=True)
class CallPolicy:
    """How one backend's calls are made: redirects, the TLS context, the wait for a reply's head."""

    follow_redirects: bool = True
    send_body_on_redirect: bool = False
    ssl: Any = True  # an ssl.SSLContext for a backend's own client_tls; True: the session's
    header_timeout: float | None = None  # response_header_timeout (from the start of each request)


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: CIMultiDict,
    body: bytes | None,
    policy: CallPolicy,
    read: ReadBody,
) -> tuple[int, CIMultiDictProxy, bytes]:
    """(status, headers, body) of the final reply. aiohttp.ClientError for transport failures and redirect loops."""
    first_headers, hops = headers, 0
    while True:
        resp = await _send(session, method, url, headers, body, policy)
        async with resp:
            step = _next_hop(resp, method, body, policy)
            if step is None:
                return resp.status, resp.headers, await read(resp)
        hops += 1
        if hops >= MAX_REDIRECTS:
            raise aiohttp.ClientError(f"stopped after {MAX_REDIRECTS} redirects")
        next_url, method, keep_body = step
        headers = _hop_headers(first_headers, url, next_url)
        body = body if keep_body else None
        url = next_url


async def _send(
    session: aiohttp.ClientSession, method: str, url: URL, headers: CIMultiDict, body: bytes | None, policy: CallPolicy
) -> aiohttp.ClientResponse:
    request = session.request(
        method,
        url,
        headers=headers,
        data=body,
        allow_redirects=False,
        skip_auto_headers=SKIP_AUTO_HEADERS,
        ssl=policy.ssl,
    )
    if policy.header_timeout is None:
        return await request
    try:
        async with asyncio.timeout(policy.header_timeout):
            return await request
    except TimeoutError:
        raise aiohttp.ServerTimeoutError(f"no reply head within {policy.header_timeout:g}s") from None


def _next_hop(
    resp: aiohttp.ClientResponse, method: str, body: bytes | None, policy: CallPolicy
) -> tuple[URL, str, bool] | None:
    """(URL, method, keep the body) of the request a redirect asks for, or None when this reply is final."""
    status = resp.status
    if status not in (301, 302, 303, 307, 308) or not policy.follow_redirects:
        return None
    location = resp.headers.get("Location")
    if not location:
        return None
    if status in (307, 308):
        if body and not policy.send_body_on_redirect:
            return None
        next_method, keep_body = method, True
    else:
        next_method, keep_body = (method if method in ("GET", "HEAD") else "GET"), False
    try:
        target = resp.url.join(URL(location))
    except ValueError:
        raise aiohttp.ClientError(f"failed to parse Location header {location[:200]!r}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise aiohttp.ClientError(f"redirect to an unsupported URL {str(target.with_query(None))[:200]!r}")
    return target.with_fragment(None), next_method, keep_body


def _hop_headers(first: CIMultiDict, previous: URL, target: URL) -> CIMultiDict:
    headers = CIMultiDict(first)
    if not _same_or_subdomain(target, previous):
        for name in _SENSITIVE:
            headers.popall(name, None)
    if not (previous.scheme == "https" and target.scheme == "http"):
        headers["Referer"] = str(previous.with_user(None).with_fragment(None))
    else:
        headers.popall("Referer", None)
    return headers


def _address(url: URL) -> str:
    return f"{(url.host or '').lower().rstrip('.')}:{url.port or _DEFAULT_PORTS.get(url.scheme, 0)}"


def _same_or_subdomain(target: URL, previous: URL) -> bool:
    sub, parent = _address(target), _address(previous)
    return sub == parent or (sub.endswith(parent) and sub[-len(parent) - 1] == ".")
