"""A backend with no host at all: KrakenD starts and every call to it fails ("no hosts available"); so does
lambdagate, with a warning, instead of refusing the config."""

from __future__ import annotations

import orjson

from tests.test_lambda_backend import http


def test_a_backend_without_host_fails_its_calls_and_the_rest_is_served(start_gateway, upstream):
    gateway = start_gateway(
        {
            "version": 3,
            "endpoints": [
                {"endpoint": "/alone", "backend": [{"url_pattern": "/json/a"}]},
                {
                    "endpoint": "/merged",
                    "backend": [{"url_pattern": "/json/a"}, {"host": [upstream], "url_pattern": "/json/b"}],
                },
            ],
        }
    )
    status, _, body = http("GET", f"{gateway.url}/alone")
    assert status == 500 and orjson.loads(body) == {"error": "the backend is unavailable"}
    status, headers, body = http("GET", f"{gateway.url}/merged")
    assert status == 200 and orjson.loads(body)["name"] == "b"
    assert headers.get("X-KrakenD-Completed") == "false"
    log = gateway.process.log()
    assert "no host: every call fails (as in KrakenD)" in log and "no hosts available" in log
