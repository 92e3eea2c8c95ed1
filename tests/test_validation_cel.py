"""`validation/cel` in-process (tests/support/asgi.py): each KrakenD variable, when each check runs and what a
refusal answers, JWT claims from real signed tokens, and the config's refusals (with the place in the expression).
The real-process case is in test_validation_e2e.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from lambdagate import plugins
from lambdagate.config import LoadOptions, validate_document
from lambdagate.config.model import BackendConfig
from lambdagate.errors import ConfigError
from lambdagate.pipeline import wrapped_factory
from lambdagate.proxy import ProxyRequest, ProxyResponse
from lambdagate.validation.cel import canonical_header, compile_error, named_variables
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run
from tests.support.jwt_keys import jwks, sign

NS = "validation/cel"


class WrappedFakes(FakeBackends):
    """Fake backends with the backend wrappers their config asks for (validation/cel among them)."""

    def factory(self, backend: BackendConfig):
        wrappers = [w for name, w in plugins.BACKEND_WRAPPERS.items() if name in backend.namespaces]
        return wrapped_factory(super().factory(backend), wrappers)


def checks(*expressions: str) -> list[dict]:
    return [{"check_expr": e} for e in expressions]


def endpoint(path: str, *expressions: str, pattern: str = "/a", method: str = "GET", **kw: Any) -> dict:
    return {
        "endpoint": path,
        "method": method,
        "extra_config": {NS: checks(*expressions)},
        "backend": [{"host": ["http://fake"], "url_pattern": pattern}],
        **kw,
    }


def config(*endpoints: dict, **service: Any) -> dict:
    return {"version": 3, "timeout": "2s", "endpoints": list(endpoints), **service}


def errors_of(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_document(doc, LoadOptions())
    return [str(issue) for issue in info.value.issues]


def test_each_request_variable_at_endpoint_level() -> None:
    backends = WrappedFakes({"/a": returning({"ok": True})})
    doc = config(
        endpoint("/m", "req_method == 'POST'", method="POST"),
        endpoint("/p/{id}", "req_path == '/p/7' && req_params.Id == '7'"),
        endpoint("/h", "req_headers['X-Tenant'][0] == 'a'", input_headers=["X-Tenant"]),
        endpoint("/n", "!('X-Tenant' in req_headers) && req_headers['X-Forwarded-For'][0] == '127.0.0.1'"),
        endpoint("/q", "req_querystring.page == ['1', '2']", input_query_strings=["page"]),
        endpoint("/t", "now.startsWith('20') && now.endsWith('Z') && now > '2024-01-01T00:00:00Z'"),
    )

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("POST", "/m")).status == 200
        assert (await gw.request("GET", "/p/7")).status == 200
        refused = await gw.request("GET", "/p/8")
        assert (refused.status, refused.json()) == (500, {"error": "request aborted by evaluator #0"})
        assert (await gw.request("GET", "/h", [("x-tenant", "a")])).status == 200
        assert (await gw.request("GET", "/h", [("x-tenant", "b")])).status == 500
        assert (await gw.request("GET", "/h")).status == 500  # a missing key is an evaluation error: refused
        # Only what input_headers lets through reaches the checks, as in KrakenD.
        assert (await gw.request("GET", "/n", [("x-tenant", "a")])).status == 200
        assert (await gw.request("GET", "/q?page=1&page=2&other=x")).status == 200
        assert (await gw.request("GET", "/q?page=1")).status == 500
        assert (await gw.request("GET", "/t")).status == 200
        # The refused requests never reached the backend.
        assert len(backends.seen["/a"]) == 6

    run(doc, backends, scenario)


def reply_with(data: dict, *, status: int = 200, headers: list | None = None, complete: bool = True):
    async def answer(req: ProxyRequest) -> ProxyResponse:
        return ProxyResponse(dict(data), complete, status, headers or [])

    return answer


def test_response_variables_at_endpoint_level_see_the_merged_response() -> None:
    backends = WrappedFakes(
        {
            "/a": reply_with({"a": 1}, headers=[("x-served-by", "one")]),
            "/b": reply_with({"b": "two"}),
            "/bad": returning(error=RuntimeError("down")),
        }
    )
    two = [{"host": ["http://fake"], "url_pattern": "/a"}, {"host": ["http://fake"], "url_pattern": "/b"}]
    doc = config(
        endpoint("/data", "resp_data.a == 1 && resp_completed && resp_metadata_status == 200"),
        endpoint("/hdr", "resp_metadata_headers['X-Served-By'] == ['one']"),
        endpoint("/merged", "resp_data.a == 1 && resp_data.b == 'two'") | {"backend": two},
        endpoint("/no", "resp_data.a == 2"),
        endpoint("/failed", "resp_data.a == 2", pattern="/bad"),
    )

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/data")).json() == {"a": 1}
        assert (await gw.request("GET", "/hdr")).status == 200
        assert (await gw.request("GET", "/merged")).json() == {"a": 1, "b": "two"}
        refused = await gw.request("GET", "/no")
        assert (refused.status, refused.json()) == (500, {"error": "request aborted by evaluator #0"})
        # The backend was called (a response check runs after it), and its data did not leak.
        assert len(backends.seen["/a"]) == 4
        # A failed pipe is answered as it is: no check runs on it.
        assert (await gw.request("GET", "/failed")).json() == {"error": "the backend failed"}

    run(doc, backends, scenario)


def backend(pattern: str, *expressions: str, **kw: Any) -> dict:
    extra = {NS: checks(*expressions)} if expressions else {}
    return {"host": ["http://fake"], "url_pattern": pattern, "extra_config": extra, **kw}


def test_backend_checks_drop_their_backend_before_or_after_its_call() -> None:
    backends = WrappedFakes({"/u/{id}": returning({"u": 1}), "/v": returning({"v": 2}), "/w": returning({"w": 3})})
    doc = config(
        {
            "endpoint": "/x/{id}",
            "backend": [
                # req_method and req_path are the backend's: its method, its url_pattern filled in.
                backend("/u/{id}", "req_method == 'POST' && req_path == '/u/5' && req_params.Id == '5'", method="POST"),
                backend("/v", "resp_data.v == 3"),
                backend("/w"),
            ],
        },
        {"endpoint": "/single", "backend": [backend("/v", "req_path == '/nope'")]},
    )

    async def scenario(gw: InProcessGateway) -> None:
        partial = await gw.request("GET", "/x/5")
        # /v's response check refused: that backend is dropped, the others answer (a partial response).
        assert (partial.status, partial.json()) == (200, {"u": 1, "w": 3})
        assert partial.header("x-krakend-completed") == "false"
        partial = await gw.request("GET", "/x/6")
        assert partial.json() == {"w": 3}
        assert len(backends.seen["/u/{id}"]) == 1  # refused before its call the second time
        single = await gw.request("GET", "/single")
        assert (single.status, single.json()) == (500, {"error": "request aborted by evaluator #0"})

    run(doc, backends, scenario)


@pytest.fixture
def keyfile(tmp_path: Path) -> str:
    path = tmp_path / "jwks.json"
    path.write_bytes(orjson.dumps(jwks(("RS256", "k1"))))
    return str(path)


def test_jwt_claims_from_a_real_signed_token(keyfile: str) -> None:
    backends = WrappedFakes({"/a": returning({"ok": True})})
    validator = {"auth/validator": {"alg": "RS256", "jwk_local_path": keyfile}}
    only_jwt = endpoint("/jwt", "has(JWT.sub) && JWT.type == 'ACCESS'", "JWT.exp > 0")
    mixed = endpoint("/mixed", "has(JWT.sub) && req_headers['X-Tenant'][0] == JWT.tenant", input_headers=["X-Tenant"])
    for ep in (only_jwt, mixed):
        ep["extra_config"].update(validator)
    doc = config(only_jwt, mixed)

    def bearer(token: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {token}"), *extra]

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/jwt", bearer(sign(type="ACCESS")))).status == 200
        # A JWT-only check runs with the token's validation: 401, as KrakenD's CEL rejecter.
        refused = await gw.request("GET", "/jwt", bearer(sign(type="REFRESH")))
        assert (refused.status, refused.json()) == (401, {"error": "unauthorized"})
        assert refused.header("www-authenticate") == "Bearer"
        assert (await gw.request("GET", "/jwt", bearer(sign(type="ACCESS", exp=int(time.time()) - 5)))).status == 401
        assert (await gw.request("GET", "/jwt")).status == 401  # no token: the validator's own refusal
        token = sign(tenant="acme")
        assert (await gw.request("GET", "/mixed", bearer(token, ("X-Tenant", "acme")))).status == 200
        assert (await gw.request("GET", "/mixed", bearer(token, ("X-Tenant", "other")))).status == 500
        assert len(backends.seen["/a"]) == 2

    run(doc, backends, scenario)


def test_a_jwt_check_without_a_token_validator_is_refused() -> None:
    assert errors_of(config(endpoint("/a", "JWT.sub == 'x'"))) == [
        'endpoints[0].extra_config["validation/cel"][0].check_expr: uses JWT, but the endpoint has no auth/validator'
    ]


def test_compile_errors_name_the_check_and_the_place_in_the_expression() -> None:
    doc = config(
        endpoint("/a", "req_method == 'GET'", "has(JWT.sub) &&", "resp_metadata_status == 'ok'", "req_method"),
        {"endpoint": "/b", "backend": [backend("/b", "nope == 1")]},
    )
    doc["endpoints"][0]["extra_config"][NS].append({"check_expr": ""})
    errors = errors_of(doc)
    assert errors[0].startswith(
        'endpoints[0].extra_config["validation/cel"][1].check_expr: does not compile: line 1, column 16: '
        "Syntax error: mismatched input '<EOF>'"
    )
    assert errors[1:] == [
        'endpoints[0].extra_config["validation/cel"][2].check_expr: does not compile: line 1, column 22: '
        "found no matching overload for '_==_' applied to '(int, string)'",
        'endpoints[0].extra_config["validation/cel"][3].check_expr: gives string, not a boolean: a check must be '
        "true or false",
        'endpoints[0].extra_config["validation/cel"][4].check_expr: must be a CEL expression, e.g. '
        "\"req_method == 'GET'\"",
        'endpoints[1].backend[0].extra_config["validation/cel"][0].check_expr: does not compile: line 1, column 1: '
        "undeclared reference to 'nope' (in container '')",
    ]


@pytest.mark.parametrize("value", [{}, [], "true", [["req_method == 'GET'"]]])
def test_the_namespace_must_be_a_list_of_checks(value: Any) -> None:
    doc = config(endpoint("/a"))
    doc["endpoints"][0]["extra_config"][NS] = value
    [error] = errors_of(doc)
    assert error.startswith('endpoints[0].extra_config["validation/cel"]') and "must be" in error


def test_the_old_name_and_mod_expr_are_read_with_warnings() -> None:
    backends = WrappedFakes({"/a": returning({"ok": True})})
    doc = config(endpoint("/a"))
    doc["endpoints"][0]["extra_config"] = {
        "github.com/devopsfaith/krakend-cel": [{"check_expr": "req_method == 'POST'", "mod_expr": "x"}]
    }
    warnings = [str(w) for w in validate_document(doc, LoadOptions()).warnings]
    assert any("is the old name of `validation/cel`" in w for w in warnings)
    assert any(
        w.endswith('["github.com/devopsfaith/krakend-cel"][0].mod_expr: not supported, ignored') for w in warnings
    )

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a")).status == 500
        assert backends.seen["/a"] == []

    run(doc, backends, scenario)


def test_values_cel_cannot_hold_refuse_instead_of_failing_the_worker() -> None:
    backends = WrappedFakes({"/big": returning({"n": 2**70}), "/ok": returning({"n": 1})})
    doc = config(endpoint("/big", "resp_data.n > 0", pattern="/big"), endpoint("/ok", "resp_data.n > 0", pattern="/ok"))

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/big")).status == 500
        assert (await gw.request("GET", "/ok")).status == 200

    run(doc, backends, scenario)


def test_helpers() -> None:
    assert named_variables("has(JWT.sub) && req_headers['resp_data'][0] == \"now\" && x.req_path") == {
        "JWT",
        "req_headers",
    }
    assert named_variables("'''JWT''' + r'now' == req_method") == {"req_method"}
    assert canonical_header("x-tenant-ID") == "X-Tenant-Id"
    assert compile_error("ERROR: <input>:2:3: Syntax error: x\n | ...") == "line 2, column 3: Syntax error: x"
