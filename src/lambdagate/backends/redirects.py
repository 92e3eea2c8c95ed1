"""One backend call with its redirects followed as Go's HTTP client (and so KrakenD) follows them.

- at most 10 redirects: the tenth redirect reply fails the call ("stopped after 10 redirects");
- 301/302/303: the next request is a GET (a HEAD stays a HEAD) without a body;
- 307/308: the method and body are kept; with a body, only when `send_body_on_redirect` is set (KrakenD CE),
  otherwise the 307/308 itself is the backend's reply, as Go returns it when it cannot replay the body;
- every hop carries the first request's headers, with `Referer` set to the previous URL (not from https to
  http); `Authorization`, `WWW-Authenticate`, `Cookie` and `Cookie2` only while the host (and port) stays the
  same or becomes a subdomain of the previous one;
- a 3xx without `Location`, and any 3xx with `backend/http/client` `no_redirect`, is the backend's reply.
The client's own redirect handling is off (aiohttp's differs on each of these points): the calls go through the
client seam (lambdagate.client), whichever client serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict
from yarl import URL

from lambdagate.client.aiohttp_client import SKIP_AUTO_HEADERS  # noqa: F401  (kept importable from here)
from lambdagate.client.base import ClientError, HttpClient, Reply

MAX_REDIRECTS = 10
_SENSITIVE = ("authorization", "www-authenticate", "cookie", "cookie2")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class CallPolicy:
    """How one backend's calls are made: redirects, the TLS context, the wait for a reply's head."""

    follow_redirects: bool = True
    send_body_on_redirect: bool = False
    ssl: Any = True  # an ssl.SSLContext for a backend's own client_tls; True: the session's
    header_timeout: float | None = None  # response_header_timeout (from the start of each request)
    max_redirects: int = MAX_REDIRECTS  # the Nth redirect reply fails the call, as Go's tenth does
    https_only: bool = False  # a redirect from https to another scheme fails the call (the key set fetches)


async def call(
    client: HttpClient,
    method: str,
    url: URL,
    headers: CIMultiDict,
    body: bytes | None,
    policy: CallPolicy,
    limit: int,
) -> Reply:
    """The final reply. client.base.ClientError for transport failures and redirect loops (TooLarge past `limit`)."""
    first_headers, hops = headers, 0
    reply = await client.request(
        method, url, headers, body, limit=limit, ssl=policy.ssl, header_timeout=policy.header_timeout
    )
    while (step := _next_hop(reply, url, method, body, policy)) is not None:
        hops += 1
        if hops >= policy.max_redirects:
            raise ClientError(f"stopped after {policy.max_redirects} redirects")
        next_url, method, keep_body = step
        headers = _hop_headers(first_headers, url, next_url)
        body = body if keep_body else None
        url = next_url
        reply = await client.request(
            method, url, headers, body, limit=limit, ssl=policy.ssl, header_timeout=policy.header_timeout
        )
    return reply


def _next_hop(
    resp: Reply, url: URL, method: str, body: bytes | None, policy: CallPolicy
) -> tuple[URL, str, bool] | None:
    """(URL, method, keep the body) of the request a redirect asks for, or None when this reply is final."""
    status = resp.status
    if status not in _REDIRECTS or not policy.follow_redirects:
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
        target = url.join(URL(location))
    except ValueError:
        raise ClientError(f"failed to parse Location header {location[:200]!r}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise ClientError(f"redirect to an unsupported URL {str(target.with_query(None))[:200]!r}")
    if policy.https_only and url.scheme == "https" and target.scheme != "https":
        raise ClientError(f"redirected to plain HTTP ({str(target.with_query(None))[:200]})")
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
