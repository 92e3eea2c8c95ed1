"""The request path in-process: real stack, fake backends (tests/support/asgi.py). Milliseconds per test."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import BackendError, ConfigError
from lambdagate.proxy import ProxyRequest, ProxyResponse
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run


def endpoint(path: str, *patterns: str, **kw) -> dict:
    return {"endpoint": path, "backend": [{"host": ["http://fake"], "url_pattern": p} for p in patterns], **kw}


def config(*endpoints: dict, **kw) -> dict:
    return {"version": 3, "timeout": "1s", "endpoints": list(endpoints), **kw}


def test_merge_order_is_config_order_and_later_backends_win() -> None:
    fakes = FakeBackends({"/a": returning({"x": "a", "a": 1}, delay=0.02), "/b": returning({"x": "b", "b": 2})})

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/m")
        assert (r.status, r.json(), r.header("x-krakend-completed")) == (200, {"x": "b", "a": 1, "b": 2}, "true")

    run(config(endpoint("/m", "/a", "/b")), fakes, scenario)


def test_a_failed_backend_makes_the_merge_partial_and_all_failed_is_500() -> None:
    fakes = FakeBackends({"/ok": returning({"a": 1}), "/bad": returning(error=BackendError("boom", cause="test"))})

    async def scenario(gw: InProcessGateway) -> None:
        partial = await gw.request("GET", "/partial")
        assert (partial.status, partial.json(), partial.header("x-krakend-completed")) == (200, {"a": 1}, "false")
        failed = await gw.request("GET", "/failed")
        assert (failed.status, failed.json()) == (500, {"error": "all backends failed"})

    run(config(endpoint("/partial", "/ok", "/bad"), endpoint("/failed", "/bad", "/bad")), fakes, scenario)


def test_a_late_backend_is_cut_at_the_deadline_and_the_rest_is_served() -> None:
    fakes = FakeBackends({"/fast": returning({"a": 1}), "/slow": returning({"b": 2}, delay=5)})

    async def scenario(gw: InProcessGateway) -> None:
        started = time.monotonic()
        r = await gw.request("GET", "/d")
        assert time.monotonic() - started < 1.0
        assert (r.status, r.json(), r.header("x-krakend-completed")) == (200, {"a": 1}, "false")

    run(config(endpoint("/d", "/fast", "/slow", timeout="200ms")), fakes, scenario)


def test_unknown_path_is_404_and_wrong_method_405_with_allow() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        missing = await gw.request("GET", "/nope")
        assert (missing.status, missing.body, missing.header("content-type")) == (
            404,
            b"404 page not found",
            "text/plain",
        )
        wrong = await gw.request("DELETE", "/a")
        assert (wrong.status, wrong.header("allow")) == (405, "GET, POST")
        health = await gw.request("POST", "/__health")
        assert (health.status, health.header("allow")) == (405, "GET, HEAD")
        assert (await gw.request("GET", "/__echo/x")).status == 404  # debug only

    run(config(endpoint("/a", "/a"), endpoint("/a", "/a", method="POST")), fakes, scenario)


def test_every_reply_has_a_request_id_the_clients_when_plain() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        kept = await gw.request("GET", "/a", [("X-Request-Id", "abc-1")])
        replaced = await gw.request("GET", "/a", [("X-Request-Id", "bad id\x01")])
        missing = await gw.request("GET", "/nope")
        assert kept.header("x-request-id") == "abc-1"
        assert replaced.header("x-request-id") not in (None, "bad id\x01")
        assert missing.header("x-request-id")
        assert fakes.seen["/a"][0].request_id == "abc-1"

    run(config(endpoint("/a", "/a")), fakes, scenario)


def test_only_allowed_headers_and_query_strings_reach_the_backend() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    headers = [
        ("X-Allowed", "1"),
        ("X-Secret", "s"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("Expect", "100-continue"),
        ("Connection", "x-allowed"),
    ]

    async def scenario(gw: InProcessGateway) -> None:
        await gw.request("GET", "/f?a=1&b=2&c=3&a=4", headers)
        await gw.request("GET", "/all?a=1", headers)
        listed, star = fakes.seen["/a"]
        assert listed.headers == {"cookie": "a=1; b=2"}  # X-Allowed is named in Connection: dropped
        assert listed.query == [("a", "1"), ("a", "4")]
        assert star.headers == {"x-secret": "s", "cookie": "a=1; b=2"}
        assert star.query == [("a", "1")]

    run(
        config(
            endpoint(
                "/f",
                "/a",
                input_headers=["X-Allowed", "Cookie", "X-Forwarded-For", "Expect"],
                input_query_strings=["a"],
            ),
            endpoint("/all", "/a", input_headers=["*"], input_query_strings=["*"]),
        ),
        fakes,
        scenario,
    )


def test_without_input_headers_only_content_type_reaches_the_backend() -> None:
    # Lura's default (server.HeadersToSend): a backend can parse the body it gets.
    fakes = FakeBackends({"/a": returning({"a": 1})})
    headers = [("Content-Type", "application/json"), ("Authorization", "Bearer t"), ("X-Other", "1")]

    async def scenario(gw: InProcessGateway) -> None:
        await gw.request("POST", "/p", headers, b'{"a": 1}')
        await gw.request("POST", "/listed", headers, b'{"a": 1}')
        default, listed = fakes.seen["/a"]
        assert default.headers == {"content-type": "application/json"}
        assert default.body == b'{"a": 1}'
        assert listed.headers == {"x-other": "1"}  # a list replaces the default

    run(
        config(
            endpoint("/p", "/a", method="POST"),
            endpoint("/listed", "/a", method="POST", input_headers=["X-Other"]),
        ),
        fakes,
        scenario,
    )


@pytest.mark.parametrize("value", ["..%2Fadmin", "a%2Fb", "%252F", "%2E%2E", "a%5Cb", "x%00"])
def test_a_parameter_that_could_leave_its_segment_never_reaches_a_backend(value: str) -> None:
    fakes = FakeBackends({"/u/{id}": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", f"/users/{value}")
        assert (r.status, r.json()) == (400, {"error": "invalid path parameter"})
        assert not fakes.seen["/u/{id}"]

    run(config(endpoint("/users/{id}", "/u/{id}")), fakes, scenario)


def test_body_limits_and_late_bodies_are_refused_by_the_endpoint() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    limits = {"lambdagate/server": {"max_body_bytes": 10, "read_timeout": "100ms"}}

    async def scenario(gw: InProcessGateway) -> None:
        big = await gw.request("POST", "/p", chunks=[b"12345", b"678901"])
        assert (big.status, big.json()) == (413, {"error": "request body larger than 10 bytes"})
        declared = await gw.request("POST", "/p", [("Content-Length", "11")], b"x" * 11)
        assert declared.status == 413  # refused by admission, before the body is read
        late = await gw.request("POST", "/p", chunks=[b"1", None])  # the rest of the body never comes
        assert (late.status, late.json()) == (408, {"error": "request body not received in time"})
        ok = await gw.request("POST", "/p", body=b"hello")
        assert ok.status == 200 and fakes.seen["/a"][-1].body == b"hello"

    run(config(endpoint("/p", "/a", method="POST"), extra_config=limits), fakes, scenario)


def test_an_unexpected_exception_is_a_plain_500_and_the_worker_keeps_serving() -> None:
    async def crash(req: ProxyRequest) -> ProxyResponse:
        raise RuntimeError("secret detail")

    fakes = FakeBackends({"/crash": crash, "/ok": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/c")
        assert r.status == 500 and b"secret" not in r.body
        assert (await gw.request("GET", "/ok")).status == 200

    run(config(endpoint("/c", "/crash"), endpoint("/ok", "/ok")), fakes, scenario)


def test_admission_refuses_too_many_headers_before_routing() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    limits = {"lambdagate/server": {"max_header_count": 3}}

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a", [(f"x-{i}", "v") for i in range(4)])
        assert (r.status, r.json()) == (431, {"error": "request headers too large"})
        assert r.header("x-request-id") and not fakes.seen["/a"]

    run(config(endpoint("/a", "/a"), extra_config=limits), fakes, scenario)


def test_an_unimplemented_guard_is_refused_at_load_time() -> None:
    doc = config(endpoint("/a", "/a", extra_config={"auth/api-keys": {"roles": ["admin"]}}))
    with pytest.raises(ConfigError) as err:
        validate_document(doc, LoadOptions())
    assert any(
        "auth/api-keys" in str(issue) and issue.path.startswith("endpoints[0].extra_config")
        for issue in err.value.issues
    )


def test_cache_ttl_is_private_on_endpoints_that_forward_credentials() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        public = await gw.request("GET", "/public")
        assert public.header("cache-control") == "public, max-age=60"
        for path in ("/auth", "/cookie", "/star"):
            assert (await gw.request("GET", path)).header("cache-control") == "private, max-age=60", path

    run(
        config(
            endpoint("/public", "/a", cache_ttl="1m", input_headers=["X-Lang"]),
            endpoint("/auth", "/a", cache_ttl="1m", input_headers=["authorization"]),
            endpoint("/cookie", "/a", cache_ttl="1m", input_headers=["Cookie"]),
            endpoint("/star", "/a", cache_ttl="1m", input_headers=["*"]),
        ),
        fakes,
        scenario,
    )


def _leaves_its_segment(value: str, allow_slash: bool) -> bool:
    """The rule, written plainly: decode until nothing changes (at most 4 rounds) and look at every stage."""
    from urllib.parse import unquote

    for _ in range(5):
        if any(ord(c) < 0x20 or c == "\x7f" for c in value):
            return True
        parts = value.replace("\\", "/").split("/")
        if (not allow_slash and len(parts) > 1) or any(p in (".", "..") for p in (parts if allow_slash else [value])):
            return True
        decoded = unquote(value)
        if decoded == value:
            return False
        value = decoded
    return True


@given(st.text(alphabet=st.sampled_from(list("ab.%2F5C0E/\\\x00\x7f")), max_size=12), st.booleans())
def test_the_fast_path_of_the_parameter_check_agrees_with_the_rule(value: str, allow_slash: bool) -> None:
    from lambdagate.front.request import unsafe_param

    assert unsafe_param(value, allow_slash) == _leaves_its_segment(value, allow_slash)
