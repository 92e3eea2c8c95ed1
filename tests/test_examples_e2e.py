"""The shipped example config served end to end with the embedded local Lambda runtime (what `make demo` runs)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.gateway import launch_gateway
from tests.support.procs import ROOT, Process, free_port
from tests.test_lambda_backend import http


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Process, str]]:
    port, metrics_port = free_port(), free_port()
    tmp = tmp_path_factory.mktemp("demo")
    # The example's HTTP backend is the gateway itself on :8080; follow it to the test's port (and metrics).
    text = (ROOT / "examples/krakend.json").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    config = json.loads(text.replace("127.0.0.1:9091", f"127.0.0.1:{metrics_port}"))
    # No AWS credentials at all: the local runtime needs none.
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_REGION": "",
        "AWS_DEFAULT_REGION": "",
    }
    gateway = launch_gateway(
        config, tmp, "--functions", str(ROOT / "examples/functions"), "--debug", env=env, port=port
    )
    yield gateway.url, gateway.process, f"http://127.0.0.1:{metrics_port}/metrics"
    gateway.process.stop()


def get(url: str):
    status, headers, body = http("GET", url)
    return status, headers, json.loads(body) if body else None


def test_seed_examples(demo):
    url, proc, _ = demo
    assert get(f"{url}/call-a-lambda")[::2] == (200, {"statusCode": 200, "body": '{"message": "Hello World"}'})
    assert get(f"{url}/call-a-lambda/greet")[::2] == (200, {"greeting": "Hello, World!"})
    assert get(f"{url}/call-a-lambda/myLambdaFunction")[0] == 200
    assert get(f"{url}/call-a-lambda/nope")[::2] == (404, {"error": "unknown function"})
    assert "Lambda backends without an explicit endpoint use it" in proc.log()


def test_post_merge_manipulation_and_apigateway_v2(demo):
    url, _, _ = demo
    status, _, body = http("POST", f"{url}/echo", b'{"any": ["json", 1]}')
    assert (status, json.loads(body)) == (200, {"any": ["json", 1]})
    assert get(f"{url}/greet/Ana")[::2] == (200, {"greeting": "Hello, Ana!"})
    status, headers, data = get(f"{url}/profile/ana")
    assert status == 200 and headers["X-KrakenD-Completed"] == "true"
    assert headers["Cache-Control"] == "public, max-age=60"
    assert data == {
        "lambda": {"message": "Hello, ana!"},
        "http": {"method": "GET", "upstream_path": "/__echo/users/ana"},
    }
    status, _, data = get(f"{url}/api/hello?name=Bo&dropped=1")
    assert status == 200 and data["query"] == {"name": "Bo"} and data["path"] == "/api/hello"


def test_error_policy_examples(demo):
    url, proc, _ = demo
    status, headers, data = get(f"{url}/fail")
    assert (status, data) == (500, {"error": "the function failed"})
    status, _, data = get(f"{url}/fail-with-details")
    assert status == 500 and data["details"]["error_type"] == "ValueError"
    assert "function error: function=fail" in proc.log()


def test_demo_traffic_shows_in_metrics_and_logs(demo):
    url, proc, metrics_url = demo
    get(f"{url}/greet/Metrics")
    get(f"{url}/fail")
    expected = [
        'lambdagate_requests_total{endpoint="/greet/{name}",method="GET",status="200"}',
        'lambdagate_requests_total{endpoint="/fail",method="GET",status="500"}',
        'lambdagate_lambda_invocations_total{function="greet",outcome="success"}',
        'lambdagate_lambda_invocations_total{function="fail",outcome="function_error"}',
    ]
    deadline = time.monotonic() + 5
    while True:  # the worker writes its counts twice a second
        with urllib.request.urlopen(metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        if all(f"{series} " in text for series in expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for series in expected:
        assert f"{series} " in text, text
    assert "[demo] " in proc.log() and "lambdagate.access: GET /greet/Metrics 200" in proc.log()
