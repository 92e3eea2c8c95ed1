"""A faulty Lambda Invoke API for what moto can't produce: `python -m tests.support.invoke_stub PORT`.

The function name picks the behaviour (see BEHAVIOURS); `/__calls/{name}` counts invocations and
`/__last/{name}` returns the last payload and headers received; `/__requests` every request received (the
last 2000: path, query, headers, payload), for tests that scan what reached "AWS".

`GET /creds` serves ECS-style container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI), a new key on every
call. Time is compressed: a key is announced to expire in 10 minutes + `valid` seconds (query, default 4), so
botocore wants it refreshed at once (its advisory window is 15 minutes), and the stub treats it as expired
`valid` seconds after issue, when botocore's mandatory window (10 minutes) would begin. Invoking a function
whose name starts with "creds" with an expired or unknown rotating key (access keys "ASIAROT...") gives 403
ExpiredTokenException; `/__keys` lists the access key of each such call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta

from aiohttp import web

calls: Counter[str] = Counter()
last: dict[str, dict] = {}
requests: deque[dict] = deque(maxlen=2000)
issued: dict[str, tuple[float, float, str]] = {}  # access key -> (issued at, valid seconds, token)
keys_used: list[str] = []


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response(
        {"Type": "User", "message": message},
        status=status,
        headers={"X-Amzn-ErrorType": code, "x-amzn-RequestId": "stub-req", **headers},
    )


def _ok(payload: bytes, **headers: str) -> web.Response:
    return web.Response(
        body=payload,
        status=200,
        content_type="application/json",
        headers={"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": "stub-req", **headers},
    )


async def invoke(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    payload = await request.read()
    calls[name] += 1
    last[name] = {
        "payload": payload.decode("utf-8", "replace"),
        "headers": dict(request.headers),
        "query": request.query_string,
    }
    requests.append({"path": request.raw_path, **last[name]})
    if request.headers.get("X-Amz-Invocation-Type") == "Event":
        return web.Response(status=202, headers={"x-amzn-RequestId": "stub-req"})
    if name.startswith("creds"):
        return _check_rotating_key(request)
    if name.startswith("echo"):
        return _ok(payload)
    if name == "unhandled":
        return _ok(
            json.dumps(
                {
                    "errorMessage": "boom secret-internal",
                    "errorType": "ValueError",
                    "stackTrace": ['  File "/var/task/app.py", line 3, in handler'],
                }
            ).encode(),
            **{"X-Amz-Function-Error": "Unhandled"},
        )
    if name == "sandbox-timeout":  # the function ran out of its own time: Lambda reports it as a function error
        return _ok(
            b'{"errorMessage": "Task timed out after 3.00 seconds", "errorType": "Sandbox.Timedout"}',
            **{"X-Amz-Function-Error": "Unhandled"},
        )
    if name == "handled":
        return _ok(
            b'{"errorMessage": "handled failure", "errorType": "MyError"}', **{"X-Amz-Function-Error": "Handled"}
        )
    if name == "throttle":
        return _error(429, "TooManyRequestsException", "Rate exceeded", **{"Retry-After": "3"})
    if name.startswith("flaky"):  # flaky-N: N throttles, then success
        if calls[name] <= int(name.split("-")[1]):
            return _error(429, "TooManyRequestsException", "Rate exceeded")
        return _ok(b'{"recovered": true}')
    if name == "service-500":
        return _error(500, "ServiceException", "internal")
    if name == "slow":
        await asyncio.sleep(3)
        return _ok(b'{"slow": true}')
    if name == "proxy":
        return _ok(
            json.dumps(
                {
                    "statusCode": 201,
                    "headers": {"X-Fn": "yes", "Content-Type": "application/json", "Keep-Alive": "timeout=99"},
                    "multiValueHeaders": {"X-Multi": ["a", "b"]},
                    "cookies": ["c=1", "d=2"],
                    "body": json.dumps({"hello": "proxy"}),
                }
            ).encode()
        )
    if name == "proxy-b64":
        return _ok(
            json.dumps(
                {
                    "statusCode": 200,
                    "headers": {"Content-Type": "application/octet-stream"},
                    "isBase64Encoded": True,
                    "body": base64.b64encode(b"\x00\x01binary").decode(),
                }
            ).encode()
        )
    if name == "proxy-404":
        return _ok(json.dumps({"statusCode": 404, "body": json.dumps({"missing": True})}).encode())
    if name == "too-large":
        return _error(413, "RequestEntityTooLargeException", "Request must be smaller than 6291456 bytes")
    if name == "invalid-content":
        return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
    if name == "denied":
        return _error(403, "InvalidSignatureException", "The request signature we calculated does not match")
    canned = {
        "notjson": b"this is not json",
        "array": b"[1, 2]",
        "null": b"null",
        "scalar": b"7",
        "empty": b"",
        "string": b'"text"',
        "object": b'{"a": 1, "b": {"c": 2}, "secret": "x"}',
    }
    if name in canned:
        return _ok(canned[name])
    return _error(
        404, "ResourceNotFoundException", f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:{name}"
    )


def _check_rotating_key(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    key = auth.partition("Credential=")[2].partition("/")[0]
    keys_used.append(key)
    if key not in issued:
        return _error(403, "UnrecognizedClientException", "The security token included in the request is invalid")
    at, valid, token = issued[key]
    if time.time() > at + valid:
        return _error(403, "ExpiredTokenException", "The security token included in the request is expired")
    if request.headers.get("X-Amz-Security-Token") != token:
        return _error(403, "InvalidSignatureException", "The security token does not match the key")
    return _ok(json.dumps({"key": key}).encode())


async def creds(request: web.Request) -> web.Response:
    valid = float(request.query.get("valid", "4"))
    n = len(issued) + 1
    key, token = f"ASIAROT{n:09d}", f"rotating-token-{n}"
    now = time.time()
    issued[key] = (now, valid, token)
    expires = datetime.fromtimestamp(now, UTC) + timedelta(seconds=600 + valid)
    return web.json_response(
        {
            "AccessKeyId": key,
            "SecretAccessKey": f"rotating-secret-{n}",
            "Token": token,
            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


async def keys(request: web.Request) -> web.Response:
    return web.json_response({"used": keys_used, "issued": len(issued)})


async def all_requests(request: web.Request) -> web.Response:
    return web.json_response(list(requests))


async def count(request: web.Request) -> web.Response:
    return web.json_response({"calls": calls[request.match_info["name"]]})


async def last_call(request: web.Request) -> web.Response:
    return web.json_response(last.get(request.match_info["name"], {}))


def make_app() -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke)
    app.router.add_get("/__calls/{name}", count)
    app.router.add_get("/__last/{name}", last_call)
    app.router.add_get("/__requests", all_requests)
    app.router.add_get("/__keys", keys)
    app.router.add_get("/creds", creds)
    app.router.add_get("/__health", lambda r: web.json_response({"ok": True}))
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
