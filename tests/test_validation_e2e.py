"""`validation/cel` and `validation/json-schema` in a real `lambdagate run` against a real upstream: a signed token's
claims, a header, a backend's response, a body schema, and what the log says about each refusal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import orjson

from tests.support.gateway import Gateway
from tests.support.jwt_keys import jwks, sign
from tests.test_lambda_backend import http
from tests.test_reliability import _wait_for


def test_cel_and_json_schema_in_a_real_process(
    upstream: str, start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    keys = tmp_path / "jwks.json"
    keys.write_bytes(orjson.dumps(jwks(("RS256", "k1"))))
    checks = [
        {"check_expr": "JWT.type == 'ACCESS'"},
        {"check_expr": "req_headers['X-Tenant'][0] == JWT.tenant"},
    ]
    backend_checks = [{"check_expr": "resp_data.method == 'POST' && req_path == '/echo/orders'"}]
    schema = {"type": "object", "required": ["item"], "properties": {"item": {"type": "string"}}}
    config = {
        "version": 3,
        "timeout": "3s",
        "endpoints": [
            {
                "endpoint": "/orders",
                "method": "POST",
                "input_headers": ["X-Tenant", "Authorization"],
                "extra_config": {
                    "auth/validator": {"alg": "RS256", "jwk_local_path": str(keys)},
                    "validation/cel": checks,
                    "validation/json-schema": schema,
                },
                "backend": [
                    {
                        "host": [upstream],
                        "url_pattern": "/echo/orders",
                        "extra_config": {"validation/cel": backend_checks},
                    }
                ],
            }
        ],
    }
    gateway = start_gateway(config, "--workers", "1")
    url = f"{gateway.url}/orders"

    def post(token: str, tenant: str, body: bytes = b'{"item": "book"}') -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}", "X-Tenant": tenant, "Content-Type": "application/json"}
        status, _, reply = http("POST", url, body, headers)
        return status, json.loads(reply)

    status, reply = post(sign(type="ACCESS", tenant="acme"), "acme")
    assert (status, reply["path"], reply["body"]) == (200, "/echo/orders", '{"item": "book"}')
    assert post(sign(type="REFRESH", tenant="acme"), "acme") == (401, {"error": "unauthorized"})
    assert post(sign(type="ACCESS", tenant="acme"), "other") == (500, {"error": "request aborted by evaluator #1"})
    assert post(sign(type="ACCESS", tenant="acme"), "acme", b'{"item": 3}') == (
        400,
        {"error": "request body does not match the schema"},
    )
    _wait_for(lambda: "request body does not match" in gateway.log())  # the log is written in the background
    log = gateway.log()
    assert "POST /orders: check #0 refused the request: JWT.type == 'ACCESS'" in log
    assert "POST /orders: check #1 refused the request" in log
    assert "request body does not match the schema ['/item: 3 is not of type \"string\"']" in log
    assert "Traceback" not in log
