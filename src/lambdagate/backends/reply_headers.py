"""Headers a backend's pass-through reply may hand to the client: bounded, sendable, never the gateway's own.

Pass-through replies (a function's proxy reply, an HTTP backend with `no-op`) give their headers to the
client. The ASGI server (granian) cannot send every header: a name that is not an RFC 9110 token or a value
with a control character (but HTAB) makes it answer its own plain 500, and about 24,600 distinct names make
a worker panic (the `http` crate's header map is full), which stops the whole server. So such a reply is
malformed, as is one with more headers than the gateway accepts from its own clients: the backend failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lambdagate.pipeline.render import CONTROL_CHARS, HOP_BY_HOP

REPLY_MAX_HEADERS = 100  # header lines, as the request side's max_header_count
REPLY_MAX_HEADER_BYTES = 64 * 1024  # names and values together (UTF-8), as the request side's max_header_bytes
# Set by the gateway on every reply: a backend's own would be a second, contradicting one.
GATEWAY_OWNED = frozenset({"x-request-id", "x-krakend-completed"})
# Never passed on (the gateway's own, framing and hop-by-hop headers), so never counted either.
NOT_PASSED = GATEWAY_OWNED | HOP_BY_HOP
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field name


class MalformedReply(ValueError):
    """A reply the gateway cannot pass on; the message says why (for the log, never the client)."""


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    count: int = REPLY_MAX_HEADERS
    bytes: int = REPLY_MAX_HEADER_BYTES


DEFAULT_LIMITS = HeaderLimits()


def check_name(name: str) -> str:
    if not TOKEN.fullmatch(name):
        raise MalformedReply(f"invalid header name {name[:40]!r}")
    return name


def check_value(name: str, value: str) -> str:
    if CONTROL_CHARS.search(value):
        what = "a line break" if "\r" in value or "\n" in value else "a control character"
        raise MalformedReply(f"header {name[:40]} holds {what}")
    return value


def bounded(
    headers: list[tuple[str, str]], limits: HeaderLimits, drop: frozenset[str] = NOT_PASSED
) -> list[tuple[str, str]]:
    """`headers` without those named in `drop` (lower-case names); MalformedReply when the rest is past `limits`."""
    kept = [(k, v) for k, v in headers if k.lower() not in drop]
    if len(kept) > limits.count:
        raise MalformedReply(f"{len(kept)} headers, more than {limits.count}")
    size = 0
    for name, value in kept:
        size += len(name) + (len(value) if value.isascii() else len(value.encode("utf-8", "surrogateescape")))
    if size > limits.bytes:
        raise MalformedReply(f"headers of {size} bytes, more than {limits.bytes}")
    return kept


def checked(
    headers: list[tuple[str, str]], limits: HeaderLimits, drop: frozenset[str] = NOT_PASSED
) -> list[tuple[str, str]]:
    """Headers received from an HTTP backend: `bounded`, then each name and value checked."""
    kept = bounded(headers, limits, drop)
    for name, value in kept:
        check_value(check_name(name), value)
    return kept
