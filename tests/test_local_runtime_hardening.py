"""The local Lambda runtime against a hostile or careless caller (issue 16, "Local runtime").

- handlers see Lambda's variables and their functions.yaml ``environment``, never the gateway's
  environment (its AWS keys above all), end to end through ``lambdagate run --functions``;
- ``Event`` invocations queue up to ``max_queued_events`` per function, then get 429;
- ListFunctions/GetFunction redact environment values unless the runtime runs with ``--show-env``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from lambdagate.local_runtime import load_functions, start_in_background
from tests.support.gateway import launch_gateway
from tests.support.procs import Process, free_port, python_module, wait_http
from tests.test_lambda_backend import http

# The runtime and client fixtures are test_local_runtime's, over this module's functions_dir.
from tests.test_local_runtime import client, isolated_aws_env, make_client, runtime, write_functions  # noqa: F401

GATEWAY_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAGATEWAYKEY000000",
    "AWS_SECRET_ACCESS_KEY": "gateway-secret-access-key",
    "AWS_SESSION_TOKEN": "gateway-session-token",
    "LAMBDAGATE_TEST_API_TOKEN": "gateway-api-token",
}
# Everything a worker may see when functions.yaml sets nothing: Lambda's variables, the three that keep an SDK
# from finding credentials elsewhere, and what the interpreter needs (LC_CTYPE: Python's own locale coercion).
WORKER_NAMES = {
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "_HANDLER",
    "TZ",
    "LANG",
    "PATH",
    "PYTHONPATH",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "PYTHONUNBUFFERED",
    "MALLOC_ARENA_MAX",
    "LD_LIBRARY_PATH",
    "PYTHONHOME",
    "TMPDIR",
    "LC_CTYPE",
}

FUNCTIONS = {
    "envdump.py": """
        import os

        def handler(event, context):
            return {"env": dict(os.environ)}
    """,
    "slow.py": """
        import time

        def handler(event, context):
            time.sleep(event.get("seconds", 0))
            return "done"
    """,
    "functions.yaml": """
        functions:
          withcreds:
            handler: envdump.handler
            environment: {AWS_ACCESS_KEY_ID: from-yaml, AWS_SECRET_ACCESS_KEY: yaml-secret, DB_PASSWORD: hunter2-value}
          slow: {timeout: 60, reserved_concurrency: 1}
          small: {handler: slow.handler, timeout: 10, reserved_concurrency: 1, max_queued_events: 2}
    """,
}


@pytest.fixture(scope="module")
def functions_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hardening")
    write_functions(directory, FUNCTIONS)
    return directory


# -- a clean environment for handlers ------------------------------------------------------------------------------


def test_handlers_never_see_the_gateways_environment(functions_dir, tmp_path):
    config = {
        "version": 3,
        "endpoints": [
            {"endpoint": f"/{name}", "backend": [{"extra_config": {"backend/lambda": {"function_name": name}}}]}
            for name in ("envdump", "withcreds")
        ],
    }
    gateway = launch_gateway(config, tmp_path, "--functions", str(functions_dir), env=GATEWAY_SECRETS)
    try:
        status, _, body = http("GET", f"{gateway.url}/envdump")
        assert status == 200, body
        env = json.loads(body)["env"]
        status, _, body = http("GET", f"{gateway.url}/withcreds")
        assert status == 200, body
        configured = json.loads(body)["env"]
    finally:
        gateway.process.stop()
    assert not env.keys() & GATEWAY_SECRETS.keys()
    assert not set(env.values()) & set(GATEWAY_SECRETS.values())
    assert env.keys() <= WORKER_NAMES, sorted(env.keys() - WORKER_NAMES)
    root = str(functions_dir.resolve())
    assert (env["AWS_LAMBDA_FUNCTION_NAME"], env["LAMBDA_TASK_ROOT"], env["_HANDLER"]) == (
        "envdump",
        root,
        "envdump.handler",
    )
    assert (env["TZ"], env["LANG"], env["AWS_LAMBDA_INITIALIZATION_TYPE"]) == (":UTC", "en_US.UTF-8", "on-demand")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == root
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == env["AWS_CONFIG_FILE"] == os.devnull
    # Credentials reach a handler only through functions.yaml.
    assert (configured["AWS_ACCESS_KEY_ID"], configured["AWS_SECRET_ACCESS_KEY"]) == ("from-yaml", "yaml-secret")
    assert configured["DB_PASSWORD"] == "hunter2-value" and "AWS_SESSION_TOKEN" not in configured
    assert configured.keys() - {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"} <= WORKER_NAMES


# -- a bounded event queue -----------------------------------------------------------------------------------------


def event(client, name: str, seconds: float) -> int:
    """Status of one Event invocation; a 429 must be shaped as Lambda's TooManyRequestsException."""
    try:
        return client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"seconds": seconds}))[
            "StatusCode"
        ]
    except ClientError as exc:
        error = exc.response["Error"]
        assert error["Code"] == "TooManyRequestsException" and error["Message"] == "Rate Exceeded."
        assert exc.response["Reason"] == "FunctionInvocationRateLimitExceeded"
        assert exc.response["Type"] == "User" and exc.response["retryAfterSeconds"] == "1"
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        return 429


def test_event_invocations_beyond_the_default_bound_get_429(client):
    # One worker, each invocation sleeping 30 s: none finishes during the flood (bounded: 110 requests).
    statuses = [event(client, "slow", 30) for _ in range(110)]
    assert statuses == [202] * 100 + [429] * 10


def test_event_queue_bound_from_functions_yaml_and_it_frees_up(client):
    assert [event(client, "small", 0.3) for _ in range(4)] == [202, 202, 429, 429]
    deadline = time.monotonic() + 15
    while (status := event(client, "small", 0)) == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 202


def test_event_payloads_are_held_to_lambdas_asynchronous_limit(client):
    """Queued payloads stay bounded: an Event payload over 1 MB is refused as Lambda refuses it; a synchronous one of
    the same size is still taken (6 MB limit)."""
    big = json.dumps({"seconds": 0, "pad": "x" * (1024 * 1024)})
    with pytest.raises(ClientError) as refused:
        client.invoke(FunctionName="small", InvocationType="Event", Payload=big)
    assert refused.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert client.invoke(FunctionName="small", Payload=big)["StatusCode"] == 200


# -- environment values in the control plane -----------------------------------------------------------------------


def raw_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_list_and_get_function_redact_environment_values(runtime, client, functions_dir):
    redacted = {"AWS_ACCESS_KEY_ID": "<redacted>", "AWS_SECRET_ACCESS_KEY": "<redacted>", "DB_PASSWORD": "<redacted>"}
    listed = {f["FunctionName"]: f for f in client.list_functions()["Functions"]}
    assert listed["withcreds"]["Environment"]["Variables"] == redacted
    assert "Environment" not in listed["envdump"]
    assert client.get_function(FunctionName="withcreds")["Configuration"]["Environment"]["Variables"] == redacted
    config = client.get_function_configuration(FunctionName="withcreds")
    assert config["Environment"]["Variables"] == redacted
    base = f"{runtime.url}/2015-03-31/functions"
    for body in (raw_get(base + "/"), raw_get(base + "/withcreds"), raw_get(base + "/withcreds/configuration")):
        assert b"hunter2-value" not in body and b"yaml-secret" not in body
    # RevisionId hashes the configuration: it must not be the plain hash, or a value could be guessed from it.
    fn = load_functions(functions_dir)["withcreds"]
    assert config["RevisionId"] != str(uuid.uuid5(uuid.NAMESPACE_URL, f"{fn!r}{config['CodeSha256']}"))


def test_show_env_shows_values(functions_dir, tmp_path):
    wanted = {"AWS_ACCESS_KEY_ID": "from-yaml", "AWS_SECRET_ACCESS_KEY": "yaml-secret", "DB_PASSWORD": "hunter2-value"}
    with start_in_background(functions_dir, show_env=True) as handle:  # python -m lambdagate.local_runtime
        config = make_client(handle.url).get_function_configuration(FunctionName="withcreds")
        assert config["Environment"]["Variables"] == wanted
    port = free_port()
    serve = Process(
        python_module("lambdagate", "functions", "serve", str(functions_dir), "--port", str(port), "--show-env"),
        tmp_path / "serve.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/__health", proc=serve.proc)
        response = make_client(f"http://127.0.0.1:{port}").get_function(FunctionName="withcreds")
        assert response["Configuration"]["Environment"]["Variables"] == wanted
    finally:
        serve.stop()
