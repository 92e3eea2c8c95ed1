"""The HTTP call a `modifier/lua-backend` script sees and may change, as krakend-lua's request at backend level
(below lura's load balancer, where the request's URL is already built):

- `r:method()`: the backend's method (its config's, else the endpoint's); a new one is the call's method.
- `r:path()`: the url_pattern filled in; a new path is called on the same host.
- `r:url()`: the whole URL (host, path, url_pattern's query, the client's allowed query); a new URL is called
  instead, on any host (as KrakenD: the script is the operator's, like `http_response.new`), http or https only.

KrakenD ignores a path or query set at this level (the URL is built already); here they change the call too.
The parts are worked out only when a script asks for one of them, so a script that does not pays nothing and the
host rotation moves once per call either way.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from yarl import URL

from lambdagate.backends.reply_headers import TOKEN

# Never in a URL a script gives: spaces and control characters (a request line must not be split or smuggled).
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# What a script's path keeps as it is: "/", RFC 3986 pchar and existing percent escapes; "?" and "#" are encoded
# (a path cannot add a query).
_PATH_SAFE = "/!$&'()*+,;=:@~%"
MAX_URL = 8192


class BackendCall:
    """The method and URL parts of one backend call; `url(query)` puts them together."""

    __slots__ = ("method", "base", "path", "fixed_query")

    def __init__(self, method: str, base: str, path: str, fixed_query: str) -> None:
        self.method, self.base, self.path, self.fixed_query = method, base, path, fixed_query

    def url(self, query: list[tuple[str, str]]) -> str:
        extra = urlencode(query) if query else ""
        full = f"{self.fixed_query}&{extra}" if self.fixed_query and extra else self.fixed_query or extra
        return f"{self.base}{self.path}?{full}" if full else f"{self.base}{self.path}"

    def set_method(self, value: str) -> None:
        self.method = checked_method(value)

    def set_path(self, value: str) -> None:
        _check(value, "request:path()")
        path = value if value.startswith("/") else "/" + value
        self.path = _LONE_PERCENT.sub("%25", quote(path, safe=_PATH_SAFE))

    def set_url(self, value: str) -> None:
        """A script's URL replaces the whole call: host, path and query (the client's query is dropped too)."""
        _check(value, "request:url()")
        try:
            url = URL(value)
        except ValueError as exc:
            raise ValueError(f"request:url(): invalid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise ValueError("request:url(): only an absolute http or https URL")
        self.base = f"{url.scheme}://{url.raw_authority}"
        self.path, self.fixed_query = url.raw_path or "/", url.raw_query_string


def checked_method(value: str) -> str:
    method = value.upper()
    if not TOKEN.fullmatch(method) or len(method) > 32:
        raise ValueError(f"method(): invalid method {value[:32]!r}")
    return method


def _check(value: str, what: str) -> None:
    if len(value) > MAX_URL:
        raise ValueError(f"{what}: longer than {MAX_URL} characters")
    if _UNSAFE.search(value):
        raise ValueError(f"{what}: spaces and control characters are not allowed")
