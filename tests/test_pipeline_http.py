"""The endpoint pipeline end to end: a real `lambdagate run` in front of real HTTP upstreams on 127.0.0.1.

Gateways are module-scoped: one process serves many endpoints, each test asks its own.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

import lambdagate
from tests.support.gateway import Gateway as BaseGateway
from tests.support.gateway import launch_gateway
from tests.support.procs import Process, free_port, python_module, serve_module

SLOW = "1s"  # the endpoint deadline in the timeout tests; the slow upstream takes 5s, the others a few ms


@dataclass
class Resp:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return orjson.loads(self.body)


def call(
    base: str,
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> Resp:
    """One raw request: no redirects, no decompression, every header as sent (duplicates kept)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for k, v in items:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Resp(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


class Gateway(BaseGateway):
    def get(self, path: str, **kw) -> Resp:
        return call(self.url, "GET", path, **kw)

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """The log once it contains `text`: the access line is written just after the reply is sent."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if text in log or time.monotonic() > deadline:
                return log
            time.sleep(0.02)


@pytest.fixture(scope="module")
def start_module_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Gateway]]:
    """Like conftest's start_gateway, but one process per module: start(config, *cli_args)."""
    started: list[Gateway] = []

    def start(config: dict, *args: str) -> Gateway:
        gateway = launch_gateway(config, tmp_path_factory.mktemp("gateway"), *args, cls=Gateway)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.process.stop()


@pytest.fixture(scope="module")
def upstream2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second upstream process, for host round-robin."""
    with serve_module("tests.support.upstream", "/json/ready", tmp_path_factory.mktemp("upstream2")) as url:
        yield url


@pytest.fixture(scope="module")
def dead() -> str:
    """A loopback address where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def main_config(up: str, up2: str, dead: str) -> dict:
    def b(url: str, host: str = up, **kw) -> dict:
        return {"host": [host], "url_pattern": url, **kw}

    def e(path: str, *backends: dict, **kw) -> dict:
        return {"endpoint": path, "backend": list(backends), **kw}

    return {
        "version": 3,
        "timeout": "5s",
        "endpoints": [
            # merging and manipulation
            e(
                "/merge/{user}",
                b("/json/{user}", allow=["name", "nested.b.c"], mapping={"name": "user"}),
                b("/json/second", deny=["nested"], group="extra"),
                b("/array", is_collection=True, mapping={"collection": "list"}),
            ),
            e("/merge-target", b("/json/t", target="nested.b"), b("/json/u", allow=["name"], group="g")),
            e("/collide", b("/delayed/300/first"), b("/delayed/0/second")),
            e("/collide3", b("/delayed/0/a"), b("/delayed/300/b"), b("/delayed/150/c")),
            # partial and total failure
            e("/partial-500", b("/json/ok", allow=["name"]), b("/status/500")),
            e("/partial-404", b("/json/ok", allow=["name"]), b("/status/404")),
            e("/partial-down", b("/json/ok", allow=["name"]), b("/json/x", host=dead)),
            e("/partial-invalid", b("/json/ok", allow=["name"]), b("/invalid")),
            e("/all-failed", b("/status/500"), b("/json/x", host=dead)),
            e("/single-500", b("/status/503")),
            e("/single-404", b("/status/404")),
            e("/single-down", b("/json/x", host=dead)),
            e("/single-invalid", b("/invalid")),
            # deadlines
            e("/single-slow", b("/slow/5000"), timeout=SLOW),
            e("/merge-slow", b("/json/fast", allow=["name"]), b("/slow/5000"), timeout=SLOW),
            e("/all-slow", b("/slow/5000"), b("/slow/5000"), timeout=SLOW),
            e("/slow-and-failed", b("/slow/5000"), b("/status/500"), timeout=SLOW),
            # no-op pass-through
            e("/noop/{code}", b("/status/{code}"), output_encoding="no-op", cache_ttl="1h"),
            e("/noop-cookies", b("/cookies"), output_encoding="no-op"),
            e("/noop-gzip", b("/gzip"), output_encoding="no-op"),
            e("/noop-down", b("/x", host=dead), output_encoding="no-op"),
            e("/noop-post", b("/digest"), method="POST", output_encoding="no-op", input_headers=["Content-Type"]),
            # encodings
            e("/collection", b("/array", is_collection=True)),
            e("/json-collection", b("/array", is_collection=True), output_encoding="json-collection"),
            e("/string-out", b("/text", encoding="string"), output_encoding="string"),
            e("/string-backend", b("/text", encoding="string")),
            e("/safejson-scalar", b("/scalar", encoding="safejson")),
            e("/gzip", b("/gzip")),
            # zero-trust forwarding
            e("/hdr", b("/echo/hdr"), input_headers=["X-Allowed", "authorization"]),
            e("/hdr-all", b("/echo/hdr"), input_headers=["*"]),
            e("/hdr-none", b("/echo/hdr")),
            e(
                "/hdr-spoof",
                b("/echo/hdr"),
                input_headers=["X-Forwarded-For", "X-Real-IP", "Forwarded", "X-Forwarded-Proto", "X-Forwarded-Host"],
            ),
            e("/post-echo-all", b("/echo/post"), method="POST", input_headers=["*"]),
            e("/qs", b("/echo/qs"), input_query_strings=["a", "b"]),
            e("/qs-all", b("/echo/qs"), input_query_strings=["*"]),
            e("/qs-none", b("/echo/qs")),
            e("/qs-fixed/{id}", b("/echo/qs?id={id}&fixed=1"), input_query_strings=["a"]),
            e("/post", b("/digest"), method="POST", input_headers=["Content-Type"]),
            e("/post-echo", b("/echo/post"), method="POST"),
            e("/put/{id}", b("/echo/put/{id}"), method="PUT"),
            e("/backend-method", b("/echo/m", method="POST")),
            e("/seg/{id}", b("/echo/seg/{id}/end")),
            e(
                "/slash/{key}",
                b("/echo/slash/{key}"),
                extra_config={"lambdagate/endpoint": {"allow_encoded_slash": True}},
            ),
            e("/two/{a}/{b}", b("/echo/{b}/x/{a}")),
            # caching, host rotation, router
            e("/cached", b("/json/c"), cache_ttl="1m"),
            e("/cached-partial", b("/json/c", allow=["name"]), b("/status/500"), cache_ttl="1m"),
            e("/rr", {"host": [up, up2], "url_pattern": "/echo/rr"}),
            e("/users/{id}", b("/echo/users/{id}")),
            e("/users/me", b("/json/me", allow=["name"])),
            e("/users/{id}", b("/echo/users/{id}/deleted"), method="DELETE"),
        ],
    }


@pytest.fixture(scope="module")
def gw(start_module_gateway, upstream: str, upstream2: str, dead: str) -> Gateway:
    return start_module_gateway(main_config(upstream, upstream2, dead))


def completed(r: Resp) -> str | None:
    return r.header("X-KrakenD-Completed")


# --- merge and manipulation -------------------------------------------------------------------------------


def test_merge_three_backends_with_allow_mapping_group(gw: Gateway) -> None:
    r = gw.get("/merge/alice")
    assert r.status == 200, r.body
    assert r.json() == {
        "user": "alice",
        "nested": {"b": {"c": 2}},
        "extra": {"name": "second", "items": [1, 2]},
        "list": [{"i": 0}, {"i": 1}],
    }
    assert (completed(r), r.header("Content-Type")) == ("true", "application/json; charset=utf-8")
    assert r.header("Cache-Control") is None  # no cache_ttl configured


def test_merge_with_target_and_group(gw: Gateway) -> None:
    r = gw.get("/merge-target")
    assert (r.status, r.json(), completed(r)) == (200, {"c": 2, "g": {"name": "u"}}, "true")


def test_config_order_wins_on_key_collision_not_arrival_order(gw: Gateway) -> None:
    # The first backend answers last; the later backend in config order still wins.
    r = gw.get("/collide")
    assert (r.status, r.json(), completed(r)) == (200, {"name": "second"}, "true")
    r = gw.get("/collide3")
    assert (r.status, r.json(), completed(r)) == (200, {"name": "c"}, "true")


# --- failures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/partial-500", "/partial-404", "/partial-down", "/partial-invalid"])
def test_partial_failure_is_200_with_partial_body(gw: Gateway, path: str) -> None:
    r = gw.get(path)
    assert (r.status, r.json(), completed(r)) == (200, {"name": "ok"}, "false")


INTERNALS = re.compile(rb"127\.0\.0\.1|localhost|Traceback|Error\b|Exception|status code|/status/|/json/|:\d{2,5}")


def assert_no_internals(r: Resp, gw: Gateway, dead: str) -> None:
    assert not INTERNALS.search(r.body), r.body
    assert urlsplit(dead).netloc.encode() not in r.body and urlsplit(gw.url).netloc.encode() not in r.body


def backend_failure_lines(gw: Gateway, request_id: str) -> list[str]:
    return [line for line in gw.log().splitlines() if "backend failed" in line and f"request_id={request_id}" in line]


def test_all_backends_failed_is_500_and_cause_goes_to_log(gw: Gateway, dead: str) -> None:
    r = gw.get("/all-failed")
    assert (r.status, r.json(), completed(r)) == (500, {"error": "all backends failed"}, "false")
    assert_no_internals(r, gw, dead)
    lines = backend_failure_lines(gw, r.header("X-Request-Id"))
    assert len(lines) == 2, gw.log()
    assert "invalid status code 500" in lines[0]
    assert "ClientConnectorError" in lines[1] and urlsplit(dead).netloc in lines[1]


@pytest.mark.parametrize(
    ("path", "cause"),
    [
        ("/single-500", "invalid status code 503"),
        ("/single-404", "invalid status code 404"),
        ("/single-down", "ClientConnectorError"),
        ("/single-invalid", "invalid JSON"),
    ],
)
def test_single_backend_failure_is_500_without_internals(gw: Gateway, dead: str, path: str, cause: str) -> None:
    r = gw.get(path)
    assert r.status == 500 and completed(r) == "false"
    assert set(r.json()) == {"error"}
    assert_no_internals(r, gw, dead)
    [line] = backend_failure_lines(gw, r.header("X-Request-Id"))
    assert cause in line


def test_single_slow_backend_is_504(gw: Gateway, dead: str) -> None:
    r = gw.get("/single-slow")
    assert (r.status, r.json(), completed(r)) == (504, {"error": "the backend did not answer in time"}, "false")
    assert_no_internals(r, gw, dead)
    [line] = backend_failure_lines(gw, r.header("X-Request-Id"))
    assert "deadline exceeded" in line and "status=504" in line


def test_merge_with_one_slow_backend_is_partial(gw: Gateway) -> None:
    r = gw.get("/merge-slow")
    assert (r.status, r.json(), completed(r)) == (200, {"name": "fast"}, "false")
    [line] = backend_failure_lines(gw, r.header("X-Request-Id"))
    assert "backend[1]" in line and "deadline exceeded" in line


def test_merge_all_slow_is_504_but_slow_and_failed_is_500(gw: Gateway) -> None:
    r = gw.get("/all-slow")
    assert (r.status, r.json()) == (504, {"error": "all backends failed"})
    r = gw.get("/slow-and-failed")
    assert (r.status, r.json()) == (500, {"error": "all backends failed"})


# --- no-op ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 404, 500, 201])
def test_no_op_passes_status_headers_and_body(gw: Gateway, code: int) -> None:
    r = gw.get(f"/noop/{code}")
    assert r.status == code
    assert r.body == f'{{"status": {code}}}'.encode()  # the upstream's own bytes (it writes ": ")
    assert (r.header("X-Upstream"), r.header("Set-Cookie")) == ("yes", "a=1")
    assert r.header("Content-Type") == "application/json; charset=utf-8"
    # KrakenD: a no-op reply is never "completed", so it never gets Cache-Control either.
    assert completed(r) == "false" and r.header("Cache-Control") is None


def test_no_op_keeps_repeated_headers(gw: Gateway) -> None:
    r = gw.get("/noop-cookies")
    assert (r.status, r.json()) == (200, {"cookies": 2})
    assert r.all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_no_op_of_compressed_reply_does_not_claim_compression(gw: Gateway) -> None:
    # The HTTP client decompressed the upstream's gzip: the body passed on is plain, so must be the headers.
    r = gw.get("/noop-gzip")
    assert r.status == 200 and r.header("Content-Encoding") is None
    assert r.json() == {"zipped": "x" * 2000}
    assert int(r.header("Content-Length")) == len(r.body)


def test_compressed_reply_is_decoded_for_json(gw: Gateway) -> None:
    r = gw.get("/gzip")
    assert (r.status, r.json(), r.header("Content-Encoding")) == (200, {"zipped": "x" * 2000}, None)


def test_no_op_unreachable_backend_is_502(gw: Gateway, dead: str) -> None:
    r = gw.get("/noop-down")
    assert (r.status, r.json()) == (502, {"error": "the backend is unavailable"})
    assert_no_internals(r, gw, dead)


def test_no_op_forwards_body_byte_for_byte(gw: Gateway) -> None:
    payload = os.urandom(70_000)
    r = call(gw.url, "POST", "/noop-post", {"Content-Type": "application/x-thing"}, payload)
    assert r.status == 200
    assert r.json() == {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "length": len(payload),
        "content_type": "application/x-thing",
    }


# --- encodings --------------------------------------------------------------------------------------------


def test_is_collection_wraps_array(gw: Gateway) -> None:
    r = gw.get("/collection")
    assert (r.status, r.json(), completed(r)) == (200, {"collection": [{"i": 0}, {"i": 1}]}, "true")


def test_output_json_collection_renders_the_array(gw: Gateway) -> None:
    r = gw.get("/json-collection")
    assert (r.status, r.json(), completed(r)) == (200, [{"i": 0}, {"i": 1}], "true")


def test_output_string(gw: Gateway) -> None:
    r = gw.get("/string-out")
    assert (r.status, r.body, r.header("Content-Type")) == (200, b"hello, text", "text/plain; charset=utf-8")


def test_backend_string_encoding_is_content(gw: Gateway) -> None:
    r = gw.get("/string-backend")
    assert (r.status, r.json()) == (200, {"content": "hello, text"})


def test_safejson_scalar_is_content(gw: Gateway) -> None:
    r = gw.get("/safejson-scalar")
    assert (r.status, r.json()) == (200, {"content": 42})


# --- zero-trust forwarding --------------------------------------------------------------------------------

CLIENT_HEADERS = [
    ("x-ALLOWED", "1"),
    ("Authorization", "Bearer t"),
    ("X-Secret", "s"),
    ("Cookie", "c=1"),
    ("User-Agent", "test-client"),
    ("Proxy-Authorization", "Basic eA=="),
    ("TE", "trailers"),
]


def echoed_headers(gw: Gateway, path: str) -> dict[str, str]:
    r = gw.get(path, headers=CLIENT_HEADERS)
    assert r.status == 200, r.body
    return r.json()["headers"]


def test_only_listed_headers_are_forwarded_case_insensitively(gw: Gateway) -> None:
    seen = echoed_headers(gw, "/hdr")
    assert seen["x-allowed"] == "1" and seen["authorization"] == "Bearer t"
    assert not {"x-secret", "cookie", "proxy-authorization", "te"} & set(seen)
    assert seen["user-agent"].startswith("lambdagate/")
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-host"] == urlsplit(gw.url).netloc


def test_no_input_headers_forwards_none(gw: Gateway) -> None:
    seen = echoed_headers(gw, "/hdr-none")
    assert not {"x-allowed", "authorization", "x-secret", "cookie"} & set(seen)
    assert seen["user-agent"].startswith("lambdagate/")


def test_star_forwards_all_but_hop_by_hop_and_host(gw: Gateway, upstream: str) -> None:
    seen = echoed_headers(gw, "/hdr-all")
    assert (seen["x-allowed"], seen["authorization"], seen["x-secret"], seen["cookie"], seen["user-agent"]) == (
        "1",
        "Bearer t",
        "s",
        "c=1",
        "test-client",
    )
    assert "proxy-authorization" not in seen and "te" not in seen
    assert seen["host"] == urlsplit(upstream).netloc  # the upstream's own Host, not the gateway's


def test_repeated_request_header_is_joined(gw: Gateway) -> None:
    r = gw.get("/hdr", headers=[("X-Allowed", "1"), ("X-Allowed", "2")])
    assert r.json()["headers"]["x-allowed"] == "1, 2"


def test_headers_named_in_connection_are_not_forwarded(gw: Gateway) -> None:
    r = gw.get("/hdr-all", headers=[("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"), ("X-Other", "o")])
    seen = r.json()["headers"]
    assert "x-secret" not in seen and seen["x-other"] == "o"


@pytest.mark.parametrize("path", ["/hdr-all", "/hdr-spoof"])
def test_client_forwarding_headers_are_replaced_by_the_gateways(gw: Gateway, path: str) -> None:
    spoofed = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("Forwarded", "for=6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
    ]
    seen = gw.get(path, headers=spoofed).json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-host"] == urlsplit(gw.url).netloc
    assert "6.6.6.6" not in str(seen) and "evil.example" not in str(seen) and "x-forwarded-proto" not in seen


def test_two_host_headers_are_refused(gw: Gateway) -> None:
    r = gw.get("/hdr", headers=[("Host", "evil.example")])  # http.client sends its own Host too
    assert (r.status, r.json()) == (400, {"error": "more than one Host header"})


def test_repeated_cookie_headers_are_joined_as_one_cookie_list(gw: Gateway) -> None:
    r = gw.get("/hdr-all", headers=[("Cookie", "a=1"), ("Cookie", "b=2")])
    assert r.json()["headers"]["cookie"] == "a=1; b=2"


def test_expect_100_continue_is_answered_by_the_gateway_and_never_forwarded(gw: Gateway) -> None:
    parts = urlsplit(gw.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            b"POST /post-echo-all HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\n"
        )
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim  # the client may now send its body
        sock.sendall(b"abc")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = (interim + data).partition(b"\r\n\r\n")[2].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    echoed = orjson.loads(body)
    assert "expect" not in echoed["headers"] and echoed["body"] == "abc"


def test_only_listed_query_strings_are_forwarded_multi_values_kept(gw: Gateway) -> None:
    r = gw.get("/qs?a=1&b=2&b=3&c=4&A=5")
    assert (r.status, r.json()["query"]) == (200, {"a": ["1"], "b": ["2", "3"]})


def test_star_forwards_all_query_strings(gw: Gateway) -> None:
    r = gw.get("/qs-all?a=1&b=2&b=3&c=x%26y&empty=")
    assert r.json()["query"] == {"a": ["1"], "b": ["2", "3"], "c": ["x&y"], "empty": [""]}


def test_no_input_query_strings_forwards_none(gw: Gateway) -> None:
    r = gw.get("/qs-none?a=1")
    assert (r.status, r.json()["query"]) == (200, {})


def test_url_pattern_query_gets_placeholders_and_forwarded_ones(gw: Gateway) -> None:
    r = gw.get("/qs-fixed/a%26b%3Dc?a=1&z=2")
    assert r.json()["query"] == {"id": ["a&b=c"], "fixed": ["1"], "a": ["1"]}


# --- request bodies and methods ---------------------------------------------------------------------------


def test_post_body_forwarded_byte_for_byte(gw: Gateway) -> None:
    payload = bytes(range(256)) * 400
    r = call(gw.url, "POST", "/post", {"Content-Type": "application/octet-stream"}, payload)
    assert r.status == 200
    assert r.json() == {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "length": len(payload),
        "content_type": "application/octet-stream",
    }


def test_post_json_body_text_reaches_upstream_unchanged(gw: Gateway) -> None:
    text = '{ "b": 1,  "a": "é\\u00e9" }\n'
    r = call(gw.url, "POST", "/post-echo", {"Content-Type": "application/json"}, text.encode())
    seen = r.json()
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/echo/post", text)


def test_put_with_param(gw: Gateway) -> None:
    r = call(gw.url, "PUT", "/put/7", body=b"x=1")
    assert (r.json()["method"], r.json()["path"], r.json()["body"]) == ("PUT", "/echo/put/7", "x=1")


def test_backend_method_overrides_endpoint_method(gw: Gateway) -> None:
    assert gw.get("/backend-method").json()["method"] == "POST"


def test_head_is_served_by_the_get_route_without_body(gw: Gateway) -> None:
    r = call(gw.url, "HEAD", "/cached")
    assert (r.status, r.body, completed(r), r.header("Cache-Control")) == (200, b"", "true", "public, max-age=60")


# --- placeholders -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "upstream_path"),
    [
        ("abc", "/echo/seg/abc/end"),
        ("a%20b", "/echo/seg/a%20b/end"),
        ("a%3Fb%23c", "/echo/seg/a%3Fb%23c/end"),
        ("caf%C3%A9", "/echo/seg/caf%C3%A9/end"),
        ("a:b@c", "/echo/seg/a:b@c/end"),
    ],
)
def test_placeholder_value_stays_in_its_segment(gw: Gateway, sent: str, upstream_path: str) -> None:
    r = gw.get(f"/seg/{sent}")
    assert (r.status, r.json()["path"]) == (200, upstream_path)


@pytest.mark.parametrize(
    "sent",
    [
        "..",
        "%2E%2E",
        ".",
        "%2e",
        "a%00b",
        "a%0Ab",
        "%7F",
        # an upstream that decodes %2F would read another path (issue 16)
        "a%2Fb",
        "..%2Fadmin%2Fsecret.json",
        "%2E%2E%2F%2E%2E%2Fetc",
        "a%5Cb",
        "%252E%252E",
        "..%252Fadmin",
        "%25252F",
        "%2525252E%2525252E",
    ],
)
def test_dot_segments_slashes_and_control_characters_are_refused(gw: Gateway, sent: str) -> None:
    r = gw.get(f"/seg/{sent}")
    assert (r.status, r.json()) == (400, {"error": "invalid path parameter"})


@pytest.mark.parametrize(
    ("sent", "status", "upstream_path"),
    [
        ("a%2Fb.txt", 200, "/echo/slash/a%2Fb.txt"),
        ("a%5Cb", 200, "/echo/slash/a%5Cb"),
        ("a%2F..%2Fb", 400, None),
        ("..", 400, None),
        ("a%2F%2E", 400, None),
    ],
)
def test_allow_encoded_slash_lets_slashes_through_but_never_dot_segments(
    gw: Gateway, sent: str, status: int, upstream_path: str | None
) -> None:
    r = gw.get(f"/slash/{sent}")
    assert r.status == status
    if upstream_path is not None:
        assert r.json()["path"] == upstream_path


def test_placeholders_substituted_by_name_in_any_order(gw: Gateway) -> None:
    assert gw.get("/two/first/second").json()["path"] == "/echo/second/x/first"


# --- caching, hosts, router, built-ins --------------------------------------------------------------------


def test_cache_ttl_only_on_complete_responses(gw: Gateway) -> None:
    r = gw.get("/cached")
    assert (r.status, completed(r), r.header("Cache-Control")) == (200, "true", "public, max-age=60")
    r = gw.get("/cached-partial")
    assert (r.status, completed(r), r.header("Cache-Control")) == (200, "false", None)


def test_hosts_are_used_round_robin(gw: Gateway, upstream: str, upstream2: str) -> None:
    hosts = [gw.get("/rr").json()["headers"]["host"] for _ in range(6)]
    a, b = urlsplit(upstream).netloc, urlsplit(upstream2).netloc
    assert hosts in ([a, b] * 3, [b, a] * 3), hosts


def test_router_literal_param_and_methods(gw: Gateway) -> None:
    assert gw.get("/users/me").json() == {"name": "me"}
    assert gw.get("/users/42").json()["path"] == "/echo/users/42"
    assert call(gw.url, "DELETE", "/users/42").json()["path"] == "/echo/users/42/deleted"
    # As in KrakenD's gin router: a trailing-slash mismatch is redirected, 301 for GET and 307 for the others.
    r = gw.get("/users/42/?a=1")
    assert (r.status, r.header("Location")) == (301, "/users/42?a=1")
    assert r.header("Content-Type") == "text/html; charset=utf-8" and b"Moved Permanently" in r.body
    r = call(gw.url, "DELETE", "/users/42/")
    assert (r.status, r.header("Location"), r.body) == (307, "/users/42", b"")
    assert gw.get("/USERS/ME").header("Location") == "/users/me"  # fixed path: case-insensitive literals


def test_unknown_path_is_404(gw: Gateway) -> None:
    r = gw.get("/nope/nothing")
    assert (r.status, r.body, r.header("Allow")) == (404, b"404 page not found", None)
    assert (r.header("Content-Type"), r.header("X-KrakenD-Completed")) == ("text/plain", "false")
    assert r.header("X-Request-Id")
    assert r.header("X-KrakenD") == f"Version {lambdagate.__version__}"


def test_wrong_method_is_405_with_allow(gw: Gateway) -> None:
    r = call(gw.url, "POST", "/merge/alice")
    assert (r.status, r.body, r.header("Allow")) == (405, b"405 method not allowed", "GET")
    assert r.header("Content-Type") == "text/plain"
    r = call(gw.url, "PATCH", "/users/1")
    assert (r.status, r.header("Allow")) == (405, "DELETE, GET")


def test_health(gw: Gateway) -> None:
    r = gw.get("/__health")
    body = r.json()
    assert (r.status, body["status"], r.header("Content-Type")) == (200, "ok", "application/json; charset=utf-8")
    assert isinstance(body["uptime_s"], (int, float)) and body["uptime_s"] >= 0
    assert call(gw.url, "HEAD", "/__health").status == 200


def test_echo_is_off_without_debug(gw: Gateway) -> None:
    assert gw.get("/__echo/anything").status == 404


def test_request_ids_are_unique_and_logged(gw: Gateway) -> None:
    ids = [gw.get("/merge/bob").header("X-Request-Id") for _ in range(3)] + [gw.get("/nope").header("X-Request-Id")]
    assert len(set(ids)) == 4 and all(ids)
    log = gw.wait_log(f"request_id={ids[3]}")
    for rid in ids[:3]:
        assert re.search(
            rf"lambdagate\.access: GET /merge/bob 200 \d+\.\d+ms 102B route=/merge/{{user}} "
            rf'client=127\.0\.0\.1 request_id={re.escape(rid)}( backend="GET [^"]+" success [\d.]+ms;){{3}}$',
            log,
            re.M,
        ), log
    assert re.search(
        rf"GET /nope 404 \d+\.\d+ms \d+B route=- client=127\.0\.0\.1 request_id={re.escape(ids[3])}$", log, re.M
    )


def test_one_access_line_per_request(gw: Gateway) -> None:
    rid = gw.get("/collection").header("X-Request-Id")
    log = gw.wait_log(f"request_id={rid}")
    assert len([line for line in log.splitlines() if f"request_id={rid}" in line]) == 1


# --- a second gateway: --debug, JSON logs, two workers, service-level defaults, warnings -------------------


@pytest.fixture(scope="module")
def debug_gw(start_module_gateway, upstream: str) -> Gateway:
    config = {
        "version": 3,
        "host": [upstream],
        "cache_ttl": "30s",
        "plugin": {"folder": "/x"},
        "extra_config": {"telemetry/influx": {"db": "x"}},
        "endpoints": [
            {"endpoint": "/svc", "backend": [{"url_pattern": "/json/s", "allow": ["name"]}]},
            {"endpoint": "/bad", "backend": [{"url_pattern": "/status/500"}]},
        ],
    }
    return start_module_gateway(config, "--debug", "--log-format", "json", "--workers", "2")


def json_log(gw: Gateway) -> list[dict]:
    # granian's own start-up lines are not ours; every lambdagate line must be JSON.
    lines = [line for line in gw.log().splitlines() if not line.startswith("[") and line.strip()]
    return [orjson.loads(line) for line in lines]


def test_service_level_host_and_cache_ttl(debug_gw: Gateway) -> None:
    r = debug_gw.get("/svc")
    assert (r.status, r.json(), r.header("Cache-Control")) == (200, {"name": "s"}, "public, max-age=30")


def test_echo_with_debug(debug_gw: Gateway) -> None:
    r = call(debug_gw.url, "POST", "/__echo/some/path?x=1&x=2", {"X-Test": "yes"}, b"hello")
    body = r.json()
    assert r.status == 200
    assert (body["method"], body["path"], body["query"], body["body"]) == (
        "POST",
        "/__echo/some/path",
        {"x": ["1", "2"]},
        "hello",
    )
    assert body["headers"]["x-test"] == ["yes"]


def test_log_format_json(debug_gw: Gateway) -> None:
    rid = debug_gw.get("/svc").header("X-Request-Id")
    bad = debug_gw.get("/bad").header("X-Request-Id")
    debug_gw.wait_log(f"request_id={bad}")
    debug_gw.wait_log(f"request_id={rid}")
    records = json_log(debug_gw)
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    [access] = [r for r in records if r["logger"] == "lambdagate.access" and r["request_id"] == rid]
    assert access["level"] == "INFO" and access["message"] == "GET /svc 200"
    assert (access["route"], access["status"], access["backends"][0]["outcome"]) == ("/svc", 200, "success")
    [failure] = [r for r in records if r["logger"] == "lambdagate.pipeline" and bad in r["message"]]
    assert failure["level"] == "WARNING" and "invalid status code 500" in failure["message"]


def test_config_warnings_logged_once_at_start(debug_gw: Gateway) -> None:
    # Once for the process, not once per worker.
    messages = [r["message"] for r in json_log(debug_gw)]
    assert sum(m.startswith("config plugin: accepted, nothing is loaded") for m in messages) == 1
    assert messages.count('config extra_config["telemetry/influx"]: namespace not supported, ignored') == 1


def test_broken_config_does_not_start(tmp_path: Path) -> None:
    path = tmp_path / "krakend.json"
    path.write_bytes(
        orjson.dumps(
            {
                "version": 3,
                "endpoints": [
                    {
                        "endpoint": "/users/{user}",
                        "backend": [{"host": ["http://127.0.0.1:1"], "url_pattern": "/u/{id}"}],
                    }
                ],
            }
        )
    )
    proc = Process(
        python_module("lambdagate", "run", "-c", str(path), "--port", str(free_port()), "--host", "127.0.0.1"),
        tmp_path / "log",
    )
    assert proc.proc.wait(30) == 1
    proc.stop()
    assert "endpoints[0].backend[0].url_pattern: placeholder {id} is not in endpoint /users/{user}" in proc.log()


def test_host_with_a_path_is_joined_with_url_pattern(upstream, start_gateway):
    # KrakenD joins host and url_pattern, so "http://svc/echo" + "/sub" calls /echo/sub.
    gw = start_gateway(
        {
            "version": 3,
            "endpoints": [{"endpoint": "/joined", "backend": [{"host": [f"{upstream}/echo/"], "url_pattern": "/sub"}]}],
        }
    )
    with urllib.request.urlopen(f"{gw.url}/joined", timeout=10) as resp:
        assert json.loads(resp.read())["path"] == "/echo/sub"
