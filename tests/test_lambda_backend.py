"""The Lambda backend end to end: a real gateway process against moto's Lambda API and a faulty Invoke stub."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator

import orjson
import pytest

from tests.support.gateway import launch_gateway
from tests.support.moto import MotoServer
from tests.support.procs import Process, free_port, python_module

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
}


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one request; never raises on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.create_role()
    for name in ("myLambdaFunction", "echoFn", "other-fn"):
        server.create_function(name)
    yield server
    server.stop()


def calls(stub: str, name: str) -> int:
    with urllib.request.urlopen(f"{stub}/__calls/{name}", timeout=5) as resp:
        return json.loads(resp.read())["calls"]


def lam(endpoint: str | None = None, **fields) -> dict:
    cfg = dict(fields)
    if endpoint:
        cfg["endpoint"] = endpoint
    return {"extra_config": {"backend/lambda": cfg}}


def seed_config() -> dict:
    # The seed's two examples, verbatim: dummy host and url_pattern included.
    return {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/call-a-lambda",
                "backend": [
                    {
                        "host": ["ignore"],
                        "url_pattern": "/ignore",
                        "extra_config": {
                            "backend/lambda": {
                                "function_name": "myLambdaFunction",
                                "region": "us-east-1",
                                "max_retries": 1,
                            }
                        },
                    }
                ],
            },
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
            },
        ],
    }


# --- against moto's real Invoke API ---------------------------------------------------------------------------


def test_seed_examples_verbatim_against_moto(moto, start_gateway):
    gw = start_gateway(seed_config(), env={**AWS_ENV, "AWS_ENDPOINT_URL_LAMBDA": moto.url})
    hello = json.dumps({"statusCode": 200, "body": json.dumps({"message": "Hello World"})})
    moto.queue_replies(hello)
    status, headers, body = http("GET", f"{gw.url}/call-a-lambda")
    assert status == 200
    # data mode (KrakenD's): the reply object is the backend data, unwrapped only on request
    assert json.loads(body) == {"statusCode": 200, "body": '{"message": "Hello World"}'}
    assert headers["X-KrakenD-Completed"] == "true"
    assert not [h for h in headers if h.lower().startswith("x-amz")]
    # moto echoes the payload: a GET sends the URL params, keys lower-cased
    status, headers, body = http("GET", f"{gw.url}/call-a-lambda/echoFn")
    assert status == 200
    assert json.loads(body) == {"lambda": "echoFn"}


def test_get_payload_lowercases_keys_and_post_sends_body_verbatim(moto, start_gateway):
    cfg = {
        "version": 3,
        "endpoints": [
            {"endpoint": "/users/{userId}", "backend": [lam(moto.url, function_name="echoFn")]},
            {"endpoint": "/submit", "method": "POST", "backend": [lam(moto.url, function_name="echoFn")]},
            {
                "endpoint": "/legacy/{Fn}",
                "backend": [
                    {
                        "extra_config": {
                            "github.com/devopsfaith/krakend-lambda": {"function_param_name": "fn", "endpoint": moto.url}
                        }
                    }
                ],
            },
        ],
    }
    gw = start_gateway(cfg, env=AWS_ENV)
    assert json.loads(http("GET", f"{gw.url}/users/7?ignored=1")[2]) == {"userid": "7"}
    raw = b'{"b": 2, "a": [1, 2, 3], "s": "caf\xc3\xa9"}'
    status, _, body = http("POST", f"{gw.url}/submit", raw, {"Content-Type": "application/json"})
    assert status == 200 and json.loads(body) == json.loads(raw)
    # legacy namespace + placeholder matched case-insensitively; the value itself keeps its case
    assert json.loads(http("GET", f"{gw.url}/legacy/echoFn")[2]) == {"fn": "echoFn"}


def test_function_by_arn_against_moto(moto, start_gateway):
    arn = "arn:aws:lambda:us-east-1:123456789012:function:echoFn"
    cfg = {
        "version": 3,
        "endpoints": [
            {"endpoint": "/arn/{id}", "backend": [lam(moto.url, function_name=arn)]},
            {"endpoint": "/q/{id}", "backend": [lam(moto.url, function_name="echoFn", qualifier="$LATEST")]},
        ],
    }
    gw = start_gateway(cfg, env=AWS_ENV)
    status, _, body = http("GET", f"{gw.url}/arn/5")
    assert status == 200 and json.loads(body) == {"id": "5"}
    status, _, body = http("GET", f"{gw.url}/q/6")
    assert status == 200 and json.loads(body) == {"id": "6"}


def test_unknown_function_404_from_url_500_when_static(stub, start_gateway):
    # moto's simple mode answers for any name, so the stub plays Lambda's ResourceNotFoundException.
    cfg = {
        "version": 3,
        "endpoints": [
            {"endpoint": "/fn/{name}", "backend": [lam(stub, function_param_name="name")]},
            {"endpoint": "/static", "backend": [lam(stub, function_name="doesNotExist")]},
        ],
    }
    gw = start_gateway(cfg, env=AWS_ENV)
    status, _, body = http("GET", f"{gw.url}/fn/nope")
    assert status == 404 and json.loads(body) == {"error": "unknown function"}
    status, _, body = http("GET", f"{gw.url}/static")
    assert status == 500 and b"ResourceNotFound" not in body and b"arn:" not in body
    assert "misconfiguration: function doesNotExist does not exist" in gw.log()


def test_signature_is_checked_by_moto(tmp_path, start_gateway):
    server = MotoServer(tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "5"})
    try:
        iam = server.client("iam")
        iam.create_user(UserName="gw")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        arn = iam.create_policy(PolicyName="all", PolicyDocument=json.dumps(policy))["Policy"]["Arn"]
        iam.attach_user_policy(UserName="gw", PolicyArn=arn)
        key = iam.create_access_key(UserName="gw")["AccessKey"]
        server.create_role()
        server.access_key, server.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        server.create_function("signedFn")
        arn = "arn:aws:lambda:us-east-1:123456789012:function:signedFn"
        cfg = {
            "version": 3,
            "endpoints": [
                {"endpoint": "/s/{id}", "backend": [lam(server.url, function_name="signedFn")]},
                {"endpoint": "/arn/{id}", "backend": [lam(server.url, function_name=arn, qualifier="$LATEST")]},
                {"endpoint": "/post", "method": "POST", "backend": [lam(server.url, function_name="signedFn")]},
                {"endpoint": "/fn/{name}", "backend": [lam(server.url, function_param_name="name")]},
            ],
        }
        env = {**AWS_ENV, "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        good = start_gateway(cfg, env=env)
        status, _, body = http("GET", f"{good.url}/s/1")
        assert status == 200 and json.loads(body) == {"id": "1"}
        status, _, body = http("GET", f"{good.url}/arn/2")
        assert status == 200 and json.loads(body) == {"id": "2"}
        status, _, body = http("POST", f"{good.url}/post", '{"text": "caf\u00e9 \u2713", "n": [1, 2]}'.encode())
        assert status == 200 and json.loads(body) == {"text": "caf\u00e9 \u2713", "n": [1, 2]}
        status, _, body = http("GET", f"{good.url}/fn/signedFn")
        assert status == 200 and json.loads(body) == {"name": "signedFn"}
        bad = start_gateway(cfg, env={**env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-value"})
        status, _, body = http("GET", f"{bad.url}/s/1")
        assert status == 500 and b"Signature" not in body
        log = bad.log()
        assert "refused the credentials or signature" in log
        assert "wrong-secret-value" not in log
    finally:
        server.stop()


# --- against the faulty Invoke stub -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_gateway(stub, tmp_path_factory) -> Iterator:
    """One gateway with many endpoints on the stub (starting a process per test would be slow)."""
    cfg = {
        "version": 3,
        "timeout": "3s",
        "endpoints": [
            {
                "endpoint": "/fn/{name}",
                "backend": [
                    lam(
                        stub,
                        function_param_name="name",
                        allowed_functions=[
                            "echo*",
                            "unhandled",
                            "handled",
                            "throttle",
                            "too-large",
                            "invalid-content",
                            "denied",
                            "notjson",
                            "array",
                            "null",
                            "scalar",
                            "empty",
                            "string",
                            "object",
                            "service-500",
                            "proxy-404",
                            "missing",
                        ],
                    )
                ],
            },
            {"endpoint": "/open/{name}", "method": "POST", "backend": [lam(stub, function_param_name="name")]},
            {"endpoint": "/details", "backend": [lam(stub, function_name="unhandled", return_error_details=True)]},
            {"endpoint": "/retry/{name}", "backend": [lam(stub, function_param_name="name", max_retries=3)]},
            {"endpoint": "/noretry/{name}", "backend": [lam(stub, function_param_name="name")]},
            {"endpoint": "/slow", "timeout": "500ms", "backend": [lam(stub, function_name="slow", max_retries=3)]},
            {
                "endpoint": "/event",
                "method": "POST",
                "backend": [lam(stub, function_name="echo-event", invocation_type="Event")],
            },
            {"endpoint": "/proxy/{name}", "backend": [lam(stub, function_param_name="name", response_format="proxy")]},
            {"endpoint": "/auto/{name}", "backend": [lam(stub, function_param_name="name", response_format="auto")]},
            {
                "endpoint": "/shaped",
                "backend": [
                    {
                        **lam(stub, function_name="object"),
                        "allow": ["a", "b.c"],
                        "mapping": {"a": "alpha"},
                        "group": "fn",
                    }
                ],
            },
            {
                "endpoint": "/merge",
                "backend": [
                    lam(
                        stub,
                        function_name="object",
                    ),
                    {**lam(stub, function_name="proxy", response_format="proxy"), "group": "p"},
                ],
            },
            {
                "endpoint": "/merge-fail",
                "backend": [
                    lam(stub, function_name="object"),
                    {**lam(stub, function_name="unhandled", return_error_details=True), "group": "u"},
                ],
            },
            {
                "endpoint": "/v2/{id}",
                "method": "POST",
                "input_headers": ["X-Allowed", "Cookie"],
                "input_query_strings": ["q"],
                "backend": [lam(stub, function_name="echo-v2", payload_format="apigateway_v2", response_format="data")],
            },
            {
                "endpoint": "/v1/{id}",
                "input_headers": ["X-Allowed"],
                "input_query_strings": ["q"],
                "backend": [lam(stub, function_name="echo-v1", payload_format="apigateway_v1", response_format="data")],
            },
            {
                "endpoint": "/v2proxy",
                "backend": [lam(stub, function_name="echo-plain", payload_format="apigateway_v2")],
            },
        ],
    }
    gateway = launch_gateway(cfg, tmp_path_factory.mktemp("gw"), env=AWS_ENV)
    yield gateway
    gateway.process.stop()


def test_function_error_is_a_failed_backend_without_internals(stub_gateway, stub):
    before = calls(stub, "unhandled")
    status, headers, body = http("GET", f"{stub_gateway.url}/fn/unhandled")
    assert status == 500
    assert json.loads(body) == {"error": "the function failed"}
    assert b"secret-internal" not in body and b"stackTrace" not in body and b"File" not in body
    assert headers["X-KrakenD-Completed"] == "false"
    assert calls(stub, "unhandled") == before + 1
    log = stub_gateway.log()
    assert "function error: function=unhandled kind=Unhandled type=ValueError" in log
    assert "lambda_request_id=stub-req" in log
    status, _, body = http("GET", f"{stub_gateway.url}/fn/handled")
    assert status == 500


def test_return_error_details_shows_type_and_message(stub_gateway):
    status, _, body = http("GET", f"{stub_gateway.url}/details")
    assert status == 500
    details = json.loads(body)["details"]
    assert details == {
        "error_type": "ValueError",
        "error_message": "boom secret-internal",
        "lambda_request_id": "stub-req",
    }


def test_function_errors_are_never_retried(stub_gateway, stub):
    before = calls(stub, "unhandled")
    assert http("GET", f"{stub_gateway.url}/retry/unhandled")[0] == 500
    assert calls(stub, "unhandled") == before + 1


def test_throttling_is_retried_then_reported_as_429(stub_gateway, stub):
    status, _, body = http("GET", f"{stub_gateway.url}/retry/flaky-2")
    assert status == 200 and json.loads(body) == {"recovered": True}
    assert calls(stub, "flaky-2") == 3
    status, headers, _ = http("GET", f"{stub_gateway.url}/noretry/flaky-5")
    assert status == 429 and headers["Retry-After"]
    assert calls(stub, "flaky-5") == 1
    status, headers, _ = http("GET", f"{stub_gateway.url}/fn/throttle")
    assert status == 429 and headers["Retry-After"] == "3"


def test_service_errors_map_to_defined_statuses(stub_gateway, stub):
    assert http("GET", f"{stub_gateway.url}/fn/too-large")[0] == 413
    assert http("GET", f"{stub_gateway.url}/fn/invalid-content")[0] == 400
    status, _, body = http("GET", f"{stub_gateway.url}/fn/denied")
    assert status == 500 and b"Signature" not in body
    assert "refused the credentials or signature" in stub_gateway.log()
    before = calls(stub, "service-500")
    assert http("GET", f"{stub_gateway.url}/retry/service-500")[0] == 500
    assert calls(stub, "service-500") == before + 4  # max_retries 3: the service's own 5xx is retried


def test_function_name_from_url_is_validated_before_invoking(stub_gateway, stub):
    for bad in ("a.b", "arn:aws:lambda:us-east-1:111111111111:function:x", "x" * 65, "echo:prod", "%2e%2e"):
        status, _, body = http("GET", f"{stub_gateway.url}/fn/{bad}")
        assert status == 400, bad
    status, _, body = http("GET", f"{stub_gateway.url}/fn/notallowed")
    assert status == 404 and json.loads(body) == {"error": "unknown function"}
    assert calls(stub, "notallowed") == 0 and calls(stub, "a.b") == 0


def test_payload_over_6mb_is_refused_before_invoking(stub_gateway, stub):
    big = b'{"x": "' + b"a" * (6 * 1024 * 1024) + b'"}'
    status, _, body = http("POST", f"{stub_gateway.url}/open/echo-big", big)
    assert status == 413
    assert calls(stub, "echo-big") == 0


def test_deadline_gives_504_quickly_even_with_retries(stub_gateway):
    import time

    started = time.monotonic()
    status, _, _ = http("GET", f"{stub_gateway.url}/slow")
    assert status == 504
    assert time.monotonic() - started < 2.0


def test_event_invocation_is_202_without_body(stub_gateway, stub):
    status, _, body = http("POST", f"{stub_gateway.url}/event", b'{"a": 1}')
    assert status == 202 and body == b""
    with urllib.request.urlopen(f"{stub}/__last/echo-event", timeout=5) as resp:
        last = json.loads(resp.read())
    assert last["headers"]["X-Amz-Invocation-Type"] == "Event"


def test_data_mode_reply_shapes(stub_gateway):
    url = stub_gateway.url
    status, headers, body = http("GET", f"{url}/fn/array")
    assert (status, json.loads(body)) == (200, {"collection": [1, 2]})
    status, headers, body = http("GET", f"{url}/fn/null")
    assert (status, json.loads(body), headers["X-KrakenD-Completed"]) == (200, {}, "false")
    status, headers, body = http("GET", f"{url}/fn/empty")
    assert (status, json.loads(body), headers["X-KrakenD-Completed"]) == (200, {}, "false")
    assert json.loads(http("GET", f"{url}/fn/scalar")[2]) == {"content": 7}
    assert json.loads(http("GET", f"{url}/fn/string")[2]) == {"content": "text"}
    status, _, body = http("GET", f"{url}/fn/notjson")
    assert status == 500 and b"not json" not in body


def test_proxy_reply_passes_through_on_a_single_backend(stub_gateway):
    status, headers, body = http("GET", f"{stub_gateway.url}/proxy/proxy")
    assert status == 201
    assert json.loads(body) == {"hello": "proxy"}
    assert headers["X-Fn"] == "yes"
    assert headers.get_all("X-Multi") == ["a", "b"]
    assert headers.get_all("Set-Cookie") == ["c=1", "d=2"]
    assert "Keep-Alive" not in headers  # hop-by-hop headers from the function are dropped
    status, headers, body = http("GET", f"{stub_gateway.url}/proxy/proxy-b64")
    assert status == 200 and body == b"\x00\x01binary"
    assert headers["Content-Type"] == "application/octet-stream"
    status, _, body = http("GET", f"{stub_gateway.url}/proxy/object")  # no statusCode: malformed for v1-style proxy
    assert status == 500
    # auto: unwrapped when proxy-shaped, data otherwise
    assert http("GET", f"{stub_gateway.url}/auto/proxy")[0] == 201
    assert json.loads(http("GET", f"{stub_gateway.url}/auto/object")[2])["a"] == 1


def test_lambda_reply_is_manipulated_like_any_backend(stub_gateway):
    status, _, body = http("GET", f"{stub_gateway.url}/shaped")
    assert status == 200
    assert json.loads(body) == {"fn": {"alpha": 1, "b": {"c": 2}}}


def test_merge_with_proxy_reply_and_partial_failure(stub_gateway):
    status, headers, body = http("GET", f"{stub_gateway.url}/merge")
    assert status == 200 and headers["X-KrakenD-Completed"] == "true"
    assert json.loads(body) == {"a": 1, "b": {"c": 2}, "secret": "x", "p": {"hello": "proxy"}}
    status, headers, body = http("GET", f"{stub_gateway.url}/merge-fail")
    assert status == 200 and headers["X-KrakenD-Completed"] == "false"
    data = json.loads(body)
    assert data["a"] == 1
    assert data["error_u"]["error_type"] == "ValueError"


def _last(stub: str, name: str) -> dict:
    with urllib.request.urlopen(f"{stub}/__last/{name}", timeout=5) as resp:
        return json.loads(json.loads(resp.read())["payload"])


def test_apigateway_v2_event(stub_gateway, stub):
    status, _, body = http(
        "POST",
        f"{stub_gateway.url}/v2/42?q=1&q=2&secret=no",
        b"\xff\xfe binary",
        {"X-Allowed": "yes", "X-Denied": "no", "Cookie": "a=1; b=2"},
    )
    assert status == 200
    event = _last(stub, "echo-v2")
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v2/{id}"
    assert event["rawPath"] == "/v2/42"
    assert event["rawQueryString"] == "q=1&q=2"
    assert event["queryStringParameters"] == {"q": "1,2"}
    assert event["pathParameters"] == {"id": "42"}
    host = stub_gateway.url.removeprefix("http://")
    # the allowed header, and the forwarding headers API Gateway sets, with the gateway's values
    assert event["headers"] == {
        "x-allowed": "yes",
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-proto": "http",
        "host": host,
        "x-forwarded-host": host,
    }
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe binary"


def test_apigateway_v1_event(stub_gateway, stub):
    status, _, _ = http("GET", f"{stub_gateway.url}/v1/7?q=a&q=b&other=x", None, {"X-Allowed": "1", "X-Denied": "2"})
    assert status == 200
    event = _last(stub, "echo-v1")
    assert event["resource"] == "/v1/{id}" and event["path"] == "/v1/7" and event["httpMethod"] == "GET"
    host = stub_gateway.url.removeprefix("http://")
    assert event["headers"] == {
        "x-allowed": "1",
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-proto": "http",
        "host": host,
        "x-forwarded-host": host,
    }
    assert event["multiValueQueryStringParameters"] == {"q": ["a", "b"]}
    assert event["queryStringParameters"] == {"q": "b"}
    assert event["pathParameters"] == {"id": "7"}
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"


def test_apigateway_v2_plain_json_reply_is_inferred_as_200(stub_gateway):
    # echo-plain returns the v2 event itself (no statusCode): API Gateway v2 infers a 200 JSON reply
    status, headers, body = http("GET", f"{stub_gateway.url}/v2proxy")
    assert status == 200 and json.loads(body)["version"] == "2.0"


def test_no_credentials_for_real_aws_stops_start_up_with_a_clear_message(tmp_path):
    cfg = {"version": 3, "endpoints": [{"endpoint": "/x", "backend": [lam(function_name="f", region="us-east-1")]}]}
    path = tmp_path / "krakend.json"
    path.write_bytes(orjson.dumps(cfg))
    env = {**AWS_ENV, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL_LAMBDA": ""}
    proc = Process(
        python_module("lambdagate", "run", "-c", str(path), "--port", str(free_port())), tmp_path / "log", env
    )
    try:
        assert proc.proc.wait(30) != 0
    finally:
        proc.stop()
    log = proc.log()
    assert "start-up failed: GET /x backend[0]: no AWS credentials found" in log
    assert "Traceback" not in log
