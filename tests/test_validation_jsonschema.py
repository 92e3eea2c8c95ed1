"""`validation/json-schema` in-process: valid and invalid bodies (400, errors shown only with the router's
`return_error_msg`), huge and deeply nested bodies, the drafts, and remote `$ref`s, which a local server shows are
never fetched unless `allow_remote_schema_refs` says so. The real-process case is in test_validation_e2e.py."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run

NS = "validation/json-schema"
USER = {
    "type": "object",
    "required": ["email", "age"],
    "properties": {"email": {"type": "string", "format": "email"}, "age": {"type": "integer", "minimum": 0}},
}


def endpoint(path: str, schema: Any, **kw: Any) -> dict:
    return {
        "endpoint": path,
        "method": "POST",
        "extra_config": {NS: schema},
        "backend": [{"host": ["http://fake"], "url_pattern": "/a"}],
        **kw,
    }


def config(*endpoints: dict, **service: Any) -> dict:
    return {"version": 3, "timeout": "2s", "endpoints": list(endpoints), **service}


def fakes() -> FakeBackends:
    return FakeBackends({"/a": returning({"ok": True})})


def test_valid_and_invalid_bodies() -> None:
    backends = fakes()

    async def scenario(gw: InProcessGateway) -> None:
        ok = await gw.request("POST", "/u", body=b'{"email": "a@b.c", "age": 3}')
        assert (ok.status, ok.json()) == (200, {"ok": True})
        assert backends.seen["/a"][0].body == b'{"email": "a@b.c", "age": 3}'  # the body goes on untouched
        for body, error in [
            (b'{"email": "a@b.c", "age": -1}', "request body does not match the schema"),
            (b'{"email": "not an address", "age": 1}', "request body does not match the schema"),  # draft 7 formats
            (b"[]", "request body does not match the schema"),
            (b"", "could not validate an empty body"),
            (b"{not json", "request body is not JSON"),
        ]:
            refused = await gw.request("POST", "/u", body=body)
            # No error list unless the service's router says return_error_msg.
            assert (refused.status, refused.json()) == (400, {"error": error}), body
        assert len(backends.seen["/a"]) == 1

    run(config(endpoint("/u", USER)), backends, scenario)


def test_the_error_list_is_shown_with_router_return_error_msg() -> None:
    async def scenario(gw: InProcessGateway) -> None:
        refused = await gw.request("POST", "/u", body=b'{"age": "x"}')
        assert refused.status == 400
        assert refused.json() == {
            "error": "request body does not match the schema",
            "details": {"errors": ['/: "email" is a required property', '/age: "x" is not of type "integer"']},
        }

    run(config(endpoint("/u", USER), extra_config={"router": {"return_error_msg": True}}), fakes(), scenario)


def test_huge_and_deeply_nested_bodies_are_bounded() -> None:
    backends = fakes()
    recursive = {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}
    doc = config(
        endpoint("/deep", recursive),
        endpoint("/list", {"type": "array", "items": {"type": "integer"}}),
        extra_config={"lambdagate/server": {"max_body_bytes": 4 * 1024 * 1024}},
    )

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("POST", "/deep", body=b"[" * 100 + b"]" * 100)).status == 200
        for depth in (129, 1025, 1_000_000):  # past the depth limit, past orjson's, and absurd
            refused = await gw.request("POST", "/deep", body=b"[" * depth + b"]" * depth)
            if depth * 2 > 4 * 1024 * 1024:
                assert refused.status == 413
            else:
                assert (refused.status, refused.json()) == (
                    400,
                    {"error": "request body nested deeper than 128 levels"},
                )
        big = orjson.dumps(list(range(300_000)))  # ~2 MB, validated item by item
        assert (await gw.request("POST", "/list", body=big)).status == 200
        bad = orjson.dumps([*range(300_000), "x"])
        assert (await gw.request("POST", "/list", body=bad)).status == 400
        assert (await gw.request("POST", "/list", body=b"[" + b"1," * 2_500_000 + b"1]")).status == 413
        assert len(backends.seen["/a"]) == 2

    run(doc, backends, scenario)


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        # draft 4: exclusiveMaximum is a boolean beside maximum
        ({"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": True}, 4, 5),
        # draft 6: exclusiveMaximum is a number; const
        ({"$schema": "http://json-schema.org/draft-06/schema#", "exclusiveMaximum": 5, "const": 4}, 4, 5),
        # draft 7: if / then
        (
            {"$schema": "http://json-schema.org/draft-07/schema#", "if": {"minimum": 10}, "then": {"multipleOf": 10}},
            20,
            15,
        ),
        # 2020-12: prefixItems
        (
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": [{"type": "string"}]},
            ["a", 1],
            [1, "a"],
        ),
        # no $schema: draft 7, as KrakenD's validator reads it (items as a list validates positions)
        ({"items": [{"type": "string"}]}, ["a", 1], [1, "a"]),
    ],
)
def test_drafts(schema: dict, good: Any, bad: Any) -> None:
    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("POST", "/d", body=orjson.dumps(good))).status == 200
        assert (await gw.request("POST", "/d", body=orjson.dumps(bad))).status == 400

    run(config(endpoint("/d", schema)), fakes(), scenario)


class SchemaServer(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = b'{"type": "string", "maxLength": 3}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def schema_server() -> Iterator[SchemaServer]:
    server = SchemaServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_remote_ref_is_refused_and_never_fetched(schema_server: SchemaServer) -> None:
    remote = {"properties": {"name": {"$ref": f"{schema_server.url}/name.json"}}}
    relative = {"$id": f"{schema_server.url}/root.json", "properties": {"name": {"$ref": "name.json"}}}
    for schema in (remote, relative):
        with pytest.raises(ConfigError) as info:
            validate_document(config(endpoint("/r", schema)), LoadOptions())
        [issue] = info.value.issues
        assert str(issue).startswith('endpoints[0].extra_config["validation/json-schema"]: is not a usable JSON Schema')
        assert "allow_remote_schema_refs" in str(issue)
    assert schema_server.hits == []


def test_allow_remote_schema_refs_fetches_once_when_the_config_is_read(schema_server: SchemaServer) -> None:
    remote = {"properties": {"name": {"$ref": f"{schema_server.url}/name.json"}}}
    doc = config(endpoint("/r", remote), extra_config={"lambdagate/server": {"allow_remote_schema_refs": True}})

    async def scenario(gw: InProcessGateway) -> None:
        hits = len(schema_server.hits)
        assert (await gw.request("POST", "/r", body=b'{"name": "abc"}')).status == 200
        assert (await gw.request("POST", "/r", body=b'{"name": "abcd"}')).status == 400
        assert len(schema_server.hits) == hits  # nothing fetched per request

    run(doc, fakes(), scenario)
    assert schema_server.hits and set(schema_server.hits) == {"/name.json"}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "objekt"}, "is not a usable JSON Schema"),
        ({"minLength": "x"}, "is not a usable JSON Schema"),
        ({"$ref": "#/definitions/missing"}, "is not a usable JSON Schema"),
        ({"pattern": "("}, "is not a usable JSON Schema"),
        ("object", "must be a JSON Schema object"),
    ],
)
def test_a_schema_that_does_not_compile_is_refused(schema: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_document(config(endpoint("/s", schema)), LoadOptions())
    [issue] = info.value.issues
    assert str(issue).startswith(f'endpoints[0].extra_config["validation/json-schema"]: {message}')


def test_the_old_name_is_read() -> None:
    doc = config(endpoint("/s", {}))
    doc["endpoints"][0]["extra_config"] = {"github.com/devopsfaith/krakend-jsonschema": {"type": "object"}}

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("POST", "/s", body=b"1")).status == 400
        assert (await gw.request("POST", "/s", body=b"{}")).status == 200

    run(doc, fakes(), scenario)
