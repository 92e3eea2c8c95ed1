"""Checks shared by the security namespaces' config parsers: what may go into a response header."""

from __future__ import annotations

from collections.abc import Iterable

from lambdagate.backends.reply_headers import TOKEN  # an HTTP header name (RFC 9110 token)
from lambdagate.pipeline.render import CONTROL_CHARS as CONTROL  # no header value may hold these (HTAB is allowed)


def header_name_issues(field: str, names: Iterable[str]) -> list[tuple[str, str]]:
    return [
        (f"{field}[{i}]", f"{name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
        for i, name in enumerate(names)
        if not TOKEN.fullmatch(name)
    ]


def value_issue(field: str, value: str) -> list[tuple[str, str]]:
    if CONTROL.search(value) or not value.isascii():
        return [(field, f"{value[:60]!r} cannot be a header value: use printable ASCII only")]
    return []


def canonical_header(name: str) -> str:
    """Go's http.CanonicalHeaderKey: `x-request-id` → `X-Request-Id` (KrakenD writes names this way)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
