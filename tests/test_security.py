"""Hostile input, case by case, against a real gateway: header injection, path traversal, SSRF through
placeholders, function-name injection into the Invoke URL, and secrets never reaching logs.

The upstreams show what they received (tests/support/upstream.py's /echo, tests/support/faulty.py's default
reply, tests/support/invoke_stub.py's /__requests), so each test checks what actually went over the wire.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from tests.support.gateway import Gateway, launch_gateway
from tests.support.procs import free_port
from tests.support.rawhttp import RawResponse, build, exchange
from tests.test_lambda_backend import AWS_ENV


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def lam(stub: str, **fields) -> dict:
    return {"extra_config": {"backend/lambda": {"endpoint": stub, "region": "us-east-1", **fields}}}


@pytest.fixture(scope="module")
def gw(upstream, stub, faulty, tmp_path_factory) -> Iterator[Gateway]:
    by_name = upstream.replace("127.0.0.1", "localhost")
    config = {
        "version": 3,
        "timeout": "3s",
        "endpoints": [
            {
                "endpoint": "/files/{name}",
                "input_headers": ["*"],
                "input_query_strings": ["*"],
                "backend": [{"host": [upstream], "url_pattern": "/echo/files/{name}/meta"}],
            },
            {"endpoint": "/q/{v}", "backend": [{"host": [upstream], "url_pattern": "/echo/q?v={v}&fixed=1"}]},
            {
                "endpoint": "/hdr",
                "input_headers": ["X-Probe"],
                "backend": [{"host": [upstream], "url_pattern": "/echo/hdr"}],
            },
            {"endpoint": "/ssrf/{x}", "backend": [{"host": [faulty], "url_pattern": "/{x}"}]},
            {
                "endpoint": "/ssrf-raw/{x}",
                "backend": [{"host": [faulty], "url_pattern": "/{x}", "disable_host_sanitize": True}],
            },
            {"endpoint": "/ssrf-tail/{x}", "backend": [{"host": [faulty + "/base"], "url_pattern": "/{x}/end"}]},
            {"endpoint": "/ssrf-query/{x}", "backend": [{"host": [faulty], "url_pattern": "/q?u={x}"}]},
            {"endpoint": "/fn/{name}", "backend": [lam(stub, function_param_name="name")]},
            {
                "endpoint": "/fn-allowed/{name}",
                "backend": [lam(stub, function_param_name="name", allowed_functions=["echo-*"])],
            },
            {
                "endpoint": "/proxy",
                "method": "POST",
                "backend": [lam(stub, function_name="echo-proxy", response_format="proxy")],
            },
            {
                "endpoint": "/arn",
                "backend": [lam(stub, function_name="arn:aws:lambda:us-east-1:123456789012:function:echo-arn:live")],
            },
            {"endpoint": "/qualified", "backend": [lam(stub, function_name="echo-q", qualifier="v7")]},
            # by name (localhost, from /etc/hosts): a client cookie jar would keep cookies for a name, not for an IP
            {"endpoint": "/set-cookies", "backend": [{"host": [by_name], "url_pattern": "/cookies"}]},
            {"endpoint": "/who", "backend": [{"host": [by_name], "url_pattern": "/echo/who"}]},
        ],
    }
    gateway = launch_gateway(config, tmp_path_factory.mktemp("gw"), env=AWS_ENV)
    yield gateway
    gateway.process.stop()


def port_of(gw: Gateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def send(
    gw: Gateway,
    target: bytes,
    headers: list[tuple[bytes, bytes]] = (),
    method: bytes = b"GET",
    body: bytes | None = None,
) -> RawResponse:
    return exchange(port_of(gw), build(method, target, list(headers), body))


def assert_clean_log(gw: Gateway) -> None:
    log = gw.log()
    for bad in ("unhandled error", "Traceback", "unexpected error", "Application callable raised"):
        assert bad not in log, f"{bad!r} in the gateway log:\n{log[-3000:]}"


# ------------------------------------------------------------------------------------- CRLF / headers


@pytest.mark.parametrize(
    "value",
    [
        b"a\rInjected: yes",
        b"a\nInjected: yes",
        b"a\x00b",
        b"a\x01b",
        b"a\x7fb",
        b"a\r\n Injected: yes",
        b"a\r\nInjected: yes",
        b"a\x0bb",
        b"a\tb \xe9\xff",
    ],
)
def test_request_header_injection_never_splits_a_header_upstream(gw, value):
    """/hdr forwards X-Probe only. Whatever the bytes, the upstream gets no other header and no line break.
    (A bare LF ends a header line for lenient parsers (RFC 9112 2.2): then "Injected" is a header of the client's
    own, which input_headers does not forward.)"""
    resp = send(gw, b"/hdr", [(b"X-Probe", value)])
    if resp.status == 200:
        headers = json.loads(resp.body)["headers"]
        assert "injected" not in headers and not any("injected" in k.lower() for k in headers)
        assert not any(c in headers.get("x-probe", "") for c in "\r\n\x00")
    else:  # refused by the HTTP parser before the gateway saw it
        assert resp.status == 400, resp.raw[:300]
    assert_clean_log(gw)


@pytest.mark.parametrize(
    "target",
    [
        b"/files/a%0D%0AInjected:%20yes",
        b"/files/a%0Ab",
        b"/files/a%00b",
        b"/q/a%0D%0AInjected:%20yes",
    ],
)
def test_placeholder_with_control_characters_is_refused(gw, target):
    resp = send(gw, target)
    assert (resp.status, json.loads(resp.body)) == (400, {"error": "invalid path parameter"})


def test_query_string_crlf_stays_data(gw):
    resp = send(gw, b"/files/x?k=a%0D%0AInjected:%20yes&k2=%0D%0A")
    echo = json.loads(resp.body)
    assert resp.status == 200 and "injected" not in echo["headers"]
    assert echo["query"] == {"k": ["a\r\nInjected: yes"], "k2": ["\r\n"]}


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        ({"statusCode": 200, "headers": {"X-A": "a\r\nSet-Cookie: evil=1"}}, "line break"),
        ({"statusCode": 200, "headers": {"X-A\r\nSet-Cookie": "evil=1"}}, "invalid header name"),
        ({"statusCode": 200, "multiValueHeaders": {"X-A": ["ok", "b\nInjected: yes"]}}, "line break"),
        ({"statusCode": 200, "headers": {"X-A": "a\x00b"}}, "control character"),
        ({"statusCode": 200, "headers": {"X A": "1"}}, "invalid header name"),
        ({"statusCode": 200, "headers": {"X-\u20ac": "1"}}, "invalid header name"),
        ({"statusCode": 200, "cookies": ["a=1\r\nX-Injected: yes"]}, "line break"),
    ],
)
def test_function_reply_header_injection_is_refused(gw, reply, cause):
    resp = send(gw, b"/proxy", [(b"Content-Type", b"application/json")], b"POST", json.dumps(reply).encode())
    assert (resp.status, json.loads(resp.body)) == (500, {"error": "the function reply is malformed"})
    assert b"injected" not in resp.raw.lower() and b"evil" not in resp.raw
    rid = resp.header(b"x-request-id").decode()
    assert any(cause in line for line in gw.log().splitlines() if rid in line and "backend failed" in line)
    assert_clean_log(gw)


def test_function_reply_headers_outside_latin1_pass_as_utf8(gw):
    reply = {"statusCode": 201, "headers": {"X-Text": "5\u20ac caf\u00e9", "X-Tab": "a\tb"}, "body": "{}"}
    resp = send(gw, b"/proxy", [], b"POST", json.dumps(reply).encode())
    assert resp.status == 201
    assert resp.header(b"x-text") == "5\u20ac caf\u00e9".encode() and resp.header(b"x-tab") == b"a\tb"


def test_cookies_a_backend_sets_never_reach_another_call(gw):
    """One client's backend reply sets cookies; no later backend call (any client's) may carry them."""
    assert send(gw, b"/set-cookies").status == 200
    echo = json.loads(send(gw, b"/who").body)
    assert "cookie" not in echo["headers"], echo["headers"]


# -------------------------------------------------------------------------------- path traversal


@pytest.mark.parametrize(
    ("segment", "upstream_path"),
    [
        (b"...", "/echo/files/.../meta"),
        (b"a%20b", "/echo/files/a%20b/meta"),
        (b"a%3Fq%3D1%23f", "/echo/files/a%3Fq=1%23f/meta"),  # "?" and "#" cannot start a query or fragment
    ],
)
def test_placeholder_never_escapes_its_segment(gw, segment, upstream_path):
    resp = send(gw, b"/files/" + segment)
    assert resp.status == 200, resp.raw[:300]
    echo = json.loads(resp.body)
    assert echo["path"] == upstream_path and echo["query"] == {}


# Upstreams that decode "%2F" (Python's http.server, some Tomcat, Spring and nginx setups) would serve another path,
# so a value that decodes (once or more) to a "/" or "\\", or to "." or "..", never reaches a backend (issue 16).
@pytest.mark.parametrize(
    "segment",
    [
        b"..%2F..%2Fadmin",
        b"..%2f..%2fadmin",
        b"a%2Fb",
        b"%2F",
        b"%252F",
        b"%25252F",
        b"..%5C..%5Cadmin",
        b"%2E%2E%2F",
        b"..%2Fadmin%2Fsecret.json",
        b"%252E%252E",
    ],
)
def test_encoded_slashes_and_traversal_are_refused(gw, segment):
    resp = send(gw, b"/files/" + segment)
    assert (resp.status, json.loads(resp.body)) == (400, {"error": "invalid path parameter"}), resp.raw[:300]


@pytest.mark.parametrize("segment", [b"..", b".", b"%2e%2e", b"%2E", b".%2e"])
def test_dot_segments_are_refused(gw, segment):
    resp = send(gw, b"/files/" + segment)
    assert resp.status in (400, 404), resp.raw[:300]  # 404: the client's ".." left no segment for {name}
    if resp.status == 400:
        assert json.loads(resp.body) == {"error": "invalid path parameter"}


def test_query_placeholder_cannot_add_parameters(gw):
    resp = send(gw, b"/q/a%26admin%3D1%23x")
    echo = json.loads(resp.body)
    assert resp.status == 200 and echo["query"] == {"v": ["a&admin=1#x"], "fixed": ["1"]}


# ------------------------------------------------------------------------------------------- SSRF


@pytest.mark.parametrize("endpoint", [b"/ssrf/", b"/ssrf-raw/", b"/ssrf-tail/"])
@pytest.mark.parametrize(
    "value",
    [
        b"@evil.example",
        b"evil.example",
        b"evil.example%2F",
        b"%40evil.example",
        b"http:%2F%2Fevil.example",
        b"user:pass@evil.example:80",
        b"127.0.0.2:1",
        b"%2F%2Fevil.example",
        b"[::1]:1",
        b"evil.example%3A80%2Fx",
    ],
)
def test_placeholder_never_changes_the_upstream_host(gw, faulty, endpoint, value):
    resp = send(gw, endpoint + value)
    if b"%2F" in value:  # a value holding a slash never reaches any backend (issue 16)
        assert (resp.status, json.loads(resp.body)) == (400, {"error": "invalid path parameter"})
        return
    assert resp.status == 200, resp.raw[:300]
    landed = json.loads(resp.body)  # answered by the configured loopback upstream, so the host did not change
    assert landed["host"] == faulty.removeprefix("http://")
    assert landed["target"].startswith("/base/" if endpoint == b"/ssrf-tail/" else "/")
    assert landed["target"].count("/") == (3 if endpoint == b"/ssrf-tail/" else 1)  # one segment for the value


def test_query_placeholder_cannot_change_host_or_path(gw, faulty):
    resp = send(gw, b"/ssrf-query/@evil.example:80%3Fa%3D1%23x")
    landed = json.loads(resp.body)
    assert landed["host"] == faulty.removeprefix("http://")
    assert landed["target"] == "/q?u=%40evil.example%3A80%3Fa%3D1%23x"


# ---------------------------------------------------------------------------- function-name injection


def stub_requests(stub: str) -> list[dict]:
    return get_json(f"{stub}/__requests")


@pytest.mark.parametrize(
    "value",
    [
        b"..%2Fadmin",
        b"..",
        b"%2F",
        b"a%2F..%2Fb",
        b"x%3FQualifier%3D1",
        b"x:1",
        b"x%3A1",
        b"arn:aws:lambda:us-east-1:123456789012:function:echo-x",
        b"123456789012:function:echo-x",
        b"a%20b",
        b"echo%00",
        b"x" * 65,
        b"echo-%E2%82%AC",
        b"%252F",
    ],
)
def test_function_name_from_the_url_is_validated(gw, stub, value):
    before = len(stub_requests(stub))
    resp = send(gw, b"/fn/" + value)
    assert resp.status in (400, 404), resp.raw[:300]
    if resp.status == 400:
        assert json.loads(resp.body) == {"error": "invalid function name"} or resp.body.startswith(
            b'{"error":"invalid path'
        )
    assert len(stub_requests(stub)) == before  # nothing was invoked


def test_function_names_reach_the_invoke_url_encoded(gw, stub):
    assert send(gw, b"/fn/echo-ok").status == 200
    assert send(gw, b"/fn-allowed/other").status == 404  # not in allowed_functions: never invoked
    send(gw, b"/arn")  # the stub knows no ARN (500), but the URL it was called on is recorded
    assert send(gw, b"/qualified").status == 200
    paths = [r["path"] for r in stub_requests(stub)]
    assert "/2015-03-31/functions/echo-ok/invocations" in paths
    assert (
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aecho-arn%3Alive/invocations"
    ) in paths
    assert "/2015-03-31/functions/echo-q/invocations?Qualifier=v7" in paths
    assert not any("other" in p for p in paths)


@pytest.mark.parametrize(
    "fields",
    [
        {"function_name": "../../admin"},
        {"function_name": "fn/../../x"},
        {"function_name": "fn?Qualifier=1"},
        {"function_name": "fn#x"},
        {"function_name": "fn", "qualifier": "v1&x=1"},
        {"function_name": "fn", "qualifier": "../1"},
        {"function_name": "fn", "endpoint": "http://127.0.0.1:1/?x=1"},
        {"function_name": "fn", "endpoint": "file:///etc/passwd"},
    ],
)
def test_function_name_injection_in_the_config_is_refused(fields):
    doc = {
        "version": 3,
        "endpoints": [
            {"endpoint": "/x", "backend": [{"extra_config": {"backend/lambda": {"region": "us-east-1", **fields}}}]}
        ],
    }
    with pytest.raises(ConfigError) as err:
        validate_document(doc, LoadOptions())
    assert 'endpoints[0].backend[0].extra_config["backend/lambda"]' in str(err.value)


# -------------------------------------------------------------------------------------------- secrets

SECRET = "SeCrEt/KeY+must-NEVER-be-seen-0123456789ab"
TOKEN = "SeSsIoN-ToKeN-only-in-X-Amz-Security-Token-zyxwvut"
ACCESS_KEY = "AKIAFAKELEAKCHECK001"


def test_secrets_never_in_logs(stub, tmp_path):
    env = {**AWS_ENV, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
    dead = f"http://127.0.0.1:{free_port()}"
    functions = [
        "denied",
        "flaky-2",
        "throttle",
        "service-500",
        "unhandled",
        "handled",
        "notjson",
        "missing-fn",
        "too-large",
        "invalid-content",
        "slow",
        "echo-secret",
        "proxy",
    ]
    endpoints = [
        {
            "endpoint": f"/{name}",
            "timeout": "1s",
            "backend": [lam(stub, function_name=name, max_retries=2, return_error_details=True)],
        }
        for name in functions
    ]
    endpoints += [
        {"endpoint": "/dead", "backend": [lam(dead, function_name="fn", max_retries=2)]},
        {"endpoint": "/event", "backend": [lam(stub, function_name="echo-event", invocation_type="Event")]},
        {"endpoint": "/by/{name}", "backend": [lam(stub, function_param_name="name", max_retries=1)]},
        {
            "endpoint": "/merged",
            "backend": [
                {**lam(stub, function_name="denied", return_error_details=True), "group": "a"},
                {**lam(stub, function_name="unhandled", return_error_details=True), "group": "b"},
            ],
        },
    ]
    config = {"version": 3, "timeout": "2s", "endpoints": endpoints}
    gateway = launch_gateway(config, tmp_path, "--debug", env=env)
    json_gateway = launch_gateway(config, tmp_path, "--debug", "--log-format", "json", env=env, name="json.json")
    try:
        seen = set()
        for gw in (gateway, json_gateway):
            for path in [f"/{n}" for n in functions] + [
                "/dead",
                "/event",
                "/by/nope",
                "/by/..",
                "/merged",
                "/__echo/x",
            ]:
                resp = send(gw, path.encode(), [(b"Authorization", b"Bearer client-token")])
                seen.add(resp.status)
                assert SECRET.encode() not in resp.raw and TOKEN.encode() not in resp.raw
        assert {200, 202, 404, 429, 500, 504} <= seen, seen  # successes, retries and every failure kind ran
        for gw in (gateway, json_gateway):
            log = gw.log()
            assert "lambda invoke retry" in log and "AWS refused the credentials or signature" in log
            assert ACCESS_KEY in log or "AWS credentials from env" in log
            assert SECRET not in log and TOKEN not in log
            assert SECRET.split("/")[0] not in log and TOKEN[:16] not in log  # not even a part of them
        recorded = stub_requests(stub)
        ours = [r for r in recorded if ACCESS_KEY in r["headers"].get("Authorization", "")]
        assert ours
        for record in ours:
            headers = dict(record["headers"])
            assert headers.pop("X-Amz-Security-Token") == TOKEN  # the token goes to AWS, in its header only
            rest = json.dumps({**record, "headers": headers})
            assert SECRET not in rest and TOKEN not in rest
    finally:
        gateway.process.stop()
        json_gateway.process.stop()
