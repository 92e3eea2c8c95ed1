"""The proxy namespace and backend/http end to end: a real `lambdagate run` in front of a real HTTP upstream
(tests/support/upstream.py) on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from lambdagate.backends.http import reply_decoder
from lambdagate.backends.reply_headers import NOT_PASSED, HeaderLimits
from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import BackendError
from tests.support.gateway import Gateway


def get(gw: Gateway, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(gw.url + path, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def backend(upstream: str, pattern: str, **kw) -> dict:
    return {"host": [upstream], "url_pattern": pattern, **kw}


def http_ns(**options) -> dict:
    return {"extra_config": {"backend/http": options}}


def proxy_config(upstream: str) -> dict:
    seq = {"extra_config": {"proxy": {"sequential": True}}}
    return {
        "version": 3,
        "timeout": "3s",
        "endpoints": [
            {
                "endpoint": "/seq/{name}",
                "backend": [
                    backend(upstream, "/json/{name}", allow=["name", "nested"]),
                    backend(upstream, "/echo/{resp0_name}/{resp0_nested.b.c}?n={resp0_nested.a}", group="echo"),
                ],
                **seq,
            },
            {
                "endpoint": "/details",
                "backend": [backend(upstream, "/status/404", **http_ns(return_error_details="up"))],
            },
            {
                "endpoint": "/details-merged",
                "backend": [
                    backend(upstream, "/json/ok", allow=["name"]),
                    backend(upstream, "/status/503", group="never", **http_ns(return_error_details="down")),
                ],
            },
            {"endpoint": "/code", "backend": [backend(upstream, "/status/418", **http_ns(return_error_code=True))]},
            {"endpoint": "/code-204", "backend": [backend(upstream, "/status/204", **http_ns(return_error_code=True))]},
            {"endpoint": "/plain-404", "backend": [backend(upstream, "/status/404")]},
            {"endpoint": "/accepted", "backend": [backend(upstream, "/status/202")]},
            {
                "endpoint": "/noop-under-json",
                "backend": [
                    backend(upstream, "/status/404", encoding="no-op"),
                    backend(upstream, "/json/x", allow=["name"]),
                ],
            },
            {
                "endpoint": "/flat",
                "backend": [backend(upstream, "/json/f"), backend(upstream, "/array")],
                "extra_config": {
                    "proxy": {
                        "flatmap_filter": [
                            {"type": "del", "args": ["nested.b", "collection.*.i"]},
                            {"type": "move", "args": ["items", "list"]},
                        ],
                        "static": {"strategy": "complete", "data": {"static": True}},
                    }
                },
            },
            {
                "endpoint": "/fallback",
                "backend": [backend(upstream, "/status/500")],
                "extra_config": {"proxy": {"static": {"strategy": "errored", "data": {"fallback": True}}}},
            },
            {"endpoint": "/race", "concurrent_calls": 3, "backend": [backend(upstream, "/json/r", allow=["name"])]},
        ],
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: str):
    from tests.support.gateway import launch_gateway

    gateway = launch_gateway(proxy_config(upstream), tmp_path_factory.mktemp("gw"))
    yield gateway
    gateway.process.stop()


def test_sequential_fills_the_url_from_the_first_reply(gw: Gateway) -> None:
    status, headers, body = get(gw, "/seq/abc")
    data = json.loads(body)
    assert (status, headers["x-krakend-completed"]) == (200, "true")
    assert data["name"] == "abc" and data["nested"] == {"a": 1, "b": {"c": 2}}
    assert (data["echo"]["path"], data["echo"]["query"]) == ("/echo/abc/2", {"n": ["1"]})


def test_return_error_details_on_a_single_backend_is_200_with_the_details(gw: Gateway) -> None:
    status, headers, body = get(gw, "/details")
    assert (status, headers["x-krakend-completed"]) == (200, "false")
    details = json.loads(body)["error_up"]
    assert details["http_status_code"] == 404
    assert json.loads(details["http_body"]) == {"status": 404}
    assert details["http_body_encoding"].startswith("application/json")


def test_return_error_details_merge_with_the_other_backends_unformatted(gw: Gateway) -> None:
    status, headers, body = get(gw, "/details-merged")
    data = json.loads(body)
    assert (status, headers["x-krakend-completed"]) == (200, "false")
    assert data["name"] == "ok" and data["error_down"]["http_status_code"] == 503 and "never" not in data


def test_return_error_code_passes_the_status_and_the_default_is_500(gw: Gateway) -> None:
    assert get(gw, "/code")[0] == 418
    assert get(gw, "/code-204")[0::2] == (204, b"")  # a status that carries no body goes without one
    assert get(gw, "/plain-404")[0] == 500
    assert get(gw, "/accepted")[0] == 500  # KrakenD takes only 200 and 201 from a backend


def test_a_no_op_backend_under_json_is_called_and_adds_nothing(gw: Gateway) -> None:
    status, headers, body = get(gw, "/noop-under-json")
    assert (status, json.loads(body), headers["x-krakend-completed"]) == (200, {"name": "x"}, "true")


def test_endpoint_flatmap_then_static_on_real_replies(gw: Gateway) -> None:
    status, _, body = get(gw, "/flat")
    data = json.loads(body)
    assert status == 200
    assert data["nested"] == {"a": 1} and data["list"] == [1, 2] and "items" not in data
    assert data["collection"] == [None, None] and data["static"] is True


def test_static_data_answers_when_the_backend_fails(gw: Gateway) -> None:
    status, headers, body = get(gw, "/fallback")
    assert (status, json.loads(body), headers["x-krakend-completed"]) == (200, {"fallback": True}, "false")


def test_concurrent_calls_answer_once(gw: Gateway) -> None:
    status, _, body = get(gw, "/race")
    assert (status, json.loads(body)) == (200, {"name": "r"})


def _decoder(options: dict):
    doc = {
        "version": 3,
        "endpoints": [{"endpoint": "/a", "backend": [backend("http://u", "/x", **http_ns(**options))]}],
    }
    cfg = validate_document(doc, LoadOptions()).service.endpoints[0].backend[0]
    return reply_decoder(cfg, NOT_PASSED, HeaderLimits(100, 65536))


def test_status_rule_unit() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain"}))
    plain = _decoder({})
    assert plain(201, headers, b'{"a": 1}').data == {"a": 1}
    with pytest.raises(BackendError) as info:
        plain(204, headers, b"")
    assert (info.value.status, info.value.cause) == (500, "invalid status code 204")
    with pytest.raises(BackendError) as info:
        _decoder({"return_error_code": True})(429, headers, b"slow down")
    assert info.value.status == 429
    resp = _decoder({"return_error_details": "b"})(500, headers, b"")
    assert (resp.data, resp.is_complete, resp.status) == (
        {"error_b": {"http_status_code": 500, "http_body_encoding": "text/plain"}},
        False,
        500,
    )
    # KrakenD reads a name only: `true` keeps the default rule (and return_error_code is then ignored too)
    with pytest.raises(BackendError) as info:
        _decoder({"return_error_details": True, "return_error_code": True})(404, headers, b"")
    assert info.value.status == 500
