"""The local Lambda runtime as a real process, driven with boto3 (and the AWS CLI).

Each runtime is started with ``start_in_background`` on a free 127.0.0.1 port
over a temporary functions directory and stopped at the end of its fixture.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdagate.local_runtime import ConfigError, start_in_background

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "functions"

FUNCTIONS = {
    "hello.py": """
        def handler(event, context):
            return {"hello": event.get("name")}
    """,
    "printer.py": """
        import logging, sys
        logger = logging.getLogger()
        logger.setLevel(logging.INFO)

        def handler(event, context):
            print("printed-line")
            logger.info("logged-line")
            print("stderr-line", file=sys.stderr)
            return "ok"
    """,
    "boom.py": """
        def handler(event, context):
            helper()

        def helper():
            raise RuntimeError("kaput")
    """,
    "sleepy.py": """
        import time

        def handler(event, context):
            while event.get("spin"):  # an endless busy loop, not just a long sleep
                pass
            time.sleep(event.get("seconds", 0))
            return {"slept": event.get("seconds", 0)}
    """,
    "parallel.py": """
        import os, time

        def handler(event, context):
            time.sleep(0.4)
            return os.getpid()
    """,
    "throttled.py": """
        import time

        def handler(event, context):
            time.sleep(0.5)
            return "done"
    """,
    "crash.py": """
        import os, sys

        def handler(event, context):
            print("about to crash")
            if event.get("how") == "segfault":
                import ctypes
                ctypes.string_at(0)
            if event.get("how") == "sys.exit":
                sys.exit(event.get("code", 2))
            os._exit(event.get("code", 3))
    """,
    "hog.py": """
        chunks = []

        def handler(event, context):
            while True:
                chunks.append(bytearray(64 << 20))
    """,
    "counter.py": """
        import os
        count = 0

        def handler(event, context):
            global count
            count += 1
            return {"count": count, "pid": os.getpid()}
    """,
    "ctx.py": """
        import os

        ENV = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
               "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION",
               "AWS_EXECUTION_ENV", "LAMBDA_TASK_ROOT", "_HANDLER", "GREETING", "DEBUG"]

        def handler(event, context):
            return {
                "function_name": context.function_name,
                "function_version": context.function_version,
                "invoked_function_arn": context.invoked_function_arn,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "aws_request_id": context.aws_request_id,
                "log_group_name": context.log_group_name,
                "log_stream_name": context.log_stream_name,
                "remaining_ms": context.get_remaining_time_in_millis(),
                "custom": context.client_context.custom if context.client_context else None,
                "env": {name: os.environ.get(name) for name in ENV},
                "cwd": os.getcwd(),
            }
    """,
    "marker.py": """
        from pathlib import Path

        def handler(event, context):
            Path(event["path"]).write_text(context.aws_request_id)
    """,
    "chatty.py": """
        def handler(event, context):
            for i in range(1000):
                print(f"line {i}")
    """,
    "unmarshal.py": """
        def handler(event, context):
            return {1, 2}
    """,
    "importerr.py": """
        import module_that_does_not_exist

        def handler(event, context):
            return 1
    """,
    "functions.yaml": """
        functions:
          sleepy: {timeout: 1}
          parallel: {timeout: 5, reserved_concurrency: 2}
          throttled: {timeout: 1, reserved_concurrency: 1}
          ctx:
            memory_mb: 256
            environment: {GREETING: hi, DEBUG: true}
          aliased:
            handler: hello.handler
            description: same code, another name
    """,
}


def write_functions(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text).lstrip())


def make_client(url: str):
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # total_max_attempts=1: botocore's "max_attempts" counts retries, and a retried
        # 429 or error would hide exactly what these tests look at.
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30, max_pool_connections=16),
    )


@pytest.fixture(scope="module", autouse=True)
def isolated_aws_env():
    # A developer's or CI's AWS profile/region must not leak into these tests
    # (boto3 fails on a missing AWS_PROFILE even with explicit keys).
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        yield


@pytest.fixture(scope="module")
def functions_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("functions")
    write_functions(directory, FUNCTIONS)
    return directory


@pytest.fixture(scope="module")
def runtime(functions_dir):
    handle = start_in_background(functions_dir)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(runtime):
    return make_client(runtime.url)


def invoke(client, name, event=None, **kwargs):
    """Invoke and return (response, decoded payload)."""
    if event is not None:
        kwargs["Payload"] = json.dumps(event)
    response = client.invoke(FunctionName=name, **kwargs)
    raw = response["Payload"].read()
    return response, (json.loads(raw) if raw else None)


# -- Invoke: invocation types, names, qualifiers ------------------------------


def test_invoke_request_response(client):
    response, payload = invoke(client, "hello", {"name": "Ana"})
    assert response["StatusCode"] == 200
    assert payload == {"hello": "Ana"}
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert response["ResponseMetadata"]["RequestId"]


def test_invoke_without_payload_gets_empty_object(client):
    assert invoke(client, "hello")[1] == {"hello": None}


@pytest.mark.parametrize(
    "name, qualifier",
    [
        ("arn:aws:lambda:us-east-1:123456789012:function:hello", None),
        ("arn:aws:lambda:eu-west-3:000000000000:function:hello:$LATEST", None),
        ("123456789012:function:hello", None),
        ("hello:$LATEST", None),
        ("hello", "$LATEST"),
    ],
)
def test_invoke_by_arn_and_latest_qualifier(client, name, qualifier):
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    assert invoke(client, name, {"name": "x"}, **kwargs)[1] == {"hello": "x"}


@pytest.mark.parametrize("name, qualifier", [("hello", "1"), ("hello:prod", None), ("hello", "prod")])
def test_other_qualifiers_are_not_found(client, name, qualifier):
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName=name, **kwargs)


def test_event_invocation_runs_in_background(client, tmp_path):
    marker = tmp_path / "marker.txt"
    response = client.invoke(FunctionName="marker", InvocationType="Event", Payload=json.dumps({"path": str(marker)}))
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == response["ResponseMetadata"]["RequestId"]


def test_dry_run(client):
    response = client.invoke(FunctionName="hello", InvocationType="DryRun")
    assert response["StatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nope", InvocationType="DryRun")


def test_log_tail(client):
    response, payload = invoke(client, "printer", {}, LogType="Tail")
    assert payload == "ok"
    log = base64.b64decode(response["LogResult"]).decode()
    request_id = response["ResponseMetadata"]["RequestId"]
    assert "printed-line" in log and "stderr-line" in log
    assert "[INFO]\t" in log and f"\t{request_id}\tlogged-line" in log
    assert log.startswith(f"START RequestId: {request_id} Version: $LATEST")
    assert f"END RequestId: {request_id}" in log
    assert f"REPORT RequestId: {request_id}\tDuration: " in log
    assert "LogResult" not in client.invoke(FunctionName="printer")


def test_log_tail_is_last_4kb(client):
    response, _ = invoke(client, "chatty", {}, LogType="Tail")
    log = base64.b64decode(response["LogResult"])
    assert len(log) == 4096
    assert b"line 999\n" in log and b"line 1\n" not in log
    assert log.rstrip().split(b"\n")[-1].startswith(b"REPORT RequestId: ")


# -- error shapes ---------------------------------------------------------------


def test_unknown_function(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException) as excinfo:
        client.invoke(FunctionName="does-not-exist", Payload=b"{}")
    error = excinfo.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "Function not found: arn:aws:lambda:us-east-1:123456789012:function:does-not-exist" in str(excinfo.value)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="does-not-exist")


def test_handler_exception(client):
    response, payload = invoke(client, "boom", {}, LogType="Tail")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "RuntimeError"
    assert payload["errorMessage"] == "kaput"
    assert payload["requestId"] == response["ResponseMetadata"]["RequestId"]
    trace = payload["stackTrace"]
    assert isinstance(trace, list) and all(isinstance(line, str) for line in trace)
    assert len(trace) == 2 and "in handler" in trace[0] and "in helper" in trace[1]
    assert 'boom.py", line 5' in trace[1] and "worker.py" not in "".join(trace)
    assert "[ERROR] RuntimeError: kaput" in base64.b64decode(response["LogResult"]).decode()


@pytest.mark.parametrize("payload", [b"{not json", b"[1, NaN]", b'{"a": 1'])
def test_invalid_json_payload(client, payload):
    with pytest.raises(client.exceptions.InvalidRequestContentException) as excinfo:
        client.invoke(FunctionName="hello", Payload=payload)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Could not parse request body into json" in str(excinfo.value)


def test_any_json_value_is_a_valid_event(examples_client):
    for event in ["just a string", 42, [1, [2]], None, True]:
        assert invoke(examples_client, "echo", Payload=json.dumps(event))[1] == event


def test_payload_over_6mb(client):
    big = json.dumps({"data": "x" * 6291456}).encode()
    with pytest.raises(ClientError) as excinfo:
        client.invoke(FunctionName="hello", Payload=big)
    error = excinfo.value.response
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6291456 bytes" in error["Error"]["Message"]
    # just under the limit is fine
    ok = json.dumps({"data": "x" * (6291456 - 20)}).encode()
    assert invoke(client, "hello", Payload=ok)[1] == {"hello": None}


def test_result_not_json_serialisable(client):
    response, payload = invoke(client, "unmarshal", {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.MarshalError"
    assert payload["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


def test_import_error(client):
    response, payload = invoke(client, "importerr", {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'importerr'" in payload["errorMessage"]
    assert invoke(client, "hello", {"name": "after"})[1] == {"hello": "after"}


# -- control plane ----------------------------------------------------------------


def test_list_functions(client):
    functions = {f["FunctionName"]: f for f in client.list_functions()["Functions"]}
    assert {"hello", "aliased", "ctx", "sleepy", "counter"} <= functions.keys()
    hello = functions["hello"]
    assert hello["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:hello"
    assert hello["Runtime"] == f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert hello["Handler"] == "hello.handler"
    assert (hello["Timeout"], hello["MemorySize"], hello["State"]) == (3, 128, "Active")
    assert hello["LastModified"] and hello["CodeSha256"] and hello["Version"] == "$LATEST"
    assert functions["aliased"]["Handler"] == "hello.handler"
    assert functions["aliased"]["Description"] == "same code, another name"


def test_list_functions_paginates(client):
    pages = list(client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 3}))
    names = [f["FunctionName"] for page in pages for f in page["Functions"]]
    assert len(pages) > 1 and len(names) == len(set(names)) == len(client.list_functions()["Functions"])


def test_get_function(client):
    response = client.get_function(FunctionName="ctx")
    config = response["Configuration"]
    assert config["FunctionName"] == "ctx"
    assert (config["Timeout"], config["MemorySize"]) == (3, 256)
    # Values only with --show-env (tests/test_local_runtime_hardening.py).
    assert config["Environment"]["Variables"] == {"GREETING": "<redacted>", "DEBUG": "<redacted>"}
    assert response["Concurrency"]["ReservedConcurrentExecutions"] == 2
    by_arn = client.get_function(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:sleepy")
    assert by_arn["Configuration"]["Timeout"] == 1
    assert client.get_function_configuration(FunctionName="sleepy")["Timeout"] == 1


def test_health_and_unknown_operations(runtime, client):
    with urllib.request.urlopen(runtime.url + "/__health") as response:
        assert response.status == 200
    with pytest.raises(ClientError) as excinfo:
        client.list_aliases(FunctionName="hello")
    assert excinfo.value.response["Error"]["Code"] == "UnknownOperationException"


# -- isolation: timeouts, crashes, memory ------------------------------------------


@pytest.mark.parametrize("event", [{"seconds": 10}, {"spin": True}])
def test_timeout_from_functions_yaml(client, event):
    started = time.monotonic()
    response, payload = invoke(client, "sleepy", event, LogType="Tail")
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.5
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    request_id = response["ResponseMetadata"]["RequestId"]
    assert payload["errorMessage"] == f"RequestId: {request_id} Error: Task timed out after 1.00 seconds"
    assert "Status: timeout" in base64.b64decode(response["LogResult"]).decode()
    assert invoke(client, "sleepy", {"seconds": 0})[1] == {"slept": 0}


@pytest.mark.parametrize(
    "event, reason",
    [
        ({"how": "os._exit", "code": 3}, "Runtime exited with error: exit status 3"),
        ({"how": "sys.exit", "code": 2}, "Runtime exited with error: exit status 2"),
        ({"how": "segfault"}, "Runtime exited with error: signal: segmentation fault"),
    ],
)
def test_crashing_handler(client, event, reason):
    response, payload = invoke(client, "crash", event, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert payload["errorMessage"] == f"RequestId: {response['ResponseMetadata']['RequestId']} Error: {reason}"
    assert "about to crash" in base64.b64decode(response["LogResult"]).decode()
    assert invoke(client, "hello", {"name": "still here"})[1] == {"hello": "still here"}


def test_memory_blowup(client):
    response, payload = invoke(client, "hog", {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert "out of memory" in payload["errorMessage"]
    assert invoke(client, "hello", {"name": "ok"})[1] == {"hello": "ok"}


# -- concurrency and warm workers ----------------------------------------------------


def test_concurrency_is_bounded_by_reserved_concurrency(client):
    invoke(client, "parallel", {})  # warm one worker so timings are not dominated by spawning
    started = time.monotonic()
    with ThreadPoolExecutor(8) as executor:
        results = list(executor.map(lambda _: invoke(client, "parallel", {}), range(8)))
    elapsed = time.monotonic() - started
    assert all("FunctionError" not in response for response, _ in results)
    assert len({pid for _, pid in results}) <= 2  # never more than reserved_concurrency workers
    assert elapsed >= 4 * 0.4 * 0.95  # 8 invocations of 0.4 s, 2 at a time
    assert elapsed < 5


def test_throttling_when_no_worker_frees_up_within_the_timeout(client):
    def call(_):
        try:
            return invoke(client, "throttled", {})[1]
        except client.exceptions.TooManyRequestsException as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            return "throttled"

    with ThreadPoolExecutor(5) as executor:
        outcomes = list(executor.map(call, range(5)))
    assert set(outcomes) == {"done", "throttled"}


def test_warm_worker_is_reused(client):
    first = invoke(client, "counter", {})[1]
    second = invoke(client, "counter", {})[1]
    third = invoke(client, "counter", {})[1]
    assert second["pid"] == first["pid"] == third["pid"]
    assert [second["count"], third["count"]] == [first["count"] + 1, first["count"] + 2]


def test_context_and_environment(client, functions_dir):
    custom = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    response, ctx = invoke(client, "ctx", {}, ClientContext=custom)
    request_id = response["ResponseMetadata"]["RequestId"]
    assert ctx["function_name"] == "ctx"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:ctx"
    assert ctx["memory_limit_in_mb"] == "256"  # a string, as in the real runtime
    assert ctx["aws_request_id"] == request_id
    assert ctx["log_group_name"] == "/aws/lambda/ctx"
    assert "[$LATEST]" in ctx["log_stream_name"]
    assert 2000 < ctx["remaining_ms"] <= 3000
    assert ctx["custom"] == {"k": "v"}
    assert Path(ctx["cwd"]) == functions_dir.resolve()
    env = ctx["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "ctx"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/ctx"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == ctx["log_stream_name"]
    assert env["AWS_REGION"] and env["AWS_DEFAULT_REGION"] == env["AWS_REGION"]
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}"
    assert Path(env["LAMBDA_TASK_ROOT"]) == functions_dir.resolve()
    assert env["_HANDLER"] == "ctx.handler"
    assert (env["GREETING"], env["DEBUG"]) == ("hi", "true")
    _, qualified = invoke(client, "ctx:$LATEST", {})
    assert qualified["invoked_function_arn"].endswith("function:ctx:$LATEST")


# -- hot reload and lifecycle (a runtime of their own) --------------------------------


@pytest.fixture
def reload_env(tmp_path):
    write_functions(tmp_path, {"live.py": "def handler(event, context):\n    return 'v1'\n"})
    handle = start_in_background(tmp_path)
    yield tmp_path, handle, make_client(handle.url)
    handle.stop()


def eventually(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_hot_reload(reload_env):
    directory, _, client = reload_env
    assert invoke(client, "live")[1] == "v1"

    (directory / "live.py").write_text("def handler(event, context):\n    return 'v2'\n")
    eventually(lambda: _assert_equal(invoke(client, "live")[1], "v2"))

    (directory / "added.py").write_text("def handler(event, context):\n    return 'new'\n")
    eventually(lambda: _assert_equal(invoke(client, "added")[1], "new"))
    assert {"live", "added"} <= {f["FunctionName"] for f in client.list_functions()["Functions"]}

    (directory / "functions.yaml").write_text("functions:\n  live: {timeout: 7}\n")
    eventually(lambda: _assert_equal(client.get_function(FunctionName="live")["Configuration"]["Timeout"], 7))

    (directory / "added.py").unlink()

    def gone():
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName="added")

    eventually(gone)


def test_hot_reload_of_an_imported_helper(reload_env):
    directory, _, client = reload_env
    (directory / "util.py").write_text("VALUE = 1\n")
    (directory / "uses_util.py").write_text("import util\ndef handler(event, context):\n    return util.VALUE\n")
    eventually(lambda: _assert_equal(invoke(client, "uses_util")[1], 1))
    (directory / "util.py").write_text("VALUE = 2\n")
    eventually(lambda: _assert_equal(invoke(client, "uses_util")[1], 2))
    assert "util" not in {f["FunctionName"] for f in client.list_functions()["Functions"]}


def test_invalid_functions_yaml_on_reload_keeps_serving(reload_env):
    directory, _, client = reload_env
    (directory / "functions.yaml").write_text("functions:\n  live: {timeout: never}\n")
    assert invoke(client, "live")[1] == "v1"
    assert client.get_function(FunctionName="live")["Configuration"]["Timeout"] == 3
    (directory / "functions.yaml").write_text("functions:\n  live: {timeout: 9}\n")
    eventually(lambda: _assert_equal(client.get_function(FunctionName="live")["Configuration"]["Timeout"], 9))


def _assert_equal(actual, expected):
    assert actual == expected


def test_stop_kills_workers(reload_env):
    directory, handle, client = reload_env
    (directory / "pid.py").write_text("import os\ndef handler(event, context):\n    return os.getpid()\n")
    pid = eventually(lambda: invoke(client, "pid")[1])
    os.kill(pid, 0)  # alive and warm
    handle.stop()
    assert not handle.running

    def dead():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    eventually(dead)


def test_invalid_config_refuses_to_start(tmp_path):
    (tmp_path / "functions.yaml").write_text("functions:\n  x: {handler: a.handler, memory_mb: 1}\n")
    with pytest.raises(ConfigError, match="memory_mb"):
        start_in_background(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "lambdagate.local_runtime", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "functions.x.memory_mb" in result.stderr


# -- the examples ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples_client():
    handle = start_in_background(EXAMPLES)
    yield make_client(handle.url)
    handle.stop()


def test_example_hello_world(examples_client):
    _, payload = invoke(examples_client, "myLambdaFunction", {})
    assert payload == {"statusCode": 200, "body": json.dumps({"message": "Hello World"})}


def test_example_echo(examples_client):
    event = {"a": [1, 2, {"b": None}], "s": "ü"}
    assert invoke(examples_client, "echo", event)[1] == event


def test_example_greet(examples_client):
    assert invoke(examples_client, "greet", {"name": "Ana"})[1] == {"greeting": "Hello, Ana!"}


def test_example_fail(examples_client):
    response, payload = invoke(examples_client, "fail", {})
    assert response["FunctionError"] == "Unhandled"
    assert (payload["errorType"], payload["errorMessage"]) == ("ValueError", "something went wrong")


def test_example_http_api(examples_client):
    event = {
        "version": "2.0",
        "routeKey": "GET /items",
        "rawPath": "/items",
        "rawQueryString": "color=red",
        "queryStringParameters": {"color": "red"},
        "headers": {"accept": "application/json"},
        "requestContext": {"http": {"method": "GET", "path": "/items"}},
        "isBase64Encoded": False,
    }
    _, payload = invoke(examples_client, "http_api", event)
    assert payload["statusCode"] == 200
    assert payload["headers"] == {"content-type": "application/json"}
    assert json.loads(payload["body"]) == {"method": "GET", "path": "/items", "query": {"color": "red"}}


@pytest.mark.skipif(shutil.which("aws") is None, reason="AWS CLI not installed")
def test_aws_cli(runtime, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    base = ["aws", "lambda", "--endpoint-url", runtime.url]
    listed = subprocess.run(base + ["list-functions"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "hello" in {f["FunctionName"] for f in json.loads(listed.stdout)["Functions"]}
    (tmp_path / "event.json").write_text('{"name": "cli"}')
    out = tmp_path / "out.json"
    invoked = subprocess.run(
        base + ["invoke", "--function-name", "hello", "--payload", f"fileb://{tmp_path / 'event.json'}", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(out.read_text()) == {"hello": "cli"}
    assert json.loads(invoked.stdout)["StatusCode"] == 200
