"""Read an API-Gateway-style Lambda reply ({statusCode, headers, multiValueHeaders, cookies, body})."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from lambdagate.pipeline.render import CONTROL_CHARS

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field name


class MalformedReply(ValueError):
    pass


@dataclass(slots=True)
class ProxyReply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def is_proxy_shaped(value: Any) -> bool:
    return isinstance(value, dict) and "statusCode" in value


def unwrap(value: dict[str, Any]) -> ProxyReply:
    """The HTTP reply a proxy-shaped payload describes; MalformedReply if it is not well formed."""
    status = value.get("statusCode", 200)
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    # 1xx are interim responses, never a final one: the server refuses to send them as a reply.
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise MalformedReply(f"statusCode must be an integer 200-599, got {status!r}")
    merged: dict[str, list[str]] = {}
    single = value.get("headers") or {}
    multi = value.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise MalformedReply("headers and multiValueHeaders must be objects")
    for name, item in single.items():
        merged[_header_name(name)] = [_header_value(item)]
    for name, items in multi.items():  # multiValueHeaders wins over headers for the same name (API Gateway v1)
        if items is None:
            continue
        if not isinstance(items, list):
            raise MalformedReply(f"multiValueHeaders.{name} must be a list")
        merged[_header_name(name)] = [_header_value(i) for i in items]
    # Hop-by-hop headers are dropped where every pass-through reply is rendered (pipeline.render.HOP_BY_HOP).
    headers = [(name, v) for name, values in merged.items() for v in values]
    cookies = value.get("cookies") or []
    if not isinstance(cookies, list):
        raise MalformedReply("cookies must be a list of strings")
    headers.extend(("set-cookie", _header_value(c)) for c in cookies)
    body = value.get("body")
    if body is None:
        raw = b""
    elif isinstance(body, str):
        if value.get("isBase64Encoded"):
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedReply("body is not valid base64 although isBase64Encoded is true") from None
        else:
            raw = body.encode("utf-8")
    else:
        raise MalformedReply("body must be a string")
    if not any(name == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    return ProxyReply(status, headers, raw)


def _header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise MalformedReply(f"invalid header name {name[:40]!r}")
    return name.lower()


def _header_value(item: Any) -> str:
    text = item if isinstance(item, str) else str(item).lower() if isinstance(item, bool) else str(item)
    if "\r" in text or "\n" in text:
        raise MalformedReply("a header value contains a line break")
    if CONTROL_CHARS.search(text):
        raise MalformedReply("a header value contains a control character")
    return text
