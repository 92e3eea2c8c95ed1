"""Property tests with hostile input (hypothesis), bounded in examples and time.

- The config loader: any file (YAML text, JSON bytes, well-formed documents with wrong or nested `extra_config`)
  gives a ConfigError with a message, never another exception; what validates is servable (routes build).
- Requests against a running gateway (random methods, paths with encoded segments, query strings, header names
  and values, bodies) and function replies a client controls: no 500 from our own code ("internal error" or
  the server's own plain 500), every error body is `{"error": "<short message>"}` with no internals, and the
  gateway's log never shows an unhandled error or a traceback.
"""

from __future__ import annotations

import json
import re
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from lambdagate.config import LoadOptions, load_config, validate_document
from lambdagate.errors import ConfigError
from lambdagate.router import Router
from tests.support.gateway import Gateway, launch_gateway
from tests.support.rawhttp import RawResponse, build, exchange
from tests.test_config import _document, _json
from tests.test_lambda_backend import AWS_ENV

FAST = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))

# ============================================================================================ config

_FILES = Path(tempfile.mkdtemp(prefix="lambdagate-fuzz-"))


def load_text(data: bytes, suffix: str) -> None:
    """Load `data` as a config file; only ConfigError may come out, and a loaded config must route."""
    path = _FILES / f"config{suffix}"
    path.write_bytes(data)
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        assert exc.issues and all(isinstance(i.message, str) and i.message for i in exc.issues)
        return
    router: Router[int] = Router()
    for i, endpoint in enumerate(loaded.service.endpoints):
        router.add(endpoint.method, endpoint.endpoint, i)


_YAML_BITS = st.sampled_from(
    [
        "version: 3\n",
        "endpoints:\n",
        "- endpoint: /a/{id}\n",
        "  backend:\n",
        "  - url_pattern: /x\n",
        "    host: [h]\n",
        "extra_config: {",
        "}",
        "[",
        "]",
        "{",
        "&a ",
        "*a",
        "!!binary ",
        "!!float ",
        "!!int ",
        "!!timestamp ",
        "!!set ",
        "!!python/object:os.system ",
        "2001-02-30",
        "2001-13-01 25:61:61",
        "0x",
        "1e999",
        ".nan",
        "~",
        "? ",
        ": ",
        "- ",
        "'",
        '"',
        "\\x00",
        "\t",
        "\n",
        "  ",
        "#",
        "%YAML 1.1\n",
        "---\n",
        "...\n",
        "<<: *a\n",
        "\ufeff",
        "\x00",
        "\x85",
        "backend/lambda: ",
        "lambdagate/server: ",
        "timeout: ",
        "999999999999h",
        "-1s",
    ]
)


@FAST
@given(st.one_of(st.text(max_size=300), st.lists(_YAML_BITS, max_size=30).map("".join)))
def test_yaml_text_gives_config_error_only(text: str) -> None:
    load_text(text.encode("utf-8", "surrogatepass"), ".yaml")


@FAST
@given(
    st.binary(max_size=300)
    | st.lists(
        st.sampled_from(
            [b"{", b"}", b"[", b"]", b'"version"', b":", b"3", b",", b'"endpoints"', b"1e999", b"\xff", b"-0", b"null"]
        ),
        max_size=40,
    ).map(b"".join)
)
def test_json_bytes_give_config_error_only(data: bytes) -> None:
    load_text(data, ".json")


@st.composite
def _mutated_yaml(draw) -> str:
    text = yaml.safe_dump(draw(_document(wrong_types=draw(st.booleans()))), default_flow_style=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + text[at + draw(st.integers(1, 8)) :]
        else:
            text = text[:at] + draw(_YAML_BITS) + text[at:]
    return text


@FAST
@given(_mutated_yaml())
def test_mutated_yaml_documents_give_config_error_only(text: str) -> None:
    load_text(text.encode(), ".yml")


_ANY = _json | st.sampled_from(
    [
        "1s",
        "0",
        "-1s",
        "1e400s",
        "9" * 30 + "h",
        "",
        "http://[::1",
        "http://a:99999",
        "file:///etc/passwd",
        "us-east-1",
        10**30,
        -1,
        0,
        True,
        None,
        1.5,
        [],
        {},
    ]
)
_SERVER = st.fixed_dictionaries(
    {},
    optional={
        k: st.one_of(_ANY, st.integers(-5, 10**9))
        for k in (
            "max_body_bytes",
            "max_header_bytes",
            "max_header_count",
            "max_url_length",
            "max_in_flight",
            "max_backend_response_bytes",
        )
    }
    | {
        k: st.one_of(_ANY, st.sampled_from(["1s", "500ms", "0s", "-1s", "1e9h", "3"]))
        for k in ("read_timeout", "read_header_timeout", "shutdown_grace")
    }
    | {"unknown": _ANY},
)
_LAMBDA = st.fixed_dictionaries(
    {},
    optional={
        "function_name": st.one_of(
            _ANY,
            st.sampled_from(
                ["fn", "fn:live", "arn:aws:lambda:us-east-1:123456789012:function:f", "../x", "a" * 65, "fn?x=1"]
            ),
        ),
        "function_param_name": st.one_of(_ANY, st.sampled_from(["id", "ID", "Lambda", "nope"])),
        "region": st.one_of(_ANY, st.just("us-east-1")),
        "max_retries": st.one_of(_ANY, st.integers(-3, 5)),
        "endpoint": st.one_of(
            _ANY,
            st.sampled_from(
                [
                    "http://127.0.0.1:1",
                    "https://h/base/",
                    "http://[::1",
                    "ftp://x",
                    "http://h:99999",
                    "http://h/?q=1",
                    "http://h:port",
                ]
            ),
        ),
        "qualifier": st.one_of(_ANY, st.sampled_from(["v1", "$LATEST", "../1", "a&b"])),
        "invocation_type": st.one_of(_ANY, st.sampled_from(["RequestResponse", "Event", "DryRun"])),
        "payload_format": st.one_of(_ANY, st.sampled_from(["krakend", "apigateway_v1", "apigateway_v2", "v3"])),
        "response_format": st.one_of(_ANY, st.sampled_from(["data", "proxy", "auto", "raw"])),
        "allowed_functions": st.one_of(_ANY, st.lists(st.sampled_from(["a*", "[", "", "*"]), max_size=3)),
        "assume_role_arn": _ANY,
        "return_error_details": st.one_of(_ANY, st.booleans()),
    },
)
_NAMESPACES = st.dictionaries(
    st.sampled_from(["lambdagate/server", "backend/lambda", "github.com/devopsfaith/krakend-lambda", "x/y", "", "a.b"]),
    st.one_of(_SERVER, _LAMBDA, _ANY),
    max_size=3,
)


@FAST
@given(
    st.fixed_dictionaries(
        {
            "version": st.just(3),
            "extra_config": _NAMESPACES,
            "endpoints": st.lists(
                st.fixed_dictionaries(
                    {
                        "endpoint": st.sampled_from(["/a/{id}", "/b", "/c/{Lambda}", "/{x}/{y}"]),
                        "method": st.sampled_from(["GET", "POST"]),
                        "extra_config": _NAMESPACES,
                        "backend": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "url_pattern": st.sampled_from(["/x", "/{id}", "/y?q={x}"]),
                                    "host": st.just(["http://127.0.0.1:1"]),
                                    "extra_config": _NAMESPACES,
                                }
                            ),
                            min_size=1,
                            max_size=3,
                        ),
                    }
                ),
                max_size=3,
            ),
        }
    )
)
def test_nested_extra_config_gives_config_error_only(doc: dict) -> None:
    try:
        validate_document(doc, LoadOptions())
    except ConfigError as exc:
        assert exc.issues and all(isinstance(i.message, str) and i.message for i in exc.issues)


# ========================================================================================== requests


def _lam(stub: str, **fields) -> dict:
    return {"extra_config": {"backend/lambda": {"endpoint": stub, "region": "us-east-1", **fields}}}


@pytest.fixture(scope="module")
def gw(upstream, stub, tmp_path_factory) -> Iterator[Gateway]:
    every = {"input_headers": ["*"], "input_query_strings": ["*"]}
    endpoints = []
    for method in ("GET", "POST", "PUT", "DELETE"):
        endpoints += [
            {
                "endpoint": "/h/{a}/{b}",
                "method": method,
                **every,
                "backend": [{"host": [upstream], "url_pattern": "/echo/{a}/x/{b}?q={a}"}],
            },
            {"endpoint": "/l/{a}", "method": method, **every, "backend": [_lam(stub, function_name="echo-l")]},
            {
                "endpoint": "/l1/{a}",
                "method": method,
                **every,
                "backend": [_lam(stub, function_name="echo-v1", payload_format="apigateway_v1")],
            },
            {
                "endpoint": "/l2/{a}",
                "method": method,
                **every,
                "backend": [_lam(stub, function_name="echo-v2", payload_format="apigateway_v2")],
            },
            {
                "endpoint": "/m/{a}",
                "method": method,
                **every,
                "backend": [
                    {"host": [upstream], "url_pattern": "/echo/{a}", "group": "http"},
                    {**_lam(stub, function_name="echo-m"), "group": "fn"},
                ],
            },
        ]
    endpoints += [
        {
            "endpoint": "/hs/{a}",
            "backend": [{"host": [upstream], "url_pattern": "/text", "encoding": "string"}],
            "output_encoding": "string",
        },
        {"endpoint": "/fn/{name}", "backend": [_lam(stub, function_param_name="name")]},
        {
            "endpoint": "/raw/{a}",
            "method": "POST",
            "output_encoding": "no-op",
            **every,
            "backend": [{"host": [upstream], "url_pattern": "/echo/{a}"}],
        },
        {
            "endpoint": "/proxy",
            "method": "POST",
            "backend": [_lam(stub, function_name="echo-proxy", response_format="proxy")],
        },
        {
            "endpoint": "/col",
            "output_encoding": "json-collection",
            "backend": [{"host": [upstream], "url_pattern": "/array"}],
        },
    ]
    config = {
        "version": 3,
        "timeout": "3s",
        "endpoints": endpoints,
        "extra_config": {"lambdagate/server": {"max_body_bytes": 4096, "max_url_length": 2048}},
    }
    gateway = launch_gateway(config, tmp_path_factory.mktemp("gw"), "--debug", env=AWS_ENV)
    yield gateway
    gateway.process.stop()


# An error the gateway writes is a short English sentence: no paths, hosts, types, codes or punctuation.
_SAFE_MESSAGE = re.compile(r"[a-z][a-zA-Z0-9 ,]{2,80}")
_LEAKS = (
    b"Traceback",
    b'File "',
    b"aiohttp",
    b"botocore",
    b"Exception",
    b"/work/",
    b".py",
    b"127.0.0.1",
    b"lambdagate.",
    b"stub-req",
)


def check_response(gw: Gateway, resp: RawResponse, passthrough: bool = False) -> None:
    assert resp.status != 0, f"no HTTP reply: {resp.raw[:200]!r}"
    content_type = resp.header(b"content-type") or b""
    assert not (resp.status == 500 and not content_type.startswith(b"application/json")), resp.raw[:300]
    router_miss = (resp.status, resp.body) in ((404, b"404 page not found"), (405, b"405 method not allowed"))
    if router_miss:  # KrakenD's gin router answers these in plain text
        assert content_type == b"text/plain", resp.raw[:300]
    elif resp.status >= 400 and not passthrough and resp.body:
        assert content_type.startswith(b"application/json"), resp.raw[:300]
        body = json.loads(resp.body)
        assert set(body) == {"error"}, body
        assert _SAFE_MESSAGE.fullmatch(body["error"]) and body["error"] != "internal error", body
        assert not any(leak in resp.body for leak in _LEAKS), resp.body
    log = gw.log()
    for bad in ("unhandled error", "Traceback", "unexpected error", "Application callable raised"):
        assert bad not in log, log[-4000:]


_SEGMENT_BITS = st.sampled_from(
    [
        "..",
        ".",
        "%2F",
        "%2f",
        "%2e",
        "%2E%2E",
        "%00",
        "%0D%0A",
        "%0a",
        "%",
        "%zz",
        "%E2%82%AC",
        "%C0%AF",
        "%FF",
        "~",
        ";",
        "@",
        ":",
        "+",
        "%25",
        "%252F",
        "{a}",
        "%7B",
        "\\",
        "%5C",
        "echo",
        "echo-x",
        "a" * 70,
        "é",
        "\u20ac",
    ]
)
_segment = st.lists(
    st.one_of(
        _SEGMENT_BITS, st.text(string.ascii_letters + string.digits + "-_.!$&'()*+,;=:@", min_size=1, max_size=6)
    ),
    min_size=1,
    max_size=3,
).map("".join)
# (prefix, segments the route takes): mostly the right count, so requests reach the backends
_ROUTES = [
    ("/h/", 2),
    ("/hs/", 1),
    ("/l/", 1),
    ("/l1/", 1),
    ("/l2/", 1),
    ("/m/", 1),
    ("/fn/", 1),
    ("/raw/", 1),
    ("/proxy", 0),
    ("/col", 0),
    ("/__echo/", 1),
    ("/__health", 0),
]
_ODD = ["/", "//", "/__", "*", "http://evil.example/h/", "", "/h", "/h/x/"]


@st.composite
def _path(draw) -> tuple[str, str]:
    if draw(st.integers(0, 4)) == 0:
        prefix = draw(st.sampled_from(_ODD + [p for p, _ in _ROUTES]))
        segments = draw(st.lists(_segment, max_size=4))
    else:
        prefix, count = draw(st.sampled_from(_ROUTES))
        segments = draw(st.lists(_segment, min_size=count, max_size=count))
    return prefix, prefix + "/".join(segments)


_qtext = st.one_of(
    st.text(string.ascii_letters + string.digits + "%=&+;/?:@,$-_.!~*'()[]#", max_size=8),
    st.sampled_from(["%0D%0A", "%", "%zz", "%E2%82%AC", "a%00b", "é"]),
)
_query = st.one_of(
    st.just(""),
    st.lists(st.tuples(_qtext, _qtext), max_size=4).map(lambda pairs: "?" + "&".join(f"{k}={v}" for k, v in pairs)),
)
_FRAMING = {
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"host",
    b"expect",
    b"upgrade",
    b"te",
    b"trailer",
    b"keep-alive",
}
_TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
_header_name = st.one_of(
    st.text(_TOKEN, min_size=1, max_size=12),
    st.sampled_from(
        [
            "X-Forwarded-For",
            "Authorization",
            "Cookie",
            "Content-Type",
            "Accept-Encoding",
            "X-Amz-Security-Token",
            "Proxy-Authorization",
        ]
    ),
)
_header_value = st.binary(max_size=40).map(lambda b: bytes(c for c in b if c == 9 or 32 <= c != 127)) | st.sampled_from(
    [b"", b" ", b"gzip", b"application/json", b"../../etc/passwd", b"\xe9\xff", b"a\x01b"]
)
_json_body = _json.map(lambda v: json.dumps(v).encode())
_body = st.one_of(st.none(), st.binary(max_size=600), _json_body, _json_body, st.just(b"x" * 5000))  # 5000 > the limit


@FAST
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "GET", "POST", "PATCH", "HEAD", "OPTIONS", "FETCH", "get"]),
    path=_path(),
    query=_query,
    headers=st.lists(st.tuples(_header_name, _header_value), max_size=6),
    body=_body,
)
def test_random_requests(gw, method, path, query, headers, body):
    prefix, path = path
    target = (path + query).encode("utf-8")
    if not target:
        target = b"/"
    raw_headers = [(n.encode(), v) for n, v in headers if n.lower().encode() not in _FRAMING]
    resp = exchange(int(gw.url.rsplit(":", 1)[1]), build(method.encode(), target, raw_headers, body))
    event(f"{prefix.strip('/') or '/'} {resp.status}")
    check_response(gw, resp, passthrough=prefix == "/raw/")


# Mostly well-formed (so the reply reaches the client and its headers the server), sometimes hostile.
_good_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"), max_size=12)
_bad_text = st.sampled_from(["a\r\nInjected: yes", "a\nInjected: yes", "\x00", "\x7f", "\x1b[31m"])
_header_text = st.one_of(
    _good_text, _good_text, _good_text, st.sampled_from(["\u20ac", "\t", " x ", "é", ""]), _bad_text
)
_good_name = st.text(_TOKEN, min_size=1, max_size=8)
_names = st.one_of(
    _good_name,
    _good_name,
    _good_name,
    st.sampled_from(
        [
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Set-Cookie",
            "X-Amz-Function-Error",
            "Date",
            "Server",
            "X A",
            "X:A",
            "",
            "X\r\nInjected",
            "X-\u20ac",
        ]
    ),
)
_reply = st.fixed_dictionaries(
    {},
    optional={
        "statusCode": st.one_of(
            st.integers(200, 599),
            st.integers(200, 599),
            st.integers(-1, 700),
            st.sampled_from([100, 101, 103, 204, 304, "200", "abc", None, 2.5, True, "\u00b2", "\uff12\uff10\uff10"]),
        ),
        "headers": st.one_of(
            st.dictionaries(_names, st.one_of(_header_text, st.integers(-9, 9), st.booleans()), max_size=3),
            st.dictionaries(_good_name, _good_text, max_size=3),
            _json,
        ),
        "multiValueHeaders": st.one_of(
            st.dictionaries(_names, st.lists(_header_text, max_size=2), max_size=2),
            st.dictionaries(_good_name, st.lists(_good_text, max_size=2), max_size=2),
            _json,
        ),
        "cookies": st.one_of(st.lists(_header_text, max_size=2), st.lists(_good_text, max_size=2), _json),
        "body": st.one_of(
            st.text(max_size=40), st.text(max_size=40), st.sampled_from(["AAEC", "not base64!", "{}", ""]), _json
        ),
        "isBase64Encoded": st.one_of(st.just(False), st.just(False), st.booleans(), _json),
    },
)


@FAST
@given(reply=_reply)
def test_function_replies_a_client_controls(gw, reply: dict[str, Any]):
    """/proxy invokes a function that echoes its payload, so the client writes the function's reply."""
    try:
        payload = json.dumps(reply, allow_nan=False).encode()
    except ValueError:  # NaN/Infinity: not JSON
        reject()
    resp = exchange(int(gw.url.rsplit(":", 1)[1]), build(b"POST", b"/proxy", [], payload))
    status = reply.get("statusCode", 200)
    malformed = resp.status == 500 and resp.body == b'{"error":"the function reply is malformed"}'
    assert malformed or resp.status == int(status), (reply, resp.raw[:300])
    assert b"injected" not in resp.raw.lower().split(b"\r\n\r\n", 1)[0]  # never a header the function smuggled
    event("malformed" if malformed else f"status {resp.status // 100}xx")
    check_response(gw, resp, passthrough=not malformed)
