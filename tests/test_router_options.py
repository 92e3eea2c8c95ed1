"""What a client gets from the router, as KrakenD's gin router gives it, and the `router` namespace's options.

In-process (tests/support/asgi.py): the real ASGI app and request stack with fake backends. The real-process checks
of the same replies are in tests/test_pipeline_http.py (404, 405, redirects) and tests/test_server_tls.py.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

import lambdagate
from lambdagate.config import LoadOptions, server_options, validate_document
from lambdagate.config.router_options import router_options
from lambdagate.errors import ConfigError
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run
from tests.support.gateway import Gateway, launch_gateway
from tests.support.procs import free_port

VERSION = f"Version {lambdagate.__version__}"


def endpoint(path: str, method: str = "GET") -> dict:
    return {"endpoint": path, "method": method, "backend": [{"host": ["http://fake"], "url_pattern": "/b"}]}


def config(*endpoints: dict, router: dict | None = None, **kw) -> dict:
    extra = kw.pop("extra_config", {})
    if router is not None:
        extra["router"] = router
    return {"version": 3, "timeout": "1s", "endpoints": list(endpoints), "extra_config": extra, **kw}


FAKES = FakeBackends({"/b": returning({"ok": True})})
ROUTES = (endpoint("/users"), endpoint("/users", "POST"), endpoint("/items/"), endpoint("/Docs/{id}"))


def test_misses_are_gins_plain_text_with_the_krakend_header() -> None:
    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/nope")
        assert (r.status, r.body, r.header("content-type")) == (404, b"404 page not found", "text/plain")
        assert (r.header("x-krakend"), r.header("x-krakend-completed")) == (VERSION, "false")
        r = await gw.request("DELETE", "/users")
        assert (r.status, r.body, r.header("content-type")) == (405, b"405 method not allowed", "text/plain")
        assert r.header("allow") == "GET, POST"
        ok = await gw.request("GET", "/users")
        assert (ok.status, ok.header("x-krakend"), ok.header("x-krakend-completed")) == (200, VERSION, "true")
        assert (await gw.request("GET", "/__health")).header("x-krakend") == VERSION

    run(config(*ROUTES), FAKES, scenario)


def test_trailing_slash_and_fixed_path_redirects() -> None:
    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/users/?q=1&r=%20")
        assert (r.status, r.header("location"), r.header("content-type")) == (
            301,
            "/users?q=1&r=%20",
            "text/html; charset=utf-8",
        )
        assert r.body == b'<a href="/users?q=1&amp;r=%20">Moved Permanently</a>.\n\n'
        r = await gw.request("POST", "/users/")
        assert (r.status, r.header("location"), r.body, r.header("content-type")) == (307, "/users", b"", None)
        r = await gw.request("HEAD", "/items")
        assert (r.status, r.header("location"), r.body) == (307, "/items/", b"")
        r = await gw.request("GET", "/ITEMS")  # fixed path: case folded, trailing slash fixed too
        assert (r.status, r.header("location")) == (301, "/items/")
        r = await gw.request("GET", "/a/..//docs/XyZ")  # cleaned; the parameter keeps its case
        assert (r.status, r.header("location")) == (301, "/Docs/XyZ")
        # No PUT route: no redirect, and "/users/" is no route of another method either (gin's 404, not 405).
        assert (await gw.request("PUT", "/users/")).status == 404
        assert (await gw.request("GET", "//evil.example/")).status == 404  # never a scheme-relative Location

    run(config(*ROUTES), FAKES, scenario)


def test_redirects_can_be_turned_off_and_extra_slashes_removed() -> None:
    router = {"disable_redirect_trailing_slash": True, "disable_redirect_fixed_path": True}

    async def off(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/users/")).status == 404
        assert (await gw.request("GET", "/USERS")).status == 404

    run(config(*ROUTES, router=router), FAKES, off)

    async def removed(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "//users")
        assert (r.status, r.json()) == (200, {"ok": True})  # routed as /users, no redirect
        assert (await gw.request("GET", "/x/../Docs//7")).status == 200

    run(config(*ROUTES, router={"remove_extra_slash": True}), FAKES, removed)


def test_method_not_allowed_off_json_errors_and_error_bodies() -> None:
    async def no_405(gw: InProcessGateway) -> None:
        r = await gw.request("DELETE", "/users")
        assert (r.status, r.body, r.header("allow")) == (404, b"404 page not found", None)

    run(config(*ROUTES, router={"disable_handle_method_not_allowed": True}), FAKES, no_405)

    async def json_errors(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/nope")
        assert (r.status, r.json(), r.header("content-type")) == (
            404,
            {"error": "not found"},
            "application/json; charset=utf-8",
        )
        r = await gw.request("DELETE", "/users")
        assert (r.status, r.json(), r.header("allow")) == (405, {"error": "method not allowed"}, "GET, POST")

    run(config(*ROUTES, extra_config={"lambdagate/server": {"error_format": "json"}}), FAKES, json_errors)

    async def bodies(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/nope")).json() == {"error": "Not Found", "status": 404}
        assert (await gw.request("DELETE", "/users")).body == b"405 method not allowed"  # only 404 was given

    run(config(*ROUTES, router={"error_body": {"404": {"error": "Not Found", "status": 404}}}), FAKES, bodies)


def test_hide_version_header_auto_options_and_health() -> None:
    router = {"hide_version_header": True, "auto_options": True, "health_path": "/healthz"}

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("OPTIONS", "/users")
        assert (r.status, r.header("allow"), r.body) == (200, "GET, POST", b"")
        assert r.header("x-krakend") == "Version undefined"
        assert (await gw.request("OPTIONS", "/Docs/1")).header("allow") == "GET"
        assert (await gw.request("GET", "/healthz")).json()["status"] == "ok"
        assert (await gw.request("GET", "/__health")).status == 404

    run(config(*ROUTES, router=router), FAKES, scenario)

    async def no_health(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/__health")).status == 404
        assert (await gw.request("OPTIONS", "/users")).status == 405  # auto_options is off by default

    run(config(*ROUTES, router={"disable_health": True}), FAKES, no_health)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_debug_endpoint_pongs_any_method(method: str) -> None:
    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request(method, "/__debug/some/backend?x=1", body=b'{"a": 1}')
        assert (r.status, r.body) == (200, b"" if method == "HEAD" else b'{"message":"pong"}')
        assert (await gw.request("GET", "/__echo/x")).status == 404  # echo_endpoint is separate

    run(config(*ROUTES, debug_endpoint=True), FAKES, scenario)


def test_echo_endpoint_without_debug_and_both_with_debug() -> None:
    async def echo_only(gw: InProcessGateway) -> None:
        r = await gw.request("POST", "/__echo/a?b=1", body=b"hi")
        assert (r.status, r.json()["body"], r.json()["query"]) == (200, "hi", {"b": ["1"]})
        assert (await gw.request("GET", "/__debug/x")).status == 404

    run(config(*ROUTES, echo_endpoint=True), FAKES, echo_only)

    async def debug_mode(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/__debug/x")).json() == {"message": "pong"}
        assert (await gw.request("GET", "/__echo/x")).status == 200

    run(config(*ROUTES), FAKES, debug_mode, debug=True)


def test_client_ip_from_trusted_proxies_only() -> None:
    fakes = FakeBackends({"/b": returning({"ok": True})})
    router = {"forwarded_by_client_ip": True, "trusted_proxies": ["10.0.0.0/8"]}

    async def scenario(gw: InProcessGateway) -> None:
        xff = [("X-Forwarded-For", "203.0.113.9, 10.1.1.1")]
        await gw.request("GET", "/users", xff, client="10.0.0.2")  # trusted peer: rightmost untrusted address
        await gw.request("GET", "/users", xff, client="198.51.100.7")  # untrusted peer: its own address
        await gw.request("GET", "/users", [("X-Forwarded-For", "junk, 10.1.1.1")], client="10.0.0.2")
        await gw.request("GET", "/users", [("X-Real-IP", "203.0.113.5")], client="10.0.0.2")
        seen = [req.client_ip for req in fakes.seen["/b"]]
        assert seen == ["203.0.113.9", "198.51.100.7", "10.0.0.2", "203.0.113.5"]

    run(config(*ROUTES, router=router), fakes, scenario)


def test_client_ip_headers_are_ignored_without_trusted_proxies() -> None:
    fakes = FakeBackends({"/b": returning({"ok": True})})

    async def scenario(gw: InProcessGateway) -> None:
        await gw.request("GET", "/users", [("X-Forwarded-For", "203.0.113.9")], client="10.0.0.2")
        assert fakes.seen["/b"][0].client_ip == "10.0.0.2"

    run(config(*ROUTES, router={"forwarded_by_client_ip": True}), fakes, scenario)


# --- config -------------------------------------------------------------------------------------------------


def warnings_of(doc: dict) -> list[str]:
    return [str(w) for w in validate_document(doc, LoadOptions()).warnings]


def errors_of(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_document(doc, LoadOptions())
    return [str(i) for i in info.value.issues]


def test_router_namespace_is_read_under_lura_s_old_name_too() -> None:
    doc = config(endpoint("/a"), extra_config={"github_com/luraproject/lura/router/gin": {"return_error_msg": True}})
    loaded = validate_document(doc, LoadOptions())
    assert router_options(loaded.service).return_error_msg is True
    assert any("old name of `router`" in str(w) for w in loaded.warnings)


def test_router_options_warn_where_lambdagate_differs() -> None:
    router = {
        "return_error_msg": True,
        "forwarded_by_client_ip": True,
        "disable_path_decoding": True,
        "app_engine": True,
        "use_h2c": True,
        "max_multipart_memory": 1024,
        "logger_skip_paths": ["/__health"],
        "something_else": 1,
    }
    found = warnings_of(config(endpoint("/a"), router=router))
    for key in (
        "return_error_msg",
        "forwarded_by_client_ip",
        "disable_path_decoding",
        "app_engine",
        "use_h2c",
        "max_multipart_memory",
    ):
        assert any(w.startswith(f"extra_config.router.{key}: ") for w in found), key
    assert "extra_config.router.something_else: not supported, ignored" in found
    assert not any("logger_skip_paths" in w for w in found)


@pytest.mark.parametrize(
    ("router", "expected"),
    [
        ({"health_path": "health"}, 'extra_config.router.health_path: must start with "/", e.g. "/health"'),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "is no IP address or CIDR range"),
        ({"auto_options": "yes"}, "extra_config.router.auto_options: Input should be a valid boolean"),
        ({"health_path": "/a"}, "/a is a GET endpoint's path too: choose another health_path"),
    ],
)
def test_bad_router_options_are_refused(router: dict, expected: str) -> None:
    errors = errors_of(config(endpoint("/a"), router=router))
    assert len(errors) == 1 and expected in errors[0], errors


def test_a_trailing_slash_makes_another_route() -> None:
    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a")).status == 200
        assert (await gw.request("GET", "/a/")).status == 200

    run(config(endpoint("/a"), endpoint("/a/")), FAKES, scenario)


def test_top_level_server_timeouts_and_their_precedence() -> None:
    doc = config(endpoint("/a"), read_timeout="5s", read_header_timeout="2s", idle_timeout="0s", write_timeout="9s")
    loaded = validate_document(doc, LoadOptions())
    options = server_options(loaded.service)
    assert (options.read_timeout, options.read_header_timeout, options.idle_timeout) == (5.0, 2.0, 60.0)
    found = [str(w) for w in loaded.warnings]
    assert any(w.startswith("write_timeout: accepted, not applied") for w in found)
    assert any(w.startswith("idle_timeout: 0s (no limit in KrakenD) keeps lambdagate's default") for w in found)
    doc["extra_config"] = {"lambdagate/server": {"read_timeout": "7s"}}
    loaded = validate_document(doc, LoadOptions())
    assert server_options(loaded.service).read_timeout == 7.0
    assert any("read_timeout: also set at the service's top level" in str(w) for w in loaded.warnings)


def test_error_format_is_text_or_json() -> None:
    errors = errors_of(config(endpoint("/a"), extra_config={"lambdagate/server": {"error_format": "xml"}}))
    assert errors and "error_format" in errors[0]


# --- real processes -------------------------------------------------------------------------------------------


def _access_lines(gateway: Gateway) -> list[str]:
    return [line for line in gateway.log().splitlines() if "lambdagate.access:" in line]


def test_debug_endpoint_as_a_backend_and_access_log_skips(tmp_path: Path) -> None:
    port = free_port()
    doc = config(
        {"endpoint": "/ping", "backend": [{"host": [f"http://127.0.0.1:{port}"], "url_pattern": "/__debug/ping"}]},
        router={"logger_skip_paths": ["/__health", "/__debug/ping"]},
        debug_endpoint=True,
    )
    gateway = launch_gateway(doc, tmp_path, port=port)
    try:
        with urllib.request.urlopen(f"{gateway.url}/ping", timeout=5) as r:
            assert (r.status, json.loads(r.read()), r.headers["X-KrakenD"]) == (200, {"message": "pong"}, VERSION)
        deadline = time.monotonic() + 10
        while not _access_lines(gateway) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = _access_lines(gateway)
        assert len(lines) == 1 and "GET /ping 200" in lines[0], lines  # neither /__health nor the debug call
    finally:
        gateway.process.stop()


def test_disable_access_log(tmp_path: Path) -> None:
    gateway = launch_gateway(config(endpoint("/a"), router={"disable_access_log": True}), tmp_path)
    try:
        for _ in range(3):
            with urllib.request.urlopen(f"{gateway.url}/__health", timeout=5) as r:
                assert r.status == 200
    finally:
        gateway.process.stop()
    assert _access_lines(gateway) == [] and "serving 1 endpoints" in gateway.log()
