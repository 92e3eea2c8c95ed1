"""What a Lua script's request changes reach: the real HTTP call a backend makes (tests/support/upstream.py /echo
shows it), at backend level (`modifier/lua-backend`, the call itself) and endpoint level (`modifier/lua-proxy`,
what every backend builds its call from). One real `lambdagate run`.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import orjson
import pytest

from lambdagate.lua.backend_call import BackendCall
from tests.support.gateway import launch_gateway

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there, a call that goes there fails

BACKEND_PRE = """
local r = request.load()
r:headers("X-Seen-Method", r:method())
r:headers("X-Seen-Path", r:path())
r:headers("X-Seen-Url", r:url())
r:headers("X-Seen-Query", r:query())
local u = r:headers("X-Url")
if u ~= "" then r:url(u) return end
if r:headers("X-Change") == "" then return end
r:method("put")
r:path("/echo/changed/" .. r:params("Id") .. "/a?b")
r:query("x=1&y=2")
r:headers("X-New", "v")
r:body("new body")
"""

PROXY_PRE = """
local r = request.load()
r:method("PUT")
r:path("/ignored")
r:url("http://127.0.0.1:9/ignored")
r:query("x=1")
r:params("Id", "99")
r:headers("X-New", "v")
r:body(r:body() .. "!")
"""


def gateway_config(upstream: str) -> dict:
    lua_backend = {"modifier/lua-backend": {"pre": BACKEND_PRE}}
    return {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/b/{id}",
                "input_query_strings": ["q"],
                "input_headers": ["X-Url", "X-Change"],
                "backend": [
                    {"host": [upstream], "url_pattern": "/echo/orig/{id}?fixed=1", "extra_config": lua_backend}
                ],
            },
            {
                "endpoint": "/dead",
                "input_query_strings": ["q"],
                "input_headers": ["X-Url"],
                "backend": [{"host": [DEAD], "url_pattern": "/echo/dead", "extra_config": lua_backend}],
            },
            {
                "endpoint": "/rotate",
                "backend": [
                    {
                        "host": [upstream, upstream.replace("127.0.0.1", "localhost")],
                        "url_pattern": "/echo/rotate",
                        "extra_config": lua_backend,
                    }
                ],
            },
            {
                "endpoint": "/p/{id}",
                "method": "POST",
                "input_query_strings": ["q"],
                "extra_config": {"modifier/lua-proxy": {"pre": PROXY_PRE}},
                "backend": [{"host": [upstream], "url_pattern": "/echo/p/{id}"}],
            },
        ],
    }


def call(url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {}, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory):
    gateway = launch_gateway(gateway_config(upstream), tmp_path_factory.mktemp("gw"))
    yield gateway
    gateway.process.stop()


def test_backend_script_sees_the_call_krakend_builds(gw, upstream: str) -> None:
    status, seen = call(gw.url + "/b/7?q=v&drop=1")
    assert status == 200, seen
    headers = seen["headers"]
    assert headers["x-seen-method"] == "GET" and headers["x-seen-path"] == "/echo/orig/7"
    assert headers["x-seen-url"] == f"{upstream}/echo/orig/7?fixed=1&q=v" and headers["x-seen-query"] == "q=v"
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/echo/orig/7", {"fixed": ["1"], "q": ["v"]})


def test_backend_script_changes_method_path_query_headers_and_body(gw) -> None:
    status, seen = call(gw.url + "/b/7?q=v", {"X-Change": "1"})
    assert status == 200, seen
    assert seen["method"] == "PUT" and seen["path"] == "/echo/changed/7/a%3Fb"  # a path cannot add a query
    assert seen["query"] == {"fixed": ["1"], "x": ["1"], "y": ["2"]}  # the url_pattern's query stays
    assert seen["headers"]["x-new"] == "v" and seen["body"] == "new body"


def test_backend_script_url_sends_the_call_anywhere_exactly(gw, upstream: str) -> None:
    status, seen = call(gw.url + "/dead?q=v", {"X-Url": f"{upstream}/echo/elsewhere?z=9"})
    assert status == 200, seen  # the configured host is dead: only the script's URL answers
    assert seen["path"] == "/echo/elsewhere" and seen["query"] == {"z": ["9"]}  # the client's query is not added
    assert call(gw.url + "/dead")[0] == 500  # without the script's URL the call goes to the configured host


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1/x", "/echo/relative", "http://[::1/x", "http:///nohost"])
def test_backend_script_url_must_be_an_absolute_http_url(gw, bad: str) -> None:
    assert call(gw.url + "/b/1", {"X-Url": bad}) == (500, {"error": "internal server error"})
    assert "request:url()" in gw.log()


def test_backend_script_sees_the_host_its_call_goes_to(gw) -> None:
    """Round robin moves once per call: the URL a script reads is the one called."""
    hosts = set()
    for _ in range(4):
        status, seen = call(gw.url + "/rotate")
        assert status == 200, seen
        shown = seen["headers"]["x-seen-url"].split("/")[2]
        assert shown == seen["headers"]["host"]
        hosts.add(shown.split(":")[0])
    assert hosts == {"127.0.0.1", "localhost"}


def test_proxy_script_changes_reach_every_backend_but_its_url_is_krakends(gw) -> None:
    """modifier/lua-proxy: query, params, headers and body reach the call; each backend keeps its own method and
    url_pattern (KrakenD's request builder and balancer make them after the script), with a warning."""
    status, seen = call(gw.url + "/p/7?q=v", body=b"payload")
    assert status == 200, seen
    assert seen["method"] == "POST" and seen["path"] == "/echo/p/99" and seen["query"] == {"x": ["1"]}
    assert seen["headers"]["x-new"] == "v" and seen["body"] == "payload!"
    assert "request:url() set in modifier/lua-proxy does not change the backend calls" in gw.log()


@pytest.mark.parametrize(
    ("path", "sent"),
    [("x", "/x"), ("/a?b#c", "/a%3Fb%23c"), ("/100%", "/100%25"), ("/%41b", "/%41b"), ("/é", "/%C3%A9")],
)
def test_a_script_path_is_encoded_as_a_path(path: str, sent: str) -> None:
    target = BackendCall("GET", "http://h", "/p", "k=1")
    target.set_path(path)
    assert target.url([("q", "a b")]) == f"http://h{sent}?k=1&q=a+b"


@pytest.mark.parametrize("bad", ["GET POST", "G\r\nX", ""])
def test_a_script_method_must_be_a_token(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid method"):
        BackendCall("GET", "http://h", "/", "").set_method(bad)
