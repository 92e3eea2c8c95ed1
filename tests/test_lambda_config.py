"""`backend/lambda` config: every refusal names the backend's JSON path and says what to write instead."""

from __future__ import annotations

import subprocess
import sys

import boto3
import orjson
import pytest
from botocore.config import Config

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from tests.support.procs import Process, free_port, wait_http

NS = 'endpoints[0].backend[0].extra_config["backend/lambda"]'


def doc(lambda_cfg, endpoint: str = "/call/{lambda}", namespace: str = "backend/lambda") -> dict:
    return {"version": 3, "endpoints": [{"endpoint": endpoint, "backend": [{"extra_config": {namespace: lambda_cfg}}]}]}


def errors(document: dict, monkeypatch, *, region: str | None = "us-east-1", local: str | None = None) -> list[str]:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    if region:
        monkeypatch.setenv("AWS_REGION", region)
    try:
        validate_document(document, LoadOptions(local_lambda_endpoint=local))
    except ConfigError as exc:
        return [str(i) for i in exc.issues]
    return []


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (
            {"region": "us-east-1"},
            f'{NS}: set exactly one of "function_name" (a fixed function) or "function_param_name" '
            "(the endpoint placeholder naming the function)",
        ),
        ({"function_name": "a", "function_param_name": "lambda"}, f"{NS}: set exactly one of"),
        (
            {"function_param_name": "Other"},
            f"{NS}.function_param_name: 'Other' names no placeholder of endpoint /call/{{lambda}} (it has {{lambda}})",
        ),
        ({"function_name": "f", "max_retries": 1.5}, f"{NS}.max_retries: must be an integer >= -1"),
        ({"function_name": "f", "max_retries": -2}, f"{NS}.max_retries: must be an integer >= -1"),
        ({"function_name": "f", "max_retries": "1"}, f"{NS}.max_retries: must be an integer >= -1"),
        ({"function_name": "bad name!"}, f"{NS}.function_name: 'bad name!' is not a Lambda function name"),
        ({"function_name": "x" * 65}, f"{NS}.function_name:"),
        ({"function_name": "f", "endpoint": "ftp://host"}, f"{NS}.endpoint: 'ftp://host' is not a usable URL"),
        ({"function_name": "f", "endpoint": "localhost:4566"}, f"{NS}.endpoint: 'localhost:4566' is not a usable URL"),
        ({"function_name": "f", "invocation_type": "DryRun"}, f"{NS}.invocation_type:"),
        ({"function_name": "f", "payload_format": "v3"}, f"{NS}.payload_format:"),
        ({"function_name": "f", "qualifier": "a b"}, f"{NS}.qualifier:"),
    ],
)
def test_refusals_name_the_path(cfg, expected, monkeypatch):
    found = errors(doc(cfg), monkeypatch)
    assert any(e.startswith(expected) for e in found), found


def test_namespace_value_must_be_an_object(monkeypatch):
    found = errors(doc("myLambdaFunction"), monkeypatch)
    assert found == [f'{NS}: must be an object such as {{"function_name": "my-function", "region": "us-east-1"}}']


def test_no_region_says_where_it_looked(monkeypatch):
    found = errors(doc({"function_name": "f"}), monkeypatch, region=None)
    assert found == [
        f"{NS}.region: no AWS region found (looked at: explicit setting, env AWS_REGION, "
        f"env AWS_DEFAULT_REGION, profile 'default' in /nonexistent/config): "
        'add "region": "us-east-1"'
    ]


def test_no_region_is_fine_with_the_local_runtime(monkeypatch):
    assert errors(doc({"function_name": "f"}), monkeypatch, region=None, local="http://127.0.0.1:9") == []


def test_seed_shapes_and_legacy_alias_are_accepted(monkeypatch):
    seed = {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/call-a-lambda/{lambda}",
                "backend": [
                    {
                        "host": ["ignore"],
                        "url_pattern": "/ignore",
                        "extra_config": {
                            "backend/lambda": {"function_param_name": "Lambda", "region": "us-east-1", "max_retries": 1}
                        },
                    }
                ],
            }
        ],
    }
    assert errors(seed, monkeypatch) == []
    legacy = doc(
        {"function_name": "arn:aws:lambda:us-east-1:123456789012:function:f:prod"},
        namespace="github.com/devopsfaith/krakend-lambda",
    )
    assert errors(legacy, monkeypatch) == []


def test_unknown_lambda_fields_are_warned(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    loaded = validate_document(doc({"function_name": "f", "log_type": "Tail"}), LoadOptions())
    assert f"{NS}.log_type: not supported, ignored" in [str(w) for w in loaded.warnings]


def test_function_from_the_url_without_allowed_functions_is_warned(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    open_ = validate_document(doc({"function_param_name": "lambda"}), LoadOptions())
    listed = validate_document(doc({"function_param_name": "lambda", "allowed_functions": ["orders-*"]}), LoadOptions())
    assert any(
        str(w).startswith(f"{NS}.function_param_name: any function the credentials may invoke") for w in open_.warnings
    )
    assert not [w for w in listed.warnings if "function_param_name" in str(w)]


def test_check_command_reports_lambda_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(doc({"function_param_name": "nope", "region": "us-east-1"})))
    result = subprocess.run(
        [sys.executable, "-m", "lambdagate", "check", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"{NS}.function_param_name: 'nope' names no placeholder" in result.stderr


def test_functions_serve_command_speaks_the_invoke_api(tmp_path):
    (tmp_path / "hello.py").write_text("def handler(event, context):\n    return {'hi': event.get('name')}\n")
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "lambdagate", "functions", "serve", str(tmp_path), "--port", str(port)], tmp_path / "log"
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/__health", proc=proc.proc)
        client = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
            config=Config(retries={"total_max_attempts": 1}),
        )
        reply = client.invoke(FunctionName="hello", Payload=b'{"name": "Ana"}')
        assert orjson.loads(reply["Payload"].read()) == {"hi": "Ana"}
        assert [f["FunctionName"] for f in client.list_functions()["Functions"]] == ["hello"]
    finally:
        proc.stop()
