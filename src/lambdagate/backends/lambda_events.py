"""Lambda payloads built from a gateway request: KrakenD's format and API Gateway's v1.0 / v2.0 events.

Only what the endpoint allows reaches the function: headers and query strings are the filtered ones, and the
forwarding headers (X-Forwarded-For, -Proto, -Host) are the gateway's own (backends.forwarded).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlencode

import orjson

from lambdagate.auth.tokens import claim_text, go_text
from lambdagate.backends.forwarded import CLIENT_FORWARDING, without
from lambdagate.proxy import ProxyRequest

PayloadBuilder = Callable[[ProxyRequest], bytes]


def krakend_payload(method: str) -> PayloadBuilder:
    """KrakenD: GET sends the URL params (keys lower-cased, sorted, trailing newline); others the raw body."""
    if method != "GET":
        return lambda req: req.body

    def from_params(req: ProxyRequest) -> bytes:
        return orjson.dumps({k.lower(): v for k, v in req.params.items()}, option=orjson.OPT_SORT_KEYS) + b"\n"

    return from_params


def _body(req: ProxyRequest) -> tuple[str | None, bool]:
    if not req.body:
        return None, False
    try:
        return req.body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(req.body).decode("ascii"), True


def _event_headers(req: ProxyRequest) -> dict[str, str]:
    """The allowed request headers, the gateway's forwarding headers as API Gateway sets them (a client's are
    dropped: a handler trusting X-Forwarded-For must get the real client), and the trace context (traceparent,
    X-Amzn-Trace-Id) when tracing is on."""
    headers = without(req.headers, CLIENT_FORWARDING)
    headers["x-forwarded-for"] = req.client_ip
    headers["x-forwarded-proto"] = req.scheme
    if req.host:
        headers["host"] = headers["x-forwarded-host"] = req.host
    if req.trace_headers:
        headers.update(req.trace_headers)
    return headers


def jwt_authorizer(claims: dict[str, Any], version: str) -> dict[str, Any]:
    """A validated token's claims (auth/validator) where API Gateway's JWT authorizer puts them, so a handler
    written for it works unchanged: `authorizer.jwt.claims` and `.scopes` in 2.0 events, `authorizer.claims` in
    1.0. API Gateway passes every claim as a string: numbers as digits, lists as "[a b]", objects as JSON."""
    flat = {
        name: "[" + " ".join(go_text(v) for v in value) + "]" if isinstance(value, list) else claim_text(value)
        for name, value in claims.items()
    }
    if version == "1.0":
        return {"claims": flat}
    scope = claims.get("scope", claims.get("scp"))
    if isinstance(scope, str):
        scopes: list[str] | None = scope.split()
    else:
        scopes = [s for s in scope if isinstance(s, str)] if isinstance(scope, list) else None
    return {"jwt": {"claims": flat, "scopes": scopes}}


def _clf_time(now: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


def apigateway_v1_payload(resource: str, stage: str = "$default") -> PayloadBuilder:
    def build(req: ProxyRequest) -> bytes:
        now = time.time()
        body, is_b64 = _body(req)
        query: dict[str, list[str]] = {}
        for key, value in req.query:
            query.setdefault(key, []).append(value)
        path = unquote(req.path)
        headers = _event_headers(req)
        event: dict[str, Any] = {
            "version": "1.0",
            "resource": resource,
            "path": path,
            "httpMethod": req.method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": dict(req.params) or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "lambdagate",
                "domainName": req.host,
                "httpMethod": req.method,
                "identity": {"sourceIp": req.client_ip, "userAgent": headers.get("user-agent")},
                "path": path,
                "protocol": "HTTP/1.1",
                "requestId": req.request_id,
                "requestTime": _clf_time(now),
                "requestTimeEpoch": int(now * 1000),
                "resourcePath": resource,
                "stage": stage,
            },
            "body": body,
            "isBase64Encoded": is_b64,
        }
        if req.claims is not None:
            event["requestContext"]["authorizer"] = jwt_authorizer(req.claims, "1.0")
        return orjson.dumps(event)

    return build


def apigateway_v2_payload(method: str, resource: str, stage: str = "$default") -> PayloadBuilder:
    route_key = f"{method} {resource}"

    def build(req: ProxyRequest) -> bytes:
        now = time.time()
        body, is_b64 = _body(req)
        headers = _event_headers(req)
        cookie_header = headers.pop("cookie", None)
        query: dict[str, str] = {}
        for key, value in req.query:
            query[key] = f"{query[key]},{value}" if key in query else value
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": req.path,
            "rawQueryString": urlencode(req.query),
            "headers": headers,
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "lambdagate",
                "domainName": req.host,
                "domainPrefix": req.host.split(".", 1)[0],
                "http": {
                    "method": req.method,
                    "path": req.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": req.client_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": req.request_id,
                "routeKey": route_key,
                "stage": stage,
                "time": _clf_time(now),
                "timeEpoch": int(now * 1000),
            },
            "isBase64Encoded": is_b64,
        }
        if cookie_header:
            event["cookies"] = [c.strip() for c in cookie_header.split(";") if c.strip()]
        if query:
            event["queryStringParameters"] = query
        if req.params:
            event["pathParameters"] = dict(req.params)
        if body is not None:
            event["body"] = body
        if req.claims is not None:
            event["requestContext"]["authorizer"] = jwt_authorizer(req.claims, "2.0")
        return orjson.dumps(event)

    return build
