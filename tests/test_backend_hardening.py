"""Hostile backends and functions against a real gateway (issue 16's findings on the backend side).

A function or an upstream controls its reply: headers the server can't send (too many, too large), JSON
nested deeper than the encoder goes, the gateway's own X-Request-Id/X-KrakenD-Completed. A client controls
its request headers: forwarding headers a backend might trust, Expect. Functions here are the invoke stub's
`echo-*` ones: the reply is the request's body, so each test writes the reply it wants.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.gateway import Gateway, launch_gateway
from tests.support.rawhttp import RawResponse
from tests.test_faults import logged
from tests.test_lambda_backend import AWS_ENV
from tests.test_security import assert_clean_log, send

MALFORMED_FN = {"error": "the function reply is malformed"}
MALFORMED = {"error": "the backend reply is malformed"}
SPOOFED = [
    (b"X-Forwarded-For", b"6.6.6.6"),
    (b"X-Real-IP", b"6.6.6.6"),
    (b"Forwarded", b"for=6.6.6.6;proto=https"),
    (b"X-Forwarded-Proto", b"https"),
    (b"X-Forwarded-Host", b"evil.example"),
    (b"X-Forwarded-Port", b"443"),
]
FORWARDING = [
    "X-Forwarded-For",
    "X-Real-IP",
    "Forwarded",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "Expect",
]


def lam(stub: str, function: str, **fields) -> dict:
    group = fields.pop("group", None)
    backend = {
        "extra_config": {
            "backend/lambda": {"function_name": function, "endpoint": stub, "region": "us-east-1", **fields}
        }
    }
    return {**backend, "group": group} if group else backend


def http_backend(host: str, path: str, **fields) -> dict:
    return {"host": [host], "url_pattern": path, **fields}


@pytest.fixture(scope="module")
def gw(upstream, faulty, stub, tmp_path_factory) -> Iterator[Gateway]:
    a = http_backend(upstream, "/json/a", method="GET", group="a")
    endpoints = [
        {"endpoint": "/h/deep/{n}", "backend": [http_backend(upstream, "/deep/{n}")]},
        {"endpoint": "/h/merge-deep", "backend": [a, http_backend(upstream, "/deep/300", group="d")]},
        {
            "endpoint": "/h/noop/{name}",
            "output_encoding": "no-op",
            "backend": [http_backend(faulty, "/{name}", encoding="no-op")],
        },
        {"endpoint": "/h/fwd", "input_headers": ["*"], "backend": [http_backend(upstream, "/echo/fwd")]},
        {"endpoint": "/h/fwd-listed", "input_headers": FORWARDING, "backend": [http_backend(upstream, "/echo/fwd")]},
        {"endpoint": "/l/proxy", "method": "POST", "backend": [lam(stub, "echo-proxy", response_format="proxy")]},
        {"endpoint": "/l/data", "method": "POST", "backend": [lam(stub, "echo-data")]},
        {
            "endpoint": "/l/merge-proxy",
            "method": "POST",
            "backend": [a, lam(stub, "echo-merge-proxy", response_format="proxy", group="fn")],
        },
        {"endpoint": "/l/merge-data", "method": "POST", "backend": [a, lam(stub, "echo-merge-data", group="fn")]},
        {
            "endpoint": "/l/v1",
            "input_headers": ["*"],
            "backend": [lam(stub, "echo-fwd-v1", payload_format="apigateway_v1", response_format="data")],
        },
        {
            "endpoint": "/l/v2",
            "input_headers": FORWARDING,
            "backend": [lam(stub, "echo-fwd-v2", payload_format="apigateway_v2", response_format="data")],
        },
    ]
    gateway = launch_gateway(
        {"version": 3, "timeout": "3s", "endpoints": endpoints}, tmp_path_factory.mktemp("gw"), env=AWS_ENV
    )
    yield gateway
    gateway.process.stop()


def reply_of(gw: Gateway, target: bytes, reply) -> RawResponse:
    """POST `reply` to an echo function's endpoint: the function answers it."""
    body = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
    return send(gw, target, [(b"Content-Type", b"application/json")], b"POST", body)


def all_of(resp: RawResponse, name: bytes) -> list[bytes]:
    return [v for k, v in resp.headers if k.lower() == name]


def assert_failed(gw: Gateway, resp: RawResponse, status: int, body: dict, cause: str) -> None:
    assert (resp.status, json.loads(resp.body)) == (status, body), resp.raw[:300]
    assert all_of(resp, b"x-krakend-completed") == [b"false"]
    assert cause in logged(gw, resp.header(b"x-request-id").decode(), "backend failed:")
    assert_clean_log(gw)


# ------------------------------------------------------------------- reply headers: caps and sendability


def _headers(n: int) -> dict[str, str]:
    return {f"X-H-{i}": "v" for i in range(n)}


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        ({"statusCode": 200, "headers": _headers(101)}, "more than 100 headers"),
        ({"statusCode": 200, "multiValueHeaders": {"X-M": ["v"] * 101}}, "more than 100 headers"),
        ({"statusCode": 200, "cookies": [f"c{i}=1" for i in range(101)]}, "more than 100 headers"),
        ({"statusCode": 200, "headers": _headers(60), "multiValueHeaders": {"X-M": ["v"] * 41}}, "101 headers"),
        ({"statusCode": 200, "headers": {"X-A": "a" * 40000, "X-B": "b" * 40000}}, "more than 65536"),
        ({"statusCode": 200, "headers": {"X-Euro": "\u20ac" * 22000}}, "more than 65536"),  # 66,000 bytes in UTF-8
        # granian refuses a name over 64 KiB with its own plain 500 (and a traceback in the log)
        ({"statusCode": 200, "headers": {"x" * 70000: "1"}}, "more than 65536"),
    ],
    ids=["names", "multi-values", "cookies", "lines", "bytes", "utf8-bytes", "long-name"],
)
def test_function_reply_headers_past_the_caps_are_malformed(gw, reply, cause):
    assert_failed(gw, reply_of(gw, b"/l/proxy", reply), 500, MALFORMED_FN, cause)


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        # str.isdigit() is true for these: "²" made int() raise (500 "the backend failed", a traceback logged)
        ({"statusCode": "\u00b2"}, "statusCode must be an integer 200-599, got '\u00b2'"),
        ({"statusCode": "2\u00b200"}, "statusCode must be an integer 200-599"),
        ({"statusCode": "\uff12\uff10\uff10", "body": "{}"}, "statusCode must be an integer 200-599"),  # was 200
        # were passed on as Python's text: "None", "{'a': 'b'}", "[1, 2]"
        ({"statusCode": 200, "headers": {"X-A": None}}, "header X-A is null"),
        ({"statusCode": 200, "headers": {"X-A": {"a": "b"}}}, "header X-A is an object"),
        ({"statusCode": 200, "headers": {"X-A": [1, 2]}}, "header X-A is a list"),
        ({"statusCode": 200, "multiValueHeaders": {"X-A": ["ok", None]}}, "header X-A is null"),
    ],
    ids=["superscript", "digits-and-superscript", "fullwidth", "null", "object", "list", "multi-null"],
)
def test_function_reply_fields_of_the_wrong_kind_are_malformed(gw, reply, cause):
    assert_failed(gw, reply_of(gw, b"/l/proxy", reply), 500, MALFORMED_FN, cause)


def test_function_reply_numbers_and_booleans_in_headers_pass_as_json_text(gw):
    reply = {
        "statusCode": "201",
        "headers": {"X-B": True, "X-N": 10, "X-R": 1.5},
        "multiValueHeaders": {"X-M": [0, False]},
    }
    resp = reply_of(gw, b"/l/proxy", {**reply, "body": "{}"})
    assert (resp.status, resp.header(b"x-b"), resp.header(b"x-n"), resp.header(b"x-r")) == (201, b"true", b"10", b"1.5")
    assert all_of(resp, b"x-m") == [b"0", b"false"]
    assert_clean_log(gw)


def test_function_reply_headers_up_to_the_caps_pass(gw):
    resp = reply_of(
        gw,
        b"/l/proxy",
        {"statusCode": 200, "headers": _headers(99), "multiValueHeaders": {"X-Big": ["b" * 60000]}, "body": "{}"},
    )
    assert resp.status == 200 and resp.header(b"x-h-98") == b"v" and len(resp.header(b"x-big")) == 60000


def test_function_reply_over_the_caps_in_a_merge_is_partial(gw):
    resp = reply_of(gw, b"/l/merge-proxy", {"statusCode": 200, "headers": _headers(101), "body": '{"x": 1}'})
    assert resp.status == 200 and list(json.loads(resp.body)) == ["a"]
    assert resp.header(b"x-krakend-completed") == b"false"
    assert "more than 100 headers" in logged(gw, resp.header(b"x-request-id").decode(), "backend failed:")


@pytest.mark.parametrize(
    ("name", "cause"), [("many-headers", "102 headers, more than 100"), ("big-headers", "more than 65536")]
)
def test_no_op_reply_headers_past_the_caps_are_malformed(gw, name, cause):
    assert_failed(gw, send(gw, f"/h/noop/{name}".encode()), 502, MALFORMED, cause)


def test_function_reply_with_24600_header_names_is_a_500_and_the_gateway_keeps_serving(stub, start_gateway):
    """About 24,600 distinct names (480 KB) used to make granian's worker panic: every worker and the server
    stopped. Two workers, as the attack was run."""
    gw = start_gateway(
        {
            "version": 3,
            "endpoints": [
                {
                    "endpoint": "/l/proxy",
                    "method": "POST",
                    "backend": [lam(stub, "echo-proxy", response_format="proxy")],
                }
            ],
        },
        "--workers",
        "2",
        env=AWS_ENV,
    )
    reply = {"statusCode": 200, "headers": {f"X-Header-Number-{i:05d}": "v" for i in range(24600)}, "body": "{}"}
    for _ in range(4):  # both workers get one (SO_REUSEPORT spreads connections)
        resp = reply_of(gw, b"/l/proxy", reply)
        assert (resp.status, json.loads(resp.body)) == (500, MALFORMED_FN)
    resp = reply_of(gw, b"/l/proxy", {"statusCode": 201, "body": '{"ok": true}'})
    assert (resp.status, json.loads(resp.body)) == (201, {"ok": True})
    with urllib.request.urlopen(f"{gw.url}/__health", timeout=5) as health:
        assert health.status == 200
    assert gw.process.proc.poll() is None
    log = gw.log()
    assert "panicked" not in log and "Unexpected exit from worker" not in log
    assert_clean_log(gw)


@pytest.mark.parametrize("status", ["101", "600", "999"])
def test_no_op_statuses_the_server_cannot_send_are_malformed(gw, status):
    """aiohttp takes any three digits as a final status but other 1xx (interim: it reads on); granian would
    switch protocols for 101 and send 600-999 with no reason phrase. A final reply is 200-599, as for functions."""
    assert_failed(
        gw,
        send(gw, f"/h/noop/status-{status}".encode()),
        502,
        MALFORMED,
        f"status {int(status)} is not a final HTTP status (200-599)",
    )


def test_no_op_status_under_100_is_a_502_and_the_gateway_keeps_serving(faulty, start_gateway):
    """A status under 100 ("HTTP/1.1 099 …", which aiohttp takes) used to make granian's worker panic: every
    worker and the server stopped."""
    gw = start_gateway(
        {
            "version": 3,
            "endpoints": [
                {
                    "endpoint": "/noop/{name}",
                    "output_encoding": "no-op",
                    "backend": [http_backend(faulty, "/{name}", encoding="no-op")],
                }
            ],
        }
    )
    for _ in range(2):
        assert_failed(gw, send(gw, b"/noop/status-099"), 502, MALFORMED, "status 99 is not a final HTTP status")
    assert send(gw, b"/noop/status-200").status == 200
    assert gw.process.proc.poll() is None and "panicked" not in gw.log()


def test_no_op_statuses_200_to_599_pass(gw):
    for status in (200, 418, 599):
        resp = send(gw, f"/h/noop/status-{status}".encode())
        assert resp.status == status, resp.raw[:200]


# ------------------------------------------------------------------- the gateway's own reply headers


def test_a_functions_request_id_and_completed_header_never_duplicate_the_gateways(gw):
    resp = reply_of(
        gw,
        b"/l/proxy",
        {
            "statusCode": 200,
            "body": "{}",
            "headers": {"X-Request-Id": "fn-id"},
            "multiValueHeaders": {"X-KrakenD-Completed": ["false", "false"]},
        },
    )
    assert resp.status == 200
    assert len(all_of(resp, b"x-request-id")) == 1 and resp.header(b"x-request-id") != b"fn-id"
    assert all_of(resp, b"x-krakend-completed") == [b"true"]


def test_an_upstreams_request_id_and_completed_header_never_duplicate_the_gateways(gw):
    resp = send(gw, b"/h/noop/own-headers")
    assert resp.status == 200
    assert len(all_of(resp, b"x-request-id")) == 1 and resp.header(b"x-request-id") != b"upstream-id"
    # a no-op reply is never "complete" for the gateway (KrakenD's rule), whatever the upstream says
    assert all_of(resp, b"x-krakend-completed") == [b"false"]


# ------------------------------------------------------------------- JSON nesting


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [129, 300, 1024])
def test_deeply_nested_json_from_an_http_backend_is_malformed(gw, depth):
    assert_failed(gw, send(gw, f"/h/deep/{depth}".encode()), 500, MALFORMED, "JSON nested deeper than 128 levels")


def test_json_nested_to_the_limit_passes(gw):
    resp = send(gw, b"/h/deep/128")
    assert resp.status == 200 and json.loads(resp.body) == {"collection": json.loads(_nested(128))}
    resp = reply_of(gw, b"/l/data", {"a": json.loads(_nested(127))})  # 128 levels with the object around
    assert resp.status == 200 and json.loads(resp.body) == {"a": json.loads(_nested(127))}


@pytest.mark.parametrize("depth", [129, 300, 1024])
def test_deeply_nested_json_from_a_function_is_malformed(gw, depth):
    assert_failed(gw, reply_of(gw, b"/l/data", _nested(depth)), 500, MALFORMED_FN, "JSON nested deeper than 128")


@pytest.mark.parametrize(
    ("target", "reply"),
    [
        (b"/h/merge-deep", None),
        (b"/l/merge-data", {"deep": json.loads(_nested(300))}),
        (b"/l/merge-proxy", {"statusCode": 200, "body": json.dumps({"deep": json.loads(_nested(300))})}),
    ],
    ids=["http", "function-data", "function-proxy-body"],
)
def test_deeply_nested_json_in_a_merge_is_partial(gw, target, reply):
    resp = send(gw, target) if reply is None else reply_of(gw, target, reply)
    assert resp.status == 200 and list(json.loads(resp.body)) == ["a"]
    assert resp.header(b"x-krakend-completed") == b"false"
    assert "JSON nested deeper than 128" in logged(gw, resp.header(b"x-request-id").decode(), "backend failed:")
    assert_clean_log(gw)


# ------------------------------------------------------------------- forwarding headers and Expect


@pytest.mark.parametrize("target", [b"/h/fwd", b"/h/fwd-listed"])
def test_http_backends_get_the_gateways_forwarding_headers_never_the_clients(gw, target):
    resp = send(gw, target, SPOOFED)
    assert resp.status == 200, resp.raw[:300]
    headers = json.loads(resp.body)["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-host"] == "127.0.0.1"
    for absent in ("x-real-ip", "forwarded", "x-forwarded-proto", "x-forwarded-port"):
        assert absent not in headers, absent


@pytest.mark.parametrize("target", [b"/h/fwd", b"/h/fwd-listed"])
def test_expect_is_never_forwarded_to_http_backends(gw, target):
    """The gateway sends the whole body at once: an upstream told to expect 100-continue would wait for it."""
    resp = send(gw, target, [(b"Expect", b"100-continue")])
    assert resp.status == 200, resp.raw[:300]
    assert "expect" not in json.loads(resp.body)["headers"]


def _event(stub: str, name: str) -> dict:
    with urllib.request.urlopen(f"{stub}/__last/{name}", timeout=5) as resp:
        return json.loads(json.loads(resp.read())["payload"])


@pytest.mark.parametrize(("target", "function"), [(b"/l/v1", "echo-fwd-v1"), (b"/l/v2", "echo-fwd-v2")])
def test_api_gateway_events_carry_the_gateways_forwarding_headers(gw, stub, target, function):
    resp = send(gw, target, SPOOFED)
    assert resp.status == 200, resp.raw[:300]
    event = _event(stub, function)
    headers = event["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    assert headers["host"] == headers["x-forwarded-host"] == "127.0.0.1"
    for absent in ("x-real-ip", "forwarded", "x-forwarded-port"):
        assert absent not in headers, absent
    if event["version"] == "1.0":
        assert event["multiValueHeaders"]["x-forwarded-for"] == ["127.0.0.1"]
        assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    else:
        assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
