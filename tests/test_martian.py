"""`modifier/martian`: every modifier type read (and refused, with its JSON path) at load time; the query and host
rules as units; and each modifier's effect end to end, through a real gateway, on what the real upstream
(tests/support/upstream.py) receives (request scope) and on what the client gets back (response scope)."""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from typing import Any

import pytest

from lambdagate.config import LoadOptions, load_config, validate_document
from lambdagate.errors import ConfigError
from lambdagate.modifiers.martian import encode_query, host_pattern, query_values
from lambdagate.modifiers.martian_config import Spec
from tests.support.procs import free_port
from tests.test_pipeline_http import Resp, call, start_module_gateway  # noqa: F401 (a fixture)
from tests.test_realworld import CORPUS

NS = "modifier/martian"
PATH = f'endpoints[0].backend[0].extra_config["{NS}"]'


def doc(modifier: Any, backend_extra: dict | None = None, service_extra: dict | None = None) -> dict:
    backend = {"host": ["http://svc:1"], "url_pattern": "/a", "extra_config": {NS: modifier, **(backend_extra or {})}}
    return {
        "version": 3,
        "extra_config": service_extra or {},
        "endpoints": [{"endpoint": "/a", "backend": [backend]}],
    }


def spec_of(modifier: Any) -> Spec:
    loaded = validate_document(doc(modifier), LoadOptions())
    return loaded.service.endpoints[0].backend[0].namespaces[NS]


def errors_of(modifier: Any, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate_document(doc(modifier, **kw), LoadOptions())
    return [str(issue) for issue in exc.value.issues]


def warnings_of(modifier: Any) -> list[str]:
    return [str(w) for w in validate_document(doc(modifier), LoadOptions()).warnings]


def header(name: str, value: str, *scope: str, kind: str = "header.Modifier") -> dict:
    body: dict[str, Any] = {"name": name, "value": value}
    if scope:
        body["scope"] = list(scope)
    return {kind: body}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- reading the config -------------------------------------------------------------------------------------------

VALID = [
    (header("X-A", "1"), {"request", "response"}),
    (header("X-A", "1", "request"), {"request"}),
    (header("X-A", "1", "response", kind="header.Append"), {"response"}),
    ({"header.Blacklist": {"names": ["X-A", "X-B"]}}, {"request", "response"}),
    ({"header.Copy": {"from": "X-A", "to": "X-B", "scope": ["request"]}}, {"request"}),
    ({"header.Id": {}}, {"request"}),
    ({"querystring.Modifier": {"name": "a", "value": "1"}}, {"request"}),
    ({"url.Modifier": {"scheme": "https", "host": "api.example.com:8443", "path": "/x", "query": "a=1"}}, {"request"}),
    ({"body.Modifier": {"contentType": "application/json", "body": b64("{}")}}, {"request", "response"}),
    ({"cookie.Modifier": {"name": "c", "value": "v", "maxAge": 60, "secure": True}}, {"request", "response"}),
    ({"stash.Modifier": {"headerName": "X-Stash", "scope": ["request", "response"]}}, {"request", "response"}),
    ({"port.Modifier": {"defaultForScheme": True}}, {"request"}),
    ({"status.Modifier": {"statusCode": 204}}, {"response"}),
    ({"fifo.Group": {"modifiers": [header("X-A", "1")], "aggregateErrors": True}}, {"request", "response"}),
    ({"priority.Group": {"modifiers": [{"priority": 1, "modifier": header("X-A", "1")}]}}, {"request", "response"}),
    ({"header.Filter": {"name": "X-A", "value": "1", "modifier": header("X-B", "1")}}, {"request", "response"}),
    (
        {"header.RegexFilter": {"header": "X-A", "regex": "^a+$", "modifier": header("X-B", "1")}},
        {"request", "response"},
    ),
    (
        {"querystring.Filter": {"name": "a", "modifier": header("X-B", "1"), "else": header("X-B", "2")}},
        {"request", "response"},
    ),
    ({"url.Filter": {"host": "*.example.com", "path": "/a", "modifier": header("X-B", "1")}}, {"request", "response"}),
    ({"fifo.Group": {"scope": [], "modifiers": []}}, set()),
]


@pytest.mark.parametrize(("modifier", "scope"), VALID, ids=[next(iter(m)) for m, _ in VALID])
def test_every_type_is_read_with_its_scope(modifier: dict, scope: set[str]) -> None:
    spec = spec_of(modifier)
    assert spec.type == next(iter(modifier)) and spec.scope == scope


def test_groups_and_filters_keep_their_modifiers_in_run_order() -> None:
    members = [
        {"priority": p, "modifier": header("X-P", v)}
        for p, v in ((1, "low"), (5, "five-a"), (9, "high"), (5, "five-b"))
    ]
    group = spec_of({"priority.Group": {"modifiers": members}})
    # Highest first; of two with the same priority the later one first, as martian inserts them.
    assert [child.options["value"] for child in group.children] == ["high", "five-b", "five-a", "low"]
    fifo = spec_of({"fifo.Group": {"modifiers": [header("X-A", "1"), header("X-A", "2")]}})
    assert [child.options["value"] for child in fifo.children] == ["1", "2"]
    filtered = spec_of(
        {"header.Filter": {"name": "X-A", "value": "", "modifier": header("X-B", "1"), "else": header("X-B", "2")}}
    )
    assert filtered.children[0].options["value"] == "1" and filtered.otherwise.options["value"] == "2"


def test_header_id_defaults_to_krakends_header_and_cookie_is_written_as_go_does() -> None:
    assert spec_of({"header.Id": {}}).options["header"] == "X-Krakend-Id"
    cookie = spec_of(
        {
            "cookie.Modifier": {
                "name": "s",
                "value": "a b",
                "path": "/p",
                "domain": ".example.com",
                "expires": "2030-01-02T16:04:05+01:00",
                "maxAge": -1,
                "httpOnly": True,
                "secure": True,
            }
        }
    )
    assert cookie.options["pair"] == 's="a b"'
    assert cookie.options["set_cookie"] == (
        's="a b"; Path=/p; Domain=example.com; Expires=Wed, 02 Jan 2030 15:04:05 GMT; Max-Age=0; HttpOnly; Secure'
    )


UNKNOWN = "unknown martian modifier"
INVALID = [
    ({"header.Nope": {}}, f'{PATH}["header.Nope"]: {UNKNOWN}'),
    ({"static.Modifier": {"rootPath": "/etc"}}, f'{PATH}["static.Modifier"]: {UNKNOWN}'),
    (
        {"fifo.Group": {"modifiers": [header("X-A", "1"), {"x.Y": {}}]}},
        f'{PATH}["fifo.Group"].modifiers[1]["x.Y"]: {UNKNOWN}',
    ),
    (
        {"header.Filter": {"name": "X-A", "modifier": header("X-B", "1"), "else": {"z.Z": {}}}},
        f'{PATH}["header.Filter"].else["z.Z"]: {UNKNOWN}',
    ),
    ({"header.Modifier": {}, "header.Append": {}}, f"{PATH}: must be an object with exactly one modifier"),
    ("header.Modifier", f"{PATH}: must be an object with exactly one modifier"),
    ({"header.Modifier": []}, f'{PATH}["header.Modifier"]: must be an object'),
    ({"header.Modifier": {"name": 1, "value": "x"}}, f'{PATH}["header.Modifier"].name: must be a string, got 1'),
    ({"header.Modifier": {"value": "x"}}, f'{PATH}["header.Modifier"].name: required'),
    (header("X A", "1"), f"{PATH}[\"header.Modifier\"].name: 'X A' is not a header name"),
    (header("X-A", "a\r\nX-B: 1"), f'{PATH}["header.Modifier"].value: '),
    (header("Content-Length", "5"), f'{PATH}["header.Modifier"].name: Content-Length frames the message'),
    (
        header("Host", "x", "request", kind="header.Append"),
        f'{PATH}["header.Append"].name: a request has a single Host',
    ),
    (header("X-A", "1", "both"), f'{PATH}["header.Modifier"].scope[0]: must be "request" or "response"'),
    (
        {"header.Modifier": {"name": "X", "value": "", "scope": "request"}},
        f'{PATH}["header.Modifier"].scope: must be a list',
    ),
    ({"querystring.Modifier": {"name": "a", "scope": ["response"]}}, "querystring.Modifier modifies requests only"),
    ({"status.Modifier": {"statusCode": 200, "scope": ["request"]}}, "status.Modifier modifies responses only"),
    ({"status.Modifier": {"statusCode": 99}}, f'{PATH}["status.Modifier"].statusCode: 99 is not a final HTTP status'),
    ({"status.Modifier": {"statusCode": 2.5}}, "statusCode: must be a whole number, got 2.5"),
    ({"stash.Modifier": {"headerName": "X-S", "scope": ["response"]}}, '["stash.Modifier"].scope: to write the header'),
    ({"port.Modifier": {}}, f'{PATH}["port.Modifier"]: write exactly one of port, defaultForScheme or remove'),
    ({"port.Modifier": {"port": 80, "remove": True}}, "write exactly one of port, defaultForScheme or remove"),
    ({"port.Modifier": {"port": 70000}}, '["port.Modifier"].port: 70000 is not a TCP port'),
    ({"url.Modifier": {"scheme": "ftp"}}, "[\"url.Modifier\"].scheme: 'ftp'"),
    ({"url.Modifier": {"host": "a/b"}}, "[\"url.Modifier\"].host: 'a/b' is not a host"),
    ({"url.Modifier": {"path": "x"}}, "[\"url.Modifier\"].path: 'x' must start with /"),
    ({"url.Modifier": {"query": "a=b c"}}, '["url.Modifier"].query: must be an encoded query string'),
    ({"body.Modifier": {"body": "YQ"}}, '["body.Modifier"].body: must be base64'),
    ({"cookie.Modifier": {"name": "c", "value": "a;b"}}, '["cookie.Modifier"].value: '),
    (
        {"cookie.Modifier": {"name": "c", "expires": "tomorrow"}},
        "[\"cookie.Modifier\"].expires: 'tomorrow' is not a time",
    ),
    (
        {"header.RegexFilter": {"header": "X", "regex": "(?<=a)b", "modifier": header("X", "1")}},
        "regex: invalid regular",
    ),
    ({"header.Filter": {"name": "X-A", "value": "1"}}, f'{PATH}["header.Filter"].modifier: required'),
    ({"priority.Group": {"modifiers": [{"priority": 1}]}}, f'{PATH}["priority.Group"].modifiers[0].modifier: required'),
    ({"fifo.Group": {"modifiers": {"a": 1}}}, '["fifo.Group"].modifiers: must be a list of modifiers'),
]


@pytest.mark.parametrize(("modifier", "expected"), INVALID)
def test_invalid_modifiers_are_refused_with_their_path(modifier: Any, expected: str) -> None:
    errors = errors_of(modifier)
    assert any(expected in error for error in errors), errors
    assert all(error.startswith(PATH) for error in errors), errors


def test_nesting_is_bounded() -> None:
    modifier: dict = header("X-A", "1")
    for _ in range(40):
        modifier = {"fifo.Group": {"modifiers": [modifier]}}
    assert any("nested more than 32 levels" in error for error in errors_of(modifier))


def test_a_body_counts_against_the_limits() -> None:
    big = {"body.Modifier": {"scope": ["request"], "body": b64("x" * 2000)}}
    limits = {"lambdagate/server": {"max_body_bytes": 1000, "max_backend_response_bytes": 4000}}
    assert errors_of(big, service_extra=limits) == [
        f'{PATH}["body.Modifier"].body: 2000 bytes: more than lambdagate/server max_body_bytes (1000)'
    ]
    reply = {"body.Modifier": {"scope": ["response"], "body": b64("x" * 5000)}}
    assert "max_backend_response_bytes (4000)" in errors_of(reply, service_extra=limits)[0]


def test_unknown_keys_are_warned_about_as_go_ignores_them() -> None:
    content = {"body.Modifier": {"scope": ["request"], "content": "{{.body}}"}}
    assert warnings_of(content) == [f'{PATH}["body.Modifier"].content: not supported, ignored']


def test_a_lambda_backend_refuses_it() -> None:
    lambda_ns = {"backend/lambda": {"function_name": "f", "region": "us-east-1"}}
    assert errors_of(header("X-A", "1"), backend_extra=lambda_ns) == [
        f"{PATH}: applies to HTTP backends only, and this is a backend/lambda backend (KrakenD skips it there): "
        "remove it"
    ]


def test_the_old_name_is_read_and_an_endpoint_level_one_is_ignored_as_krakend_does() -> None:
    config = doc(None, backend_extra={})
    backend = config["endpoints"][0]["backend"][0]
    backend["extra_config"] = {"github.com/devopsfaith/krakend-martian": header("X-A", "1")}
    config["endpoints"][0]["extra_config"] = {NS: header("X-A", "1")}
    loaded = validate_document(config, LoadOptions())
    assert NS in loaded.service.endpoints[0].backend[0].namespaces
    messages = [str(w) for w in loaded.warnings]
    assert (
        'endpoints[0].extra_config["modifier/martian"]: namespace belongs in a backend\'s extra_config, ignored here'
        in messages
    )
    assert any("is the old name of `modifier/martian`" in m for m in messages)


# --- Go's query and host rules, as units ---------------------------------------------------------------------------


def test_query_strings_are_read_and_written_as_go_does() -> None:
    assert query_values("b=2&a=1&a=x+y&bad=%zz&semi=1;2&&e=") == {"b": ["2"], "a": ["1", "x y"], "e": [""]}
    assert encode_query({"b": ["2"], "a": ["1", "x y/é"]}) == "a=1&a=x+y%2F%C3%A9&b=2"


def test_host_patterns_match_one_label_per_star() -> None:
    match = host_pattern("*.example.com").fullmatch
    assert match("api.example.com") and not match("a.b.example.com") and not match("example.com")
    assert not match("api.example.com:8080") and host_pattern("api.example.com:8080").fullmatch("api.example.com:8080")


# --- end to end ----------------------------------------------------------------------------------------------------


def e2e_config(up: str, dead: str) -> dict:
    up_port = up.rsplit(":", 1)[1]

    def ep(path: str, url: str, modifier: dict, host: str = up, **kw: Any) -> dict:
        backend = {"host": [host], "url_pattern": url, "extra_config": {NS: modifier, **kw.pop("extra", {})}}
        encoding = kw.pop("encoding", None)
        if encoding:
            backend["encoding"] = encoding
            kw["output_encoding"] = encoding
        return {"endpoint": path, "backend": [backend], **kw}

    fifo = {
        "fifo.Group": {
            "scope": ["request"],
            "modifiers": [
                header("X-Set", "1"),
                header("X-Multi", "a", kind="header.Append"),
                header("X-Multi", "b", kind="header.Append"),
                {"header.Filter": {"name": "X-Multi", "value": "a", "modifier": header("X-Kept-A", "yes")}},
                {"header.Blacklist": {"names": ["X-Drop"]}},
                {"header.Copy": {"from": "X-Src", "to": "X-Dst"}},
                {"header.Id": {}},
                {"header.Id": {"header": "X-Given-Id"}},
                {"stash.Modifier": {"headerName": "X-Stash"}},
                {"cookie.Modifier": {"name": "c", "value": "v"}},
                header("X-Response-Only", "1", "response"),
            ],
        }
    }
    priority = {
        "priority.Group": {
            "modifiers": [
                {"priority": 1, "modifier": header("X-P", "low")},
                {"priority": 10, "modifier": header("X-P", "high")},
                {"priority": 5, "modifier": header("X-Q", "first")},
                {"priority": 5, "modifier": header("X-Q", "second")},
            ]
        }
    }
    flag = {
        "fifo.Group": {
            "modifiers": [
                {
                    "header.Filter": {
                        "name": "X-Flag",
                        "value": "on",
                        "modifier": header("X-Branch", "then"),
                        "else": header("X-Branch", "else"),
                    }
                },
                {"header.RegexFilter": {"header": "X-Flag", "regex": "^o", "modifier": header("X-Regex", "yes")}},
                {
                    "querystring.Filter": {
                        "name": "keep",
                        "value": "1",
                        "modifier": header("X-Keep", "one"),
                        "else": header("X-Keep", "other"),
                    }
                },
                {
                    "url.Filter": {
                        "path": "/echo/match",
                        "modifier": header("X-Url", "match"),
                        "else": header("X-Url", "no"),
                    }
                },
                {"querystring.Modifier": {"name": "added", "value": "x y"}},
            ]
        }
    }
    response = {
        "fifo.Group": {
            "scope": ["request", "response"],
            "modifiers": [
                header("X-Res", "1", "response"),
                header("X-Res-Multi", "a", "response", kind="header.Append"),
                header("X-Res-Multi", "b", "response", kind="header.Append"),
                {
                    "header.Filter": {
                        "scope": ["response"],
                        "name": "X-Upstream",
                        "value": "yes",
                        "modifier": header("X-Saw", "upstream"),
                    }
                },
                {"header.Blacklist": {"scope": ["response"], "names": ["X-Upstream"]}},
                {"header.Copy": {"scope": ["response"], "from": "X-Res", "to": "X-Res-Copy"}},
                {"cookie.Modifier": {"scope": ["response"], "name": "c", "value": "v", "path": "/", "httpOnly": True}},
                {"stash.Modifier": {"headerName": "X-Stash"}},
                {"status.Modifier": {"statusCode": 202}},
                header("X-Request-Only", "1", "request"),
            ],
        }
    }
    return {
        "version": 3,
        "timeout": "5s",
        "endpoints": [
            ep("/req/headers", "/echo/headers", fifo, input_headers=["X-Drop", "X-Src", "X-Given-Id"]),
            ep("/req/priority", "/echo/p", priority),
            ep("/req/filters/{p}", "/echo/{p}", flag, input_headers=["X-Flag"], input_query_strings=["keep"]),
            ep(
                "/req/url",
                "/nowhere",
                {"url.Modifier": {"host": f"127.0.0.1:{up_port}", "path": "/echo/moved", "query": "q=1"}},
                host=dead,
            ),
            ep("/req/port", "/echo/ported", {"port.Modifier": {"port": int(up_port)}}, host=dead),
            ep(
                "/req/body",
                "/digest",
                {
                    "body.Modifier": {
                        "scope": ["request"],
                        "contentType": "application/json",
                        "body": b64('{"msg":"hi"}'),
                    }
                },
            ),
            ep("/res/headers", "/status/200", response, encoding="no-op"),
            ep(
                "/res/body",
                "/json/original",
                {
                    "body.Modifier": {
                        "scope": ["response"],
                        "contentType": "application/json",
                        "body": b64('{"replaced":true}'),
                    }
                },
            ),
            ep("/res/status", "/status/500", {"status.Modifier": {"statusCode": 200}}),
            ep(
                "/res/cached",
                "/cache/fresh-martian",
                {"fifo.Group": {"modifiers": [header("X-Mod", "1", "response"), header("X-Req", "1", "request")]}},
                extra={"qos/http-cache": {}},
                encoding="no-op",
            ),
            ep(
                "/res/stash",
                "/status/200",
                {"stash.Modifier": {"headerName": "X-Stash"}},
                host=up.replace("http://", "http://user:pw@"),
                encoding="no-op",
            ),
        ],
    }


@pytest.fixture(scope="module")
def gw(start_module_gateway, upstream: str):
    return start_module_gateway(e2e_config(upstream, f"http://127.0.0.1:{free_port()}"))


def get(gw, path: str, headers: dict[str, str] | None = None) -> Resp:
    return call(gw.url, "GET", path, headers)


def test_request_header_modifiers(gw) -> None:
    resp = get(gw, "/req/headers", {"X-Drop": "secret", "X-Src": "copied", "X-Given-Id": "mine"})
    assert resp.status == 200, resp.body
    seen = resp.json()["headers"]
    assert seen["x-set"] == "1" and seen["x-multi"] == "b" and seen["x-kept-a"] == "yes"  # both appended values went
    assert "x-drop" not in seen and seen["x-dst"] == "copied"
    assert uuid.UUID(seen["x-krakend-id"]) and seen["x-given-id"] == "mine"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/echo/headers", seen["x-stash"])
    assert seen["cookie"] == "c=v"
    assert "x-response-only" not in seen


def test_priority_group_runs_the_highest_first(gw) -> None:
    seen = get(gw, "/req/priority").json()["headers"]
    assert seen["x-p"] == "low" and seen["x-q"] == "first"  # the last to run wins


def test_filters_choose_their_branch(gw) -> None:
    matched = get(gw, "/req/filters/match?keep=1", {"X-Flag": "on"}).json()
    assert matched["path"] == "/echo/match" and matched["query"] == {"added": ["x y"], "keep": ["1"]}
    assert [matched["headers"].get(h) for h in ("x-branch", "x-regex", "x-keep", "x-url")] == [
        "then",
        "yes",
        "one",
        "match",
    ]
    other = get(gw, "/req/filters/other?keep=2", {"X-Flag": "no"}).json()
    assert [other["headers"].get(h) for h in ("x-branch", "x-regex", "x-keep", "x-url")] == [
        "else",
        None,
        "other",
        "no",
    ]
    assert other["query"] == {"added": ["x y"], "keep": ["2"]}


def test_url_and_port_modifiers_change_where_the_request_goes(gw) -> None:
    moved = get(gw, "/req/url")  # the backend's own host has nothing listening
    assert moved.status == 200, moved.body
    assert moved.json()["path"] == "/echo/moved" and moved.json()["query"] == {"q": ["1"]}
    ported = get(gw, "/req/port")
    assert ported.status == 200 and ported.json()["path"] == "/echo/ported"


def test_body_modifier_sends_its_body_whatever_the_method(gw) -> None:
    seen = get(gw, "/req/body").json()
    assert seen["length"] == len('{"msg":"hi"}') and seen["content_type"] == "application/json"


def test_response_modifiers_change_the_reply_before_it_is_decoded(gw) -> None:
    resp = get(gw, "/res/headers")
    assert resp.status == 202  # status.Modifier
    assert resp.header("X-Res") == "1" and resp.all("X-Res-Multi") == ["a", "b"] and resp.header("X-Res-Copy") == "1"
    assert resp.header("X-Saw") == "upstream" and resp.header("X-Upstream") is None
    assert "c=v; Path=/; HttpOnly" in resp.all("Set-Cookie") and "a=1" in resp.all("Set-Cookie")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/status/200", resp.header("X-Stash") or "")
    assert resp.header("X-Request-Only") is None
    assert get(gw, "/res/body").json() == {"replaced": True}
    status = get(gw, "/res/status")  # a 500 turned into a 200 is decoded as a success
    assert status.status == 200 and status.json() == {"status": 500}


def test_stash_never_hands_the_backends_credentials_to_the_client(gw) -> None:
    resp = get(gw, "/res/stash")
    assert resp.status == 200 and re.fullmatch(r"http://127\.0\.0\.1:\d+/status/200", resp.header("X-Stash") or "")


# --- the real-world configs -----------------------------------------------------------------------------------------

# What `check` says about martian in each real config that has it, beyond nothing: KrakenD reads it only in a
# backend; and a value that is no modifier at all (KrakenD logs it and calls the backend without modifiers).
EXPECTED_REAL = {
    "deepakvbansode__mTLS__config__krakend__krakend.json": ["namespace belongs in a backend's extra_config"],
    "VanoPremudriy__spring-helm-microservices__LibraryService__krakend.json": [
        "holds no martian modifier (keys: id, username, email, password): ignored, as KrakenD does"
    ],
    "1995parham-learning__go101__krakend__config__krakend.json": ["is the old name of `modifier/martian`"],
}


@pytest.mark.parametrize("value", [{}, {"id": 1, "username": "x"}])
def test_a_value_holding_no_modifier_is_ignored_with_a_warning_as_krakend_does(value) -> None:
    doc = {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/a",
                "backend": [{"host": ["http://h"], "url_pattern": "/", "extra_config": {"modifier/martian": value}}],
            }
        ],
    }
    loaded = validate_document(doc, LoadOptions())
    assert loaded.service.endpoints[0].backend[0].namespaces["modifier/martian"] is None
    assert any("holds no martian modifier" in str(w) for w in loaded.warnings)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the real-world corpus is not here: {CORPUS}")
def test_real_configs_read_their_martian_modifiers() -> None:
    found = subprocess.run(
        ["grep", "-rlE", "modifier/martian|krakend-martian", str(CORPUS)], capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert len(found) >= 7
    for path in found:
        try:
            items = load_config(path, LoadOptions()).warnings
        except ConfigError as exc:
            items = exc.issues
        said = [str(item) for item in items if "martian" in str(item)]
        expected = EXPECTED_REAL.get(path.rsplit("/", 1)[1], [])
        assert len(said) == len(expected) and all(e in s for e, s in zip(expected, said)), (path, said)


def test_response_modifiers_run_on_a_cached_reply_too(gw) -> None:
    # qos/http-cache keeps the reply as the backend sent it (it sits in KrakenD's HTTP client, under martian).
    first, second = get(gw, "/res/cached"), get(gw, "/res/cached")
    assert first.json()["calls"] == 1 and second.json()["calls"] == 1  # the second one is a hit
    assert first.header("X-Mod") == "1" and second.header("X-Mod") == "1"
