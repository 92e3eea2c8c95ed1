"""Config loading and validation: every error names its JSON path; warnings for what is ignored."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, StrictStr

from lambdagate.config import LoadOptions, load_config, read_document, shapes, validate_document
from lambdagate.config.durations import parse_duration
from lambdagate.config.namespaces import Namespace, NamespaceError, register
from lambdagate.errors import ConfigError

HOST = "http://127.0.0.1:9"


def backend(url: str = "/x", **kw: Any) -> dict:
    return {"host": [HOST], "url_pattern": url, **kw}


def endpoint(path: str = "/a", *backends: dict, **kw: Any) -> dict:
    return {"endpoint": path, "backend": list(backends) or [backend()], **kw}


def service(*endpoints: dict, **kw: Any) -> dict:
    return {"version": 3, **kw, "endpoints": list(endpoints)}


def errors_of(doc: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_document(doc, LoadOptions())
    issues = info.value.issues
    assert issues, "a ConfigError must carry at least one issue"
    return [str(i) for i in issues]


def warnings_of(doc: Any) -> list[str]:
    return [str(w) for w in validate_document(doc, LoadOptions()).warnings]


# --- every error, with its exact path and message -------------------------------------------------------

ERROR_CASES = [
    pytest.param(
        service(version=2),
        ['version: format version 2 (KrakenD 1.x); KrakenD 2 and later refuse it too: migrate to "version": 3'],
        id="wrong-version",
    ),
    pytest.param({"endpoints": []}, ['version: required: add "version"'], id="missing-version"),
    pytest.param(
        service(version="v3"),
        ["version: Input should be a valid integer, got str 'v3'"],
        id="version-as-string",
    ),
    pytest.param(
        service(version=[3]), ["version: Input should be a valid integer, got list [3]"], id="version-as-list"
    ),
    pytest.param(
        service(endpoint("/a"), endpoint("/b"), endpoint("/a")),
        ['endpoints[2]: duplicate of endpoints[0] (GET /a): change "endpoint" or "method"'],
        id="duplicate",
    ),
    pytest.param(
        service(endpoint("/a", method="post"), endpoint("/a", method="POST")),
        ['endpoints[1]: duplicate of endpoints[0] (POST /a): change "endpoint" or "method"'],
        id="duplicate-method-case",
    ),
    pytest.param(
        service(endpoint("/a/"), endpoint("/a"), endpoint("/a/")),  # "/a" and "/a/" are two routes, as in gin
        ['endpoints[2]: duplicate of endpoints[0] (GET /a/): change "endpoint" or "method"'],
        id="duplicate-trailing-slash",
    ),
    pytest.param(
        service(endpoint("/u/{id}"), endpoint("/u/{name}")),
        ['endpoints[1]: duplicate of endpoints[0] (GET /u/{id}): change "endpoint" or "method"'],
        id="duplicate-placeholder-names",
    ),
    pytest.param(
        service(endpoint("/a"), endpoint("/b"), endpoint("/users/{user}", backend("/u/{id}"))),
        ["endpoints[2].backend[0].url_pattern: placeholder {id} is not in endpoint /users/{user}"],
        id="url-pattern-placeholder",
    ),
    pytest.param(
        service(endpoint("/users/{user}", backend("/u?id={id}"))),
        ["endpoints[0].backend[0].url_pattern: placeholder {id} is not in endpoint /users/{user}"],
        id="url-pattern-placeholder-in-query",
    ),
    pytest.param(
        service(endpoint("/a", backend(), backend(), output_encoding="no-op")),
        [
            'endpoints[0].output_encoding: "no-op" passes one backend through, this endpoint has 2: '
            'keep one backend or use "json"'
        ],
        id="no-op-two-backends",
    ),
    pytest.param(
        service(endpoint("/a", backend(), backend()), output_encoding="no-op"),
        [
            'endpoints[0].output_encoding: "no-op" passes one backend through, this endpoint has 2: '
            'keep one backend or use "json"'
        ],
        id="no-op-inherited-two-backends",
    ),
    pytest.param(
        service(timeout="3x"),
        ['timeout: malformed duration \'3x\': write it like "3s", "500ms" or "1m30s"'],
        id="malformed-duration",
    ),
    pytest.param(
        service(endpoint(timeout="1m30")),
        ['endpoints[0].timeout: malformed duration \'1m30\': write it like "3s", "500ms" or "1m30s"'],
        id="malformed-endpoint-duration",
    ),
    pytest.param(
        service(endpoint(cache_ttl="5 min")),
        ['endpoints[0].cache_ttl: malformed duration \'5 min\': write it like "3s", "500ms" or "1m30s"'],
        id="malformed-cache-ttl",
    ),
    pytest.param(
        service(timeout=-3),
        ['timeout: expected a duration string such as "2s" or "500ms", got -3'],
        id="duration-as-number",
    ),
    pytest.param(service(timeout="0"), ['timeout: must be more than 0, e.g. "2s"'], id="service-timeout-zero"),
    pytest.param(
        service(endpoint(timeout="0s")),
        ['endpoints[0].timeout: must be more than 0, e.g. "2s"'],
        id="endpoint-timeout-zero",
    ),
    pytest.param(
        service(port="80a"),
        ["port: Input should be a valid integer, got str '80a'"],
        id="port-as-string",
    ),
    pytest.param(service(port=70000), ["port: Input should be less than or equal to 65535"], id="port-range"),
    pytest.param(
        {"version": 3, "endpoints": "x"},
        ["endpoints: Input should be a valid list, got str 'x': write a list, such as [\"x\"]"],
        id="endpoints-type",
    ),
    pytest.param(
        service(1),
        ["endpoints[0]: Input should be a valid dictionary or instance of EndpointConfig, got int 1"],
        id="endpoint-type",
    ),
    pytest.param(
        service(endpoint(method="FETCH")),
        [
            "endpoints[0].method: Input should be 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD' or 'OPTIONS', "
            "got 'FETCH'"
        ],
        id="method-unknown",
    ),
    pytest.param(
        service(endpoint(output_encoding=["json"])),
        ["endpoints[0].output_encoding: Input should be a valid string, got list ['json']"],
        id="output-encoding",
    ),
    pytest.param(
        service(endpoint(input_headers={"Authorization": True})),
        ["endpoints[0].input_headers: Input should be a valid list, got dict {'Authorization': True}"],
        id="input-headers-object",
    ),
    pytest.param(
        service(endpoint(concurrent_calls=-1)),
        ["endpoints[0].concurrent_calls: Input should be greater than or equal to 0"],
        id="concurrent-calls",
    ),
    pytest.param(
        service(endpoint("/a", backend(allow={"name": 1}))),
        ["endpoints[0].backend[0].allow: Input should be a valid list, got dict {'name': 1}"],
        id="allow-type",
    ),
    pytest.param(
        service(endpoint("/a", backend(mapping={"a": [1]}))),
        ["endpoints[0].backend[0].mapping.a: Input should be a valid string, got list [1]"],
        id="mapping-type",
    ),
    pytest.param(
        service(endpoint("/a", backend(is_collection="yes"))),
        [
            "endpoints[0].backend[0].is_collection: Input should be a valid boolean, got str 'yes': write true or false, without quotes"
        ],
        id="bool-type",
    ),
    pytest.param(
        service(endpoint("/a", backend(extra_config="x"))),
        ["endpoints[0].backend[0].extra_config: Input should be a valid dictionary, got str 'x'"],
        id="extra-config-type",
    ),
    pytest.param(
        service(endpoint("/a", backend(host=["ftp://files"]))),
        ["endpoints[0].backend[0].host[0]: 'ftp://files' is not a base URL: write it like \"http://service:8080\""],
        id="host-scheme",
    ),
    pytest.param(
        service(endpoint("/a", backend(host=[HOST, "http://svc:80/?x=1"]))),
        [
            "endpoints[0].backend[0].host[1]: 'http://svc:80/?x=1' is not a base URL: write it like "
            '"http://service:8080"'
        ],
        id="host-query",
    ),
    pytest.param(
        service(endpoint("/a", backend(host=["http://", "https://"], disable_host_sanitize=True))),
        [
            "endpoints[0].backend[0].host[0]: 'http://' is not a base URL: write it like \"http://service:8080\"",
            "endpoints[0].backend[0].host[1]: 'https://' is not a base URL: write it like \"http://service:8080\"",
        ],
        id="host-without-name",
    ),
    pytest.param(
        service(endpoint("/a", backend(host=["http://[::1"]))),
        ["endpoints[0].backend[0].host[0]: 'http://[::1' is not a base URL: write it like \"http://service:8080\""],
        id="host-unparsable",
    ),
    pytest.param(
        service(endpoint("/a", backend(host=["svc:http"]))),
        ["endpoints[0].backend[0].host[0]: 'svc:http' is not a base URL: write it like \"http://service:8080\""],
        id="host-port-not-a-number",
    ),
    pytest.param(
        service(endpoint("/a", {"url_pattern": "/x"}), host=["http://ok:1", "http://svc/api?v=1"]),
        ["host[1]: 'http://svc/api?v=1' is not a base URL: write it like \"http://service:8080\""],
        id="service-host",
    ),
    pytest.param(
        service(endpoint("/users/x{id}")),
        ["endpoints[0].endpoint: placeholder segment 'x{id}' must be a whole path segment such as \"/users/{id}\""],
        id="placeholder-partial-segment",
    ),
    pytest.param(
        service(endpoint("/files/{name}.json")),
        [
            "endpoints[0].endpoint: placeholder segment '{name}.json' must be a whole path segment such as "
            '"/users/{id}"'
        ],
        id="placeholder-with-suffix",
    ),
    pytest.param(
        service(endpoint("/a/{x}/b/{x}")),
        ["endpoints[0].endpoint: a placeholder appears twice in /a/{x}/b/{x}: rename one"],
        id="placeholder-twice",
    ),
    pytest.param(
        service(endpoint("/__health")),
        ["endpoints[0].endpoint: /__health is reserved for the gateway's built-in endpoints: choose another path"],
        id="reserved-health",
    ),
    pytest.param(
        service(endpoint("/__health/")),
        ["endpoints[0].endpoint: /__health/ is reserved for the gateway's built-in endpoints: choose another path"],
        id="reserved-health-slash",
    ),
    pytest.param(
        service(endpoint("/__echo/{rest}")),
        ["endpoints[0].endpoint: /__echo/{rest} is reserved for the gateway's built-in endpoints: choose another path"],
        id="reserved-echo",
    ),
    pytest.param(
        service(endpoint("/__echo")),
        ["endpoints[0].endpoint: /__echo is reserved for the gateway's built-in endpoints: choose another path"],
        id="reserved-echo-root",
    ),
    pytest.param(
        service({"backend": [backend()]}), ['endpoints[0].endpoint: required: add "endpoint"'], id="missing-endpoint"
    ),
    pytest.param(service({"endpoint": "/a"}), ['endpoints[0].backend: required: add "backend"'], id="missing-backend"),
    pytest.param(
        service({"endpoint": "/a", "backend": []}),
        ["endpoints[0].backend: List should have at least 1 item after validation, not 0"],
        id="no-backend",
    ),
    pytest.param(  # refused as a Pub/Sub backend, not for its host: "kafka://" is no HTTP address
        service(
            endpoint(
                "/a",
                {"host": ["kafka://"], "extra_config": {"backend/pubsub/publisher": {"topic_url": "t"}}},
                backend(),
            )
        ),
        [
            'endpoints[0].backend[0].extra_config["backend/pubsub/publisher"]: backend/pubsub is not supported by '
            "lambdagate: `backend/pubsub/publisher` makes this backend a Pub/Sub publisher, not an HTTP backend; "
            "remove the backend, or reach the broker through an HTTP service or a Lambda function (`backend/lambda`)"
        ],
        id="pubsub-backend",
    ),
    pytest.param(
        service(
            endpoint(
                "/a",
                backend(host=["gcppubsub://"], extra_config={"github.com/devopsfaith/krakend-pubsub/subscriber": {}}),
            ),
            endpoint("/b", {"host": ["amqp://guest@rabbit:5672"], "extra_config": {"backend/amqp/consumer": {}}}),
        ),
        [
            'endpoints[0].backend[0].extra_config["github.com/devopsfaith/krakend-pubsub/subscriber"]: '
            "backend/pubsub is not supported by lambdagate: `github.com/devopsfaith/krakend-pubsub/subscriber` (the "
            "old name of `backend/pubsub/subscriber`) makes this backend a Pub/Sub subscriber, not an HTTP backend; "
            "remove the backend, or reach the broker through an HTTP service or a Lambda function (`backend/lambda`)",
            'endpoints[1].backend[0].extra_config["backend/amqp/consumer"]: backend/amqp is not supported by '
            "lambdagate: `backend/amqp/consumer` makes this backend an AMQP consumer, not an HTTP backend; remove the "
            "backend, or reach the broker through an HTTP service or a Lambda function (`backend/lambda`)",
        ],
        id="pubsub-and-amqp-backends",
    ),
]


@pytest.mark.parametrize(("doc", "expected"), ERROR_CASES)
def test_error_names_path_and_fix(doc: dict, expected: list[str]) -> None:
    assert errors_of(doc) == expected


@pytest.mark.parametrize("doc", [[], "version: 3", None, 3])
def test_document_must_be_an_object(doc: Any) -> None:
    assert errors_of(doc) == ['the config must be a JSON object such as {"version": 3, "endpoints": [...]}']


def test_valid_config_is_typed_with_defaults() -> None:
    loaded = validate_document(
        service(
            endpoint("/users/{id}", backend("/u/{id}", host="svc:8080"), method="post", timeout="1m30s"),
            endpoint("/b", {"url_pattern": "/b"}, cache_ttl="1.5h", output_encoding="string"),
            host=["http://default:1"],
        ),
        LoadOptions(),
    )
    svc = loaded.service
    assert (svc.port, svc.timeout, svc.cache_ttl, svc.output_encoding) == (8080, 2.0, None, "json")
    first, second = svc.endpoints
    assert (first.method, first.timeout, first.placeholders) == ("POST", 90.0, ["id"])
    assert first.backend[0].host == ["svc:8080"]  # a single string is read as a one-item list, as KrakenD does
    assert first.input_headers == [] and first.input_query_strings == []  # zero-trust defaults
    assert (second.cache_ttl, second.output_encoding, second.backend[0].host) == (5400.0, "string", [])
    assert [str(w) for w in loaded.warnings] == [
        'endpoints[0].backend[0].host: "svc:8080" is read as ["svc:8080"], as KrakenD does (KrakenD splits a '
        'string at commas): write ["svc:8080"]'
    ]


@pytest.mark.parametrize("path", ["/__healthz", "/__echoes/{x}", "/__health/x", "/api/__health"])
def test_paths_near_reserved_ones_are_allowed(path: str) -> None:
    # Only "/__health" and "/__echo[/...]" are answered by the gateway itself; neighbours are ordinary paths.
    assert len(validate_document(service(endpoint(path)), LoadOptions()).service.endpoints) == 1


def test_same_path_with_other_method_is_not_a_duplicate() -> None:
    svc = validate_document(
        service(endpoint("/a"), endpoint("/a", method="POST"), endpoint("/a/{x}")), LoadOptions()
    ).service
    assert [(e.method, e.endpoint) for e in svc.endpoints] == [("GET", "/a"), ("POST", "/a"), ("GET", "/a/{x}")]


def test_service_host_serves_backends_without_one() -> None:
    svc = validate_document(service(endpoint("/a", {"url_pattern": "/x"}), host=["svc:1"]), LoadOptions()).service
    assert svc.endpoints[0].backend[0].host == [] and svc.host == ["svc:1"]


def test_host_without_scheme_is_sanitised_not_rejected() -> None:
    svc = validate_document(service(endpoint("/a", backend(host=["127.0.0.1:8080", "svc/"]))), LoadOptions()).service
    assert svc.endpoints[0].backend[0].host == ["127.0.0.1:8080", "svc/"]


def test_no_op_endpoint_forces_backend_encoding() -> None:
    svc = validate_document(service(endpoint("/a", output_encoding="no-op")), LoadOptions()).service
    assert svc.endpoints[0].backend[0].encoding == "no-op"


def test_several_cross_field_errors_reported_at_once() -> None:
    doc = service(
        endpoint("/users/{user}", backend("/u/{id}")),
        endpoint("/users/{user}"),
        endpoint("/b", {"url_pattern": "/x"}, timeout="0"),
        endpoint("/__health"),
        timeout="0",
    )
    assert errors_of(doc) == [
        'timeout: must be more than 0, e.g. "2s"',
        "endpoints[0].backend[0].url_pattern: placeholder {id} is not in endpoint /users/{user}",
        'endpoints[1]: duplicate of endpoints[0] (GET /users/{user}): change "endpoint" or "method"',
        'endpoints[2].timeout: must be more than 0, e.g. "2s"',
        "endpoints[3].endpoint: /__health is reserved for the gateway's built-in endpoints: choose another path",
    ]


def test_several_type_errors_reported_at_once() -> None:
    doc = service(endpoint("/a", backend(allow={"x": 1})), endpoint("/b", method="GO"), port="1x", timeout="soon")
    errors = errors_of(doc)
    assert errors == [
        "port: Input should be a valid integer, got str '1x'",
        'timeout: malformed duration \'soon\': write it like "3s", "500ms" or "1m30s"',
        "endpoints[0].backend[0].allow: Input should be a valid list, got dict {'x': 1}",
        "endpoints[1].method: Input should be 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD' or 'OPTIONS', got 'GO'",
    ]


class _Lists(BaseModel):
    names: list[StrictStr] = []
    pairs: list[list[StrictStr]] = []
    numbers: list[list[int]] | None = None
    shown: list[list[str]] = Field(default=[], examples=[[["sub", "X-User"]]])
    objects: list[dict] = []


@pytest.mark.parametrize(
    ("loc", "value", "expected"),
    [
        (("names",), "a", '["a"]'),  # a valid item: wrapped
        (("names",), True, '["text"]'),  # not a valid item: an item of the field's type
        (("pairs",), True, '[["text"]]'),
        (("pairs",), "sub", '[["text"]]'),
        (("pairs", 0), "sub", '["sub"]'),
        (("numbers",), 3, "[[1]]"),
        (("shown",), True, '[["sub", "X-User"]]'),  # the field's own example
        (("objects",), "x", '["x"]'),  # a type with no sample: wrapped, as before
        (("unknown",), 1, "[1]"),
    ],
)
def test_list_hint_shows_the_shape_of_the_field(loc: tuple, value: Any, expected: str) -> None:
    assert shapes.list_example(_Lists, loc, value) == expected


# --- warnings: accepted but never silently ignored -------------------------------------------------------

UNKNOWN_NS = "github.com/example/not-a-lambdagate-namespace"


def test_unknown_fields_and_namespaces_are_warnings() -> None:
    doc = service(
        endpoint(
            "/a",
            backend(flatmap_filter=[], extra_config={UNKNOWN_NS: {}}),
            headers_to_pass=["x"],
            extra_config={"documentation/openapi": {"summary": "x"}},
        ),
        plugin={"pattern": ".so"},
        extra_config={"telemetry/influx": {"db": "x"}},
    )
    assert warnings_of(doc) == [
        'extra_config["telemetry/influx"]: namespace not supported, ignored',
        "plugin: accepted, nothing is loaded: lambdagate cannot load KrakenD's Go plugins (a plugin/* namespace that "
        "guards requests is refused where it is used, the others are warned about)",
        "endpoints[0].headers_to_pass: the name of KrakenD 1.x (format version 2), ignored by KrakenD 2 and later "
        'too: write "input_headers"',
        'endpoints[0].extra_config["documentation/openapi"]: namespace not supported, ignored',
        "endpoints[0].backend[0].flatmap_filter: not supported, ignored",
        f'endpoints[0].backend[0].extra_config["{UNKNOWN_NS}"]: namespace not supported, ignored',
    ]


def test_a_backend_without_any_host_starts_with_a_warning_as_in_krakend() -> None:
    assert warnings_of(service(endpoint("/a", {"url_pattern": "/x"}))) == [
        'endpoints[0].backend[0].host: no host: every call fails (as in KrakenD); add "host": '
        '["http://service:8080"] to the backend or the service'
    ]


def test_hosts_lura_cleans_are_read_as_krakend_reads_them() -> None:
    # Lura keeps the one match of its host pattern: "kafka://" is http://kafka, and "http://" even http://http.
    doc = service(endpoint("/a", backend(host=["kafka://", "svc:8080", "http://"])))
    loaded = validate_document(doc, LoadOptions())
    assert loaded.service.endpoints[0].backend[0].host == ["http://kafka", "svc:8080", "http://http"]
    assert [str(w) for w in loaded.warnings] == [
        "endpoints[0].backend[0].host[0]: 'kafka://' is read as \"http://kafka\", as KrakenD does: write that",
        "endpoints[0].backend[0].host[2]: 'http://' is read as \"http://http\", as KrakenD does: write that",
    ]


def test_paths_without_a_leading_slash_are_cleaned_as_krakend_does() -> None:
    doc = service(endpoint("users", {"host": [HOST]}, {"host": [HOST], "url_pattern": "v1/users"}))
    loaded = validate_document(doc, LoadOptions())
    assert loaded.service.endpoints[0].endpoint == "/users"
    assert [b.url_pattern for b in loaded.service.endpoints[0].backend] == ["/", "/v1/users"]
    assert [str(w) for w in loaded.warnings] == [
        'endpoints[0].endpoint: \'users\' has no leading "/": read as "/users", as KrakenD does; write "/users"',
        'endpoints[0].backend[0].url_pattern: empty: read as "/", as KrakenD does; write "/"',
        'endpoints[0].backend[1].url_pattern: \'v1/users\' has no leading "/": read as "/v1/users", as KrakenD '
        'does; write "/v1/users"',
    ]


def test_concurrent_calls_and_a_no_op_backend_under_json_are_accepted_silently() -> None:
    # KrakenD serves both: concurrent calls race each backend, a no-op backend's data is {} (tests/test_proxy_ns.py).
    assert warnings_of(service(endpoint(concurrent_calls=3))) == []
    assert warnings_of(service(endpoint(concurrent_calls=0))) == []  # 0 means 1, as in Lura
    assert warnings_of(service(endpoint("/a", backend(encoding="no-op")))) == []


def test_schema_and_name_are_known_fields() -> None:
    assert warnings_of(service(endpoint(), **{"$schema": "https://www.krakend.io/schema/v3.json", "name": "x"})) == []


# A namespace registered by a test, as a backend module would register its own.
def _parse_probe(value: Any, ctx: Any) -> dict:
    if not isinstance(value, dict):
        raise NamespaceError([("", "must be an object")])
    if "limit" in value and not isinstance(value["limit"], int):
        raise NamespaceError([("limit", f"must be an integer, got {value['limit']!r}")])
    if value.get("old"):
        ctx.warnings.append(("old", "deprecated, ignored"))
    return {"parsed": value, "endpoint": ctx.endpoint.endpoint}


register(Namespace("test/core-probe", "endpoint", _parse_probe, aliases=("github.com/test/core-probe",)))


def test_registered_namespace_is_parsed_once_into_its_typed_value() -> None:
    loaded = validate_document(service(endpoint("/p", extra_config={"test/core-probe": {"limit": 2}})), LoadOptions())
    assert loaded.service.endpoints[0].namespaces == {"test/core-probe": {"parsed": {"limit": 2}, "endpoint": "/p"}}
    assert loaded.warnings == []


def test_registered_namespace_errors_and_warnings_carry_sub_paths() -> None:
    doc = service(
        endpoint("/p", extra_config={"test/core-probe": {"limit": "2"}}),
        endpoint("/q", extra_config={"test/core-probe": 5}),
    )
    assert errors_of(doc) == [
        "endpoints[0].extra_config[\"test/core-probe\"].limit: must be an integer, got '2'",
        'endpoints[1].extra_config["test/core-probe"]: must be an object',
    ]
    assert warnings_of(service(endpoint("/p", extra_config={"test/core-probe": {"old": True}}))) == [
        'endpoints[0].extra_config["test/core-probe"].old: deprecated, ignored'
    ]


def test_registered_namespace_in_wrong_scope_or_twice() -> None:
    assert warnings_of(service(endpoint(), extra_config={"test/core-probe": {}})) == [
        'extra_config["test/core-probe"]: namespace belongs in a endpoint\'s extra_config, ignored here'
    ]
    doc = service(endpoint(extra_config={"test/core-probe": {}, "github.com/test/core-probe": {}}))
    assert errors_of(doc) == [
        "endpoints[0].extra_config[\"github.com/test/core-probe\"]: 'test/core-probe' is given twice "
        "(once under an alias): keep one"
    ]


# --- files: JSON and YAML, syntax errors with line numbers ------------------------------------------------

YAML_CONFIG = """\
version: 3
port: 8099
timeout: 1500ms
endpoints:
  - endpoint: /users/{id}
    method: get
    backend:
      - host: ["http://svc:1"]
        url_pattern: /u/{id}
        allow: [name, nested.a]
"""


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_and_json_files_load_the_same(tmp_path: Path, suffix: str) -> None:
    yaml_path = tmp_path / f"krakend{suffix}"
    yaml_path.write_text(YAML_CONFIG)
    json_path = tmp_path / "krakend.json"
    json_path.write_bytes(orjson.dumps(yaml.safe_load(YAML_CONFIG)))
    from_yaml, from_json = load_config(yaml_path), load_config(json_path)
    assert from_yaml.service.model_dump() == from_json.service.model_dump()
    assert from_yaml.source == str(yaml_path)
    ep = from_yaml.service.endpoints[0]
    assert (from_yaml.service.port, from_yaml.service.timeout, ep.method, ep.backend[0].allow) == (
        8099,
        1.5,
        "GET",
        ["name", "nested.a"],
    )


def test_json_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "krakend.json"
    path.write_text('{\n  "version": 3,\n  "endpoints": [,]\n}\n')
    with pytest.raises(ConfigError) as info:
        read_document(path)
    [issue] = info.value.issues
    assert str(issue).startswith("invalid JSON at line 3, column 17: ")


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "krakend.yaml"
    path.write_text("version: 3\nendpoints:\n  - endpoint: /a\n    backend: [\n")
    with pytest.raises(ConfigError) as info:
        read_document(path)
    [issue] = info.value.issues
    assert str(issue).startswith("invalid YAML at line 5, column 1: ")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.json")
    assert [str(i) for i in info.value.issues] == [
        f"cannot read config file {str(tmp_path / 'absent.json')!r}: No such file or directory"
    ]


def test_errors_from_file_keep_paths(tmp_path: Path) -> None:
    path = tmp_path / "krakend.yaml"
    path.write_text(
        "version: 3\nendpoints:\n  - endpoint: /users/{user}\n    backend:\n"
        "      - host: [http://svc:1]\n        url_pattern: /u/{id}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(i) for i in info.value.issues] == [
        "endpoints[0].backend[0].url_pattern: placeholder {id} is not in endpoint /users/{user}"
    ]


def test_an_enterprise_backend_type_is_an_http_backend_as_in_krakend_ce() -> None:
    # KrakenD CE ignores backend/grpc (Enterprise) and calls the host over HTTP: a warning, not a refusal
    doc = service(endpoint("/a", backend(extra_config={"backend/grpc": {}})))
    assert warnings_of(doc) == [
        'endpoints[0].backend[0].extra_config["backend/grpc"]: namespace not supported, ignored'
    ]


# --- files the config names: the key, the file, and what to write -----------------------------------------

CLIENT = 'endpoints[0].backend[0].extra_config["backend/http/client"].client_tls'


def test_client_tls_files_that_cannot_be_read_name_their_key_and_file(tmp_path: Path) -> None:
    missing, junk = str(tmp_path / "ca.crt"), tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")

    def client_tls(tls: dict) -> dict:
        return service(endpoint("/a", backend(extra_config={"backend/http/client": {"client_tls": tls}})))

    assert errors_of(client_tls({"ca_certs": [missing]})) == [
        f"{CLIENT}.ca_certs[0]: the file {missing!r} does not exist: write the path of a PEM file of CA "
        "certificates the gateway can read"
    ]
    assert errors_of(client_tls({"ca_certs": [str(tmp_path)]})) == [
        f"{CLIENT}.ca_certs[0]: the file {str(tmp_path)!r} is a directory: write the path of a PEM file of CA "
        "certificates the gateway can read"
    ]
    [error] = errors_of(client_tls({"ca_certs": [str(junk)]}))
    assert error.startswith(f"{CLIENT}.ca_certs[0]: the file {str(junk)!r} holds no PEM CA certificate (")
    assert "_ssl.c" not in error
    [error] = errors_of(client_tls({"client_certs": [{"certificate": str(junk), "private_key": "client.key"}]}))
    assert error == (
        f"{CLIENT}.client_certs[0].private_key: the file 'client.key' does not exist: write the path of a PEM "
        "private key file the gateway can read (a relative path is read from the working directory)"
    )
    # the service's client_tls, too
    assert errors_of({**service(endpoint()), "client_tls": {"ca_certs": [missing]}}) == [
        f"client_tls.ca_certs[0]: the file {missing!r} does not exist: write the path of a PEM file of CA "
        "certificates the gateway can read"
    ]


def test_server_tls_files_that_cannot_be_read_name_their_key_and_file(tmp_path: Path) -> None:
    key = str(tmp_path / "server.key")
    doc = {**service(endpoint()), "tls": {"keys": [{"public_key": "cert.pem", "private_key": key}]}}
    assert errors_of(doc) == [
        "tls.keys[0].public_key: the file 'cert.pem' does not exist: write the path of a PEM certificate file the "
        "gateway can read (a relative path is read from the working directory)",
        f"tls.keys[0].private_key: the file {key!r} does not exist: write the path of a PEM private key file the "
        "gateway can read",
    ]


# --- property: validation never fails with anything but ConfigError --------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["3s", "0", "1m30s", "GET", "get", "/a", "{id}", "no-op"])
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _fields(
    fields: dict[str, st.SearchStrategy], wrong_types: bool, required: tuple[str, ...] = ()
) -> st.SearchStrategy:
    """Objects with some of these fields: well-typed values (reaching the cross-field checks) or any JSON."""
    if wrong_types:
        fields = {k: st.one_of(v, _json) for k, v in fields.items()}
        required = ()
    return st.fixed_dictionaries(
        {k: fields[k] for k in required}, optional={k: v for k, v in fields.items() if k not in required}
    )


_paths = st.lists(st.sampled_from(["a", "{id}", "{x}", "x{y}", "", "__health", "__echo", "{a-b}"]), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
_hosts = st.lists(
    st.sampled_from(
        ["http://a:1", "a:1", "ftp://x", "", "http://", "https://b/", "http://[::1", "a:b", "b:99999", "bad host"]
    ),
    max_size=2,
)
_durations = st.sampled_from(["1s", "0", "bad", "1h", "-1s", "0.5ms"])
_namespaces = st.dictionaries(st.sampled_from(["backend/lambda", "x/y", "test/core-probe"]), _json, max_size=2)


def _document(wrong_types: bool) -> st.SearchStrategy:
    backend = _fields(
        {
            "host": _hosts,
            "url_pattern": _paths | st.sampled_from(["/x?q={id}", "x", ""]),
            "method": st.sampled_from(["GET", "post", "FETCH"]),
            "encoding": st.sampled_from(["json", "safejson", "string", "no-op", "xml"]),
            "is_collection": st.booleans(),
            "disable_host_sanitize": st.booleans(),
            "allow": st.lists(st.sampled_from(["a", "a.b", ""]), max_size=3),
            "deny": st.lists(st.sampled_from(["a", "a.b", ""]), max_size=3),
            "mapping": st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["b", "c.d", ""]), max_size=2),
            "group": st.text(max_size=3),
            "target": st.sampled_from(["a", "a.b", ""]),
            "extra_config": _namespaces,
        },
        wrong_types,
    )
    endpoint = _fields(
        {
            "endpoint": _paths,
            "method": st.sampled_from(["GET", "post", "HEAD", "FETCH"]),
            "backend": st.lists(backend, max_size=3),
            "timeout": _durations,
            "cache_ttl": _durations,
            "output_encoding": st.sampled_from(["json", "json-collection", "string", "no-op", "xml"]),
            "input_headers": st.lists(st.sampled_from(["*", "X-A"]), max_size=2),
            "concurrent_calls": st.integers(-1, 3),
            "extra_config": _namespaces,
        },
        wrong_types,
        required=("endpoint", "backend"),
    )
    return _fields(
        {
            "version": st.just(3),
            "port": st.integers(-1, 70000),
            "host": _hosts,
            "timeout": _durations,
            "cache_ttl": _durations,
            "output_encoding": st.sampled_from(["json", "no-op"]),
            "extra_config": _namespaces,
            "endpoints": st.lists(endpoint, max_size=4),
        },
        wrong_types,
        required=("version",),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json | _document(wrong_types=False) | _document(wrong_types=True))
def test_validate_document_raises_only_config_error(doc: Any) -> None:
    try:
        loaded = validate_document(doc, LoadOptions())
    except ConfigError as exc:
        assert exc.issues and all(isinstance(i.message, str) and i.message for i in exc.issues)
        return
    # Whatever validates is servable: every HTTP endpoint path is absolute and every timeout positive.
    assert loaded.service.timeout > 0
    assert all(e.endpoint.startswith("/") and (e.timeout is None or e.timeout > 0) for e in loaded.service.endpoints)


# --- durations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("2h45m", 9900.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("300us", 0.0003),
        ("1µs", 1e-6),
        ("10ns", 1e-8),
        ("1h1m1s1ms", 3661.001),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert math.isclose(parse_duration(text), seconds, rel_tol=1e-12)


@pytest.mark.parametrize("text", ["", "3", "3x", "s", "1m30", "-1s", "3 s", "3S", "1d", "ms", "1.2.3s", "00"])
def test_malformed_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r'malformed duration .*: write it like "3s", "500ms" or "1m30s"'):
        parse_duration(text)


@pytest.mark.parametrize("value", [3, 1.5, None, ["3s"]])
def test_duration_must_be_a_string(value: Any) -> None:
    with pytest.raises(ValueError, match='expected a duration string such as "2s" or "500ms"'):
        parse_duration(value)


@given(h=st.integers(0, 100), m=st.integers(0, 59), s=st.integers(0, 59), ms=st.integers(0, 999))
def test_duration_parts_add_up(h: int, m: int, s: int, ms: int) -> None:
    assert math.isclose(parse_duration(f"{h}h{m}m{s}s{ms}ms"), h * 3600 + m * 60 + s + ms / 1000, rel_tol=1e-9)


@given(st.text(max_size=12))
def test_parse_duration_only_raises_value_error(text: str) -> None:
    try:
        assert parse_duration(text) >= 0
    except ValueError:
        pass
