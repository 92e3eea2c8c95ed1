"""KrakenD's core keys: its lenient decoding (viper + mapstructure's weak typing), comment keys, old names, the
server keys (listen_ip, max_header_bytes, max_shutdown_wait_time, use_h2c, plugin, async_agent) and a backend's own
input_headers / input_query_strings, against a real gateway and the echo upstream."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from lambdagate import __version__
from lambdagate.config import LoadOptions, server_options, validate_document
from lambdagate.config.core_keys import backend_input_issues
from lambdagate.config.lenient import _Refused, go_float_text, go_int
from lambdagate.config.server_keys import listen_host
from lambdagate.errors import ConfigError
from tests.support.procs import Process, free_port, python_module, wait_http

HOST = "http://127.0.0.1:9"


def backend(url: str = "/x", **kw: Any) -> dict:
    return {"host": [HOST], "url_pattern": url, **kw}


def endpoint(*backends: dict, path: str = "/a", **kw: Any) -> dict:
    return {"endpoint": path, "backend": list(backends) or [backend()], **kw}


def service(*endpoints: dict, **kw: Any) -> dict:
    return {"version": 3, **kw, "endpoints": list(endpoints) or [endpoint()]}


def loaded(doc: dict):
    return validate_document(doc, LoadOptions())


def warnings_of(doc: dict) -> list[str]:
    return [str(w) for w in loaded(doc).warnings]


def errors_of(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loaded(doc)
    return [str(i) for i in info.value.issues]


# --- lenient decoding: what KrakenD's decoder converts is converted, with a warning saying what to write -------

LENIENT_CASES = [
    pytest.param(
        service(endpoint(backend(is_collection="true"))),
        lambda s: s.endpoints[0].backend[0].is_collection is True,
        'endpoints[0].backend[0].is_collection: "true" is read as true, as KrakenD does: write true',
        id="bool-from-string",
    ),
    pytest.param(
        service(endpoint(backend(is_collection=0))),
        lambda s: s.endpoints[0].backend[0].is_collection is False,
        "endpoints[0].backend[0].is_collection: 0 is read as false, as KrakenD does: write false",
        id="bool-from-number",
    ),
    pytest.param(
        service(endpoint(concurrent_calls=True)),
        lambda s: s.endpoints[0].concurrent_calls == 1,
        "endpoints[0].concurrent_calls: true is read as 1, as KrakenD does: write 1",
        id="int-from-bool",
    ),
    pytest.param(
        service(version="3"),
        lambda s: s.version == 3,
        'version: "3" is read as 3, as KrakenD does: write 3',
        id="version-quoted",
    ),
    pytest.param(
        service(port=8080.0),
        lambda s: s.port == 8080,
        "port: 8080.0 is read as 8080, as KrakenD does: write 8080",
        id="int-from-float",
    ),
    pytest.param(
        service(port="0x1F90"),
        lambda s: s.port == 8080,
        'port: "0x1F90" is read as 8080, as KrakenD does: write 8080',
        id="int-from-hex-string",
    ),
    pytest.param(
        service(endpoint(input_headers="Authorization,X-Id")),
        lambda s: s.endpoints[0].input_headers == ["Authorization", "X-Id"],
        'endpoints[0].input_headers: "Authorization,X-Id" is read as ["Authorization", "X-Id"], as KrakenD does '
        '(KrakenD splits a string at commas): write ["Authorization", "X-Id"]',
        id="list-from-string",
    ),
    pytest.param(
        service(endpoint(backend(allow=["a", 1, True]))),
        lambda s: s.endpoints[0].backend[0].allow == ["a", "1", "1"],
        'endpoints[0].backend[0].allow: ["a", 1, true] is read as ["a", "1", "1"], as KrakenD does: '
        'write ["a", "1", "1"]',
        id="list-elements-as-strings",
    ),
    pytest.param(
        service(endpoint(backend(mapping={"a": 1.5}))),
        lambda s: s.endpoints[0].backend[0].mapping == {"a": "1.5"},
        'endpoints[0].backend[0].mapping: {"a": 1.5} is read as {"a": "1.5"}, as KrakenD does: write {"a": "1.5"}',
        id="map-values-as-strings",
    ),
    pytest.param(
        service({"endpoint": "/a", "backend": backend()}),
        lambda s: len(s.endpoints[0].backend) == 1,
        "endpoints[0].backend: one object is read as a list of it, as KrakenD does: write it inside [ ]",
        id="one-backend-as-object",
    ),
    pytest.param(
        service(endpoint(timeout=3_000_000_000)),
        lambda s: s.endpoints[0].timeout == 3.0,
        'endpoints[0].timeout: 3000000000 is read as "3000000000ns", as KrakenD does (a bare number is '
        'nanoseconds): write a duration such as "3s"',
        id="duration-from-number",
    ),
    pytest.param(
        service(endpoint(concurrent_calls=None)),
        lambda s: s.endpoints[0].concurrent_calls == 1,
        "endpoints[0].concurrent_calls: null is read as not set, as KrakenD does: remove the key",
        id="null",
    ),
    pytest.param(
        service(endpoint(backend(extra_config=[]))),
        lambda s: s.endpoints[0].backend[0].extra_config == {},
        "endpoints[0].backend[0].extra_config: [] is read as {}, as KrakenD does: write {}",
        id="object-from-empty-list",
    ),
]


@pytest.mark.parametrize(("doc", "check", "warning"), LENIENT_CASES)
def test_krakends_weak_decoding_is_applied_with_a_warning(doc: dict, check, warning: str) -> None:
    result = loaded(doc)
    assert check(result.service)
    assert [str(w) for w in result.warnings] == [warning]


def test_the_input_document_is_not_changed() -> None:
    doc = service(endpoint(backend(is_collection="1"), concurrent_calls="2"))
    before = orjson.dumps(doc)
    assert loaded(doc).service.endpoints[0].concurrent_calls == 2
    assert orjson.dumps(doc) == before


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        (service(endpoint(backend(is_collection="yes"))), "endpoints[0].backend[0].is_collection: Input should be"),
        (service(port="80a"), "port: Input should be a valid integer, got str '80a'"),
        (service(port="08"), "port: Input should be a valid integer, got str '08'"),  # not octal: Go refuses it
        (service(endpoint(concurrent_calls=[2])), "endpoints[0].concurrent_calls: Input should be a valid integer"),
        (service(endpoint(backend(allow={"a": 1}))), "endpoints[0].backend[0].allow: Input should be a valid list"),
        (service(endpoint(backend(url_pattern={"a": 1}))), "endpoints[0].backend[0].url_pattern: Input should be"),
    ],
)
def test_what_krakends_decoder_refuses_stays_refused_with_its_path(doc: dict, error: str) -> None:
    assert any(e.startswith(error) for e in errors_of(doc)), errors_of(doc)


@pytest.mark.parametrize(
    ("text", "value"),
    [("", 0), ("42", 42), ("+5", 5), ("-7", -7), ("0x1F", 31), ("017", 15), ("0o17", 15), ("0b11", 3), ("1_000", 1000)],
)
def test_go_int_reads_as_strconv_parseint_base_0(text: str, value: int) -> None:
    assert go_int(text) == value


@pytest.mark.parametrize("text", ["08", " 1", "1 ", "1.0", "1e3", "_1", "1__0", "0x", "9223372036854775808", "1a"])
def test_go_int_refuses_what_strconv_refuses(text: str) -> None:
    with pytest.raises(_Refused):
        go_int(text)


@pytest.mark.parametrize(
    ("value", "text"), [(3.0, "3"), (1.5, "1.5"), (1e21, "1000000000000000000000"), (1e-7, "0.0000001")]
)
def test_numbers_become_strings_as_go_formats_them(value: float, text: str) -> None:
    assert go_float_text(value) == text


# --- version ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, "2", 2.0])
def test_format_version_2_says_what_it_is_however_it_is_written(version: Any) -> None:
    assert errors_of(service(version=version)) == [
        'version: format version 2 (KrakenD 1.x); KrakenD 2 and later refuse it too: migrate to "version": 3'
    ]


def test_other_versions_are_refused() -> None:
    assert errors_of(service(version=4)) == [
        'version: unsupported version 4: write "version": 3 (the format of KrakenD 2 and later)'
    ]


# --- comments and old names ------------------------------------------------------------------------------------


def test_comment_keys_are_accepted_silently_everywhere() -> None:
    doc = service(
        endpoint(
            backend(**{"@comment": "b", "@note": 1}),
            **{"@comment": "e"},
            extra_config={"@comment": "x", "qos/ratelimit/router": {"max_rate": 5, "@comment": "per second"}},
        ),
        **{"$id": "https://www.krakend.io/schema/krakend.json", "@comment": "top", "$schema": "s"},
        extra_config={"@comment": "ns", "router": {"@comment": "r", "return_error_msg": False}},
    )
    assert warnings_of(doc) == []


def test_a_comment_key_without_at_is_still_reported() -> None:
    assert warnings_of(service(endpoint(__comment="x"))) == ["endpoints[0].__comment: not supported, ignored"]


def test_old_and_foreign_keys_name_the_key_to_write() -> None:
    doc = service(
        endpoint(
            backend(headers_to_pass=["A"], whitelist=["a"], timeout="3s"),
            querystring_params=["q"],
            output_headers=["*"],
        )
    )
    assert warnings_of(doc) == [
        "endpoints[0].querystring_params: the name of KrakenD 1.x (format version 2), ignored by KrakenD 2 and later "
        'too: write "input_query_strings"',
        "endpoints[0].output_headers: not a KrakenD key, ignored (KrakenD ignores it too): a backend's reply headers "
        'reach the client only with "output_encoding": "no-op"',
        "endpoints[0].backend[0].headers_to_pass: the name of KrakenD 1.x (format version 2), ignored by KrakenD 2 "
        'and later too: write "input_headers"',
        "endpoints[0].backend[0].whitelist: the name of KrakenD 1.x (format version 2), ignored by KrakenD 2 and "
        'later too: write "allow"',
        "endpoints[0].backend[0].timeout: ignored, as KrakenD does: a backend's calls have its endpoint's timeout "
        '(set "timeout" there)',
    ]


# --- server keys -----------------------------------------------------------------------------------------------


def test_server_keys_set_lambdagate_server_limits() -> None:
    svc = loaded(service(max_header_bytes=32768, max_shutdown_wait_time="3s")).service
    options = server_options(svc)
    assert (options.max_header_bytes, options.shutdown_grace) == (32768, 3.0)
    assert server_options(loaded(service(max_header_bytes=0)).service).max_header_bytes == 64 * 1024


def test_the_namespace_wins_over_the_server_keys_with_a_warning() -> None:
    doc = service(max_shutdown_wait_time="3s", extra_config={"lambdagate/server": {"shutdown_grace": "1s"}})
    result = loaded(doc)
    assert server_options(result.service).shutdown_grace == 1.0
    assert [str(w) for w in result.warnings] == [
        'extra_config["lambdagate/server"].shutdown_grace: also set at the service\'s top level '
        "(max_shutdown_wait_time); this value wins"
    ]


def test_keys_without_effect_are_accepted_and_the_unserved_ones_warned() -> None:
    doc = service(
        disable_rest=True,
        sequential_start=True,
        use_h2c=True,
        plugin={"pattern": ".so", "folder": "/opt/krakend/plugins"},
        async_agent=[{"name": "a"}, {"name": "b"}],
    )
    warnings = warnings_of(doc)
    assert [w.split(":")[0] for w in warnings] == ["use_h2c", "plugin", "async_agent"]
    assert "the 2 async agent(s) are not started" in warnings[2]


@pytest.mark.parametrize("address", ["localhost", "10.0.0", "*"])
def test_listen_ip_must_be_an_ip_address(address: str) -> None:
    assert errors_of(service(listen_ip=address)) == [
        f'listen_ip: {address!r} is no IP address: write one, e.g. "127.0.0.1"'
    ]


def test_listen_host_is_the_flag_else_listen_ip_else_every_address() -> None:
    svc = loaded(service(listen_ip="::1")).service
    assert (listen_host(svc, "127.0.0.1"), listen_host(svc, None)) == ("127.0.0.1", "::1")
    assert listen_host(loaded(service()).service, None) == "0.0.0.0"


def test_disable_rest_names_itself_when_a_placeholder_is_inside_a_segment() -> None:
    doc = service(endpoint(backend("/b/{x}"), path="/a{x}"), disable_rest=True)
    assert errors_of(doc)[0].endswith("(KrakenD's disable_rest allows more; lambdagate's router does not)")


# --- a backend's own input lists: config warnings ----------------------------------------------------------------


def test_backend_input_lists_that_cannot_do_what_they_seem_are_warned() -> None:
    issues = backend_input_issues(["Authorization"], ["a"], ["authorization", "X-Other", "X-Forwarded-For"], ["*"])
    assert issues == [
        (
            "input_headers",
            "'X-Other' not in the endpoint's input_headers: never sent (a backend's list only narrows its endpoint's)",
        ),
        (
            "input_query_strings",
            '"*" means every name only in the endpoint\'s list; here it matches none, as in '
            "KrakenD: list the names this backend gets",
        ),
    ]
    assert backend_input_issues(["*"], ["*"], ["X-Any"], ["any"]) == []


# --- against a real gateway ----------------------------------------------------------------------------------------


def test_a_backends_input_lists_narrow_what_its_endpoint_forwards(start_gateway, upstream) -> None:
    def echo(group: str, **kw: Any) -> dict:
        return {"host": [upstream], "url_pattern": "/echo", "group": group, **kw}

    config = {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/n",
                "input_headers": ["Authorization", "X-Keep", "X-Drop", "User-Agent"],
                "input_query_strings": ["a", "b"],
                "backend": [
                    echo("narrow", input_headers=["x-keep", "X-Forwarded-For", "X-Other"], input_query_strings=["a"]),
                    echo("agent", input_headers=["User-Agent", "X-Forwarded-Via"]),
                    echo("star", input_headers=["*"], input_query_strings=["*"]),
                    echo("wide"),
                ],
            }
        ],
    }
    gw = start_gateway(config)
    sent = {"Authorization": "Bearer t", "X-Keep": "k", "X-Drop": "d", "X-Other": "o", "User-Agent": "client/1"}
    with urllib.request.urlopen(urllib.request.Request(f"{gw.url}/n?a=1&b=2&c=3", headers=sent), timeout=10) as reply:
        assert reply.status == 200
        got = json.loads(reply.read())
    narrow, agent, star, wide = (got[g] for g in ("narrow", "agent", "star", "wide"))
    assert narrow["query"] == {"a": ["1"]} and wide["query"] == {"a": ["1"], "b": ["2"]} and star["query"] == {}
    assert narrow["headers"]["x-keep"] == "k" and narrow["headers"]["x-forwarded-for"] == "127.0.0.1"
    for gone in ("x-drop", "authorization", "x-other", "x-forwarded-host", "x-forwarded-via"):
        assert gone not in narrow["headers"], gone
    assert narrow["headers"]["user-agent"] == f"lambdagate/{__version__}"  # the client's was not kept
    assert agent["headers"]["user-agent"] == "client/1" and agent["headers"]["x-forwarded-via"].startswith(
        "lambdagate/"
    )
    assert "x-forwarded-for" not in agent["headers"] and "x-keep" not in agent["headers"]
    assert not {"x-keep", "authorization", "x-forwarded-for"} & set(star["headers"])  # "*" is just a name here
    assert {"x-keep", "x-drop", "authorization", "x-forwarded-for", "x-forwarded-host"} <= set(wide["headers"])
    assert "x-other" not in wide["headers"]


def test_run_listens_on_listen_ip_when_no_host_is_given(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "krakend.json"
    path.write_bytes(orjson.dumps(service(endpoint(), listen_ip="127.0.0.1", port=port)))
    proc = Process(python_module("lambdagate", "run", "-c", str(path)), tmp_path / "gateway.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/__health", proc=proc.proc, timeout=30)
        assert f"listening on 127.0.0.1:{port}" in proc.log()
    finally:
        proc.stop()
