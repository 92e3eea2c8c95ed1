"""A function's reply as backend data or as a pass-through HTTP reply, per the backend's `response_format`.

`data`: the reply is the backend's data (KrakenD's Lambda backend). `proxy`: the reply is API Gateway's
proxy shape ({statusCode, headers, multiValueHeaders, cookies, body}); an endpoint's only backend passes it
through, a backend in a merge contributes its JSON body. `auto`: proxy when the reply has a statusCode.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from lambdagate.backends.reply_data import TooDeep, is_blank, load_json, shape_data
from lambdagate.backends.reply_headers import (
    DEFAULT_LIMITS,
    HeaderLimits,
    MalformedReply,
    bounded,
    check_name,
    check_value,
)
from lambdagate.errors import BackendError
from lambdagate.proxy import ProxyResponse

__all__ = ["MalformedReply", "FunctionHttpResponse", "ReplyDecoder", "data_response", "is_proxy_shaped", "unwrap"]


@dataclass(slots=True)
class FunctionHttpResponse:
    """The HTTP reply a function's proxy-shaped payload describes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def is_proxy_shaped(value: Any) -> bool:
    return isinstance(value, dict) and "statusCode" in value


def unwrap(value: dict[str, Any], limits: HeaderLimits = DEFAULT_LIMITS) -> FunctionHttpResponse:
    """The HTTP reply a proxy-shaped payload describes; MalformedReply if it is not well formed."""
    status = value.get("statusCode", 200)
    # ASCII digits only: str.isdigit() is also true for "²" (int() raises) and "２００" (int() reads 200).
    if isinstance(status, str) and status.isascii() and status.isdigit():
        status = int(status)
    # 1xx are interim responses, never a final one: the server refuses to send them as a reply.
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise MalformedReply(f"statusCode must be an integer 200-599, got {status!r}")
    headers = _headers(value, limits)
    if not any(name == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    return FunctionHttpResponse(status, headers, _body(value))


def _headers(value: dict[str, Any], limits: HeaderLimits) -> list[tuple[str, str]]:
    single = value.get("headers") or {}
    multi = value.get("multiValueHeaders") or {}
    cookies = value.get("cookies") or []
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise MalformedReply("headers and multiValueHeaders must be objects")
    if not isinstance(cookies, list):
        raise MalformedReply("cookies must be a list of strings")
    # Each of these alone past the count is too many: refused before any work per header.
    if max(len(single), len(multi), len(cookies)) > limits.count:
        raise MalformedReply(f"more than {limits.count} headers")
    merged: dict[str, list[str]] = {}
    for name, item in single.items():
        merged[_header_name(name)] = [_header_value(name, item)]
    for name, items in multi.items():  # multiValueHeaders wins over headers for the same name (API Gateway v1)
        if items is None:
            continue
        if not isinstance(items, list):
            raise MalformedReply(f"multiValueHeaders.{name[:40]} must be a list")
        if len(items) > limits.count:
            raise MalformedReply(f"more than {limits.count} headers")
        merged[_header_name(name)] = [_header_value(name, i) for i in items]
    # Hop-by-hop headers and the gateway's own are dropped here, before counting (reply_headers.NOT_PASSED).
    headers = [(name, v) for name, values in merged.items() for v in values]
    headers.extend(("set-cookie", _header_value("set-cookie", c)) for c in cookies)
    return bounded(headers, limits)


def _body(value: dict[str, Any]) -> bytes:
    body = value.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedReply("body must be a string")
    encoded = value.get("isBase64Encoded")
    if encoded is not None and not isinstance(encoded, bool):  # "false" is a string, and truthy
        raise MalformedReply(f"isBase64Encoded must be true or false, got {encoded!r:.40}")
    if not encoded:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedReply("body is not valid base64 although isBase64Encoded is true") from None


def _header_name(name: str) -> str:
    return check_name(name).lower()


def _header_value(name: str, item: Any) -> str:
    """A string as it is; a number or a boolean as its JSON text (API Gateway takes both: true → "true", 1.5 →
    "1.5"); null, an object or a list is no header value (never Python's "None" or "{'a': 'b'}")."""
    if isinstance(item, str):
        text = item
    elif isinstance(item, (bool, int, float)):
        text = orjson.dumps(item).decode()
    else:
        raise MalformedReply(f"header {name[:40]} is {_json_type(item)}, not a string, number or boolean")
    return check_value(name, text)


def _json_type(item: Any) -> str:
    return "null" if item is None else "an object" if isinstance(item, dict) else "a list"


def data_response(value: Any) -> ProxyResponse:
    """Data mode: the reply shaped as any backend's (reply_data.shape_data), complete when it holds data. Unlike
    an HTTP backend's, a function's null is no data at all (KrakenD's Lambda backend): empty and incomplete."""
    return ProxyResponse.from_function({} if value is None else shape_data(value))


def _malformed(name: str, reason: Exception | str) -> BackendError:
    return BackendError("the function reply is malformed", cause=f"function={name}: {reason}")


class ReplyDecoder:
    """Built once per backend: turns a function's reply payload into the backend's response."""

    __slots__ = ("_format", "_infer_proxy", "_single", "_limits")

    def __init__(
        self, response_format: str, payload_format: str, single: bool, limits: HeaderLimits = DEFAULT_LIMITS
    ) -> None:
        self._format = response_format
        # API Gateway v2 infers a 200 JSON reply from a function that returns plain JSON.
        self._infer_proxy = payload_format == "apigateway_v2"
        self._single = single  # the endpoint's only backend: a proxy reply passes through
        self._limits = limits

    def decode(self, payload: bytes, name: str) -> ProxyResponse:
        if is_blank(payload):
            return ProxyResponse.from_function({})
        try:
            value = load_json(payload)
        except orjson.JSONDecodeError:
            raise BackendError(
                "the function reply is not valid JSON", cause=f"function={name}: reply is not JSON"
            ) from None
        except TooDeep as exc:
            raise _malformed(name, exc) from None
        if self._format == "proxy" or (self._format == "auto" and is_proxy_shaped(value)):
            return self._proxy(value, name)
        return data_response(value)

    def _proxy(self, value: Any, name: str) -> ProxyResponse:
        if not is_proxy_shaped(value):
            if not self._infer_proxy:
                raise _malformed(name, "no statusCode in a proxy reply")
            value = {"statusCode": 200, "body": orjson.dumps(value).decode()}
        try:
            reply = unwrap(value, self._limits)
        except MalformedReply as exc:
            raise _malformed(name, exc) from None
        if self._single:
            return ProxyResponse.passthrough(reply.status, reply.headers, reply.body, complete=reply.status < 400)
        return _merged_proxy(reply, name)


def _merged_proxy(reply: FunctionHttpResponse, name: str) -> ProxyResponse:
    """A proxy reply in a merge: its JSON object body is the backend's data; headers and status go nowhere."""
    if reply.status >= 400:
        raise BackendError("the backend failed", cause=f"function={name}: statusCode {reply.status}")
    try:
        data = {} if is_blank(reply.body) else load_json(reply.body)
    except orjson.JSONDecodeError:
        data = None
    except TooDeep as exc:
        raise _malformed(name, exc) from None
    if not isinstance(data, dict):
        raise BackendError(
            "the function reply is not a JSON object", cause=f"function={name}: proxy body is not a JSON object"
        )
    return ProxyResponse.from_function(data)
