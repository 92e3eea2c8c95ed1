"""The security namespaces end to end: a real `lambdagate run` process and a real upstream, over raw HTTP/1.1, with
the KrakenD 1.x names of CORS and the bot detector (applied as security/cors and security/bot-detector)."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import launch_gateway
from tests.support.procs import free_port
from tests.support.rawhttp import build, exchange

APP = b"https://app.example.com"


def test_cors_http_security_and_bot_detector_in_a_real_gateway(upstream: str, tmp_path: Path) -> None:
    port = free_port()
    config = {
        "version": 3,
        "timeout": "3s",
        "extra_config": {
            "github_com/devopsfaith/krakend-cors": {
                "allow_origins": [APP.decode()],
                "allow_methods": ["GET", "POST"],
                "allow_headers": ["Authorization"],
                "allow_credentials": True,
                "max_age": "1h",
            },
            # /__health is checked too (as in KrakenD): the readiness probe sends the port, raw HTTP here does not.
            "security/http": {
                "allowed_hosts": ["127.0.0.1", f"127.0.0.1:{port}"],
                "host_proxy_headers": ["X-Forwarded-Host"],
                "frame_deny": True,
                "content_type_nosniff": True,
            },
        },
        "endpoints": [
            {
                "endpoint": "/users/{id}",
                "extra_config": {"github.com/devopsfaith/krakend-botdetector": {"patterns": ["(?i)scraper"]}},
                "backend": [{"host": [upstream], "url_pattern": "/json/{id}"}],
            }
        ],
    }
    gateway = launch_gateway(config, tmp_path, port=port)
    try:
        # A preflight for a GET-only path: answered by the gateway, with exactly the CORS headers.
        pre = exchange(
            port,
            build(
                b"OPTIONS",
                b"/users/7",
                [
                    (b"Origin", APP),
                    (b"Access-Control-Request-Method", b"POST"),
                    (b"Access-Control-Request-Headers", b"authorization"),
                ],
            ),
        )
        assert (pre.status, pre.body) == (204, b"")
        assert [(k.lower(), v) for k, v in pre.headers if k.lower().startswith((b"access-control", b"vary"))] == [
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            (b"access-control-allow-origin", APP),
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", b"authorization"),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-max-age", b"3600"),
        ]
        ok = exchange(port, build(b"GET", b"/users/7", [(b"Origin", APP), (b"User-Agent", b"Browser/1.0")]))
        assert ok.status == 200 and b'"name"' in ok.body
        for name, value in [
            (b"access-control-allow-origin", APP),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
        ]:
            assert ok.header(name) == value, name
        # The endpoint's bot detector, and security/http's host check: refusals that still carry CORS headers.
        bot = exchange(port, build(b"GET", b"/users/7", [(b"Origin", APP), (b"User-Agent", b"SuperScraper/3")]))
        assert (bot.status, bot.header(b"access-control-allow-origin"), bot.header(b"x-frame-options")) == (
            403,
            APP,
            b"DENY",
        )
        host = exchange(port, build(b"GET", b"/users/7", [(b"Origin", APP), (b"X-Forwarded-Host", b"evil.example")]))
        assert (host.status, host.body, host.header(b"access-control-allow-origin")) == (
            400,
            b'{"error":"host not allowed"}',
            APP,
        )
        log = gateway.log()
        assert (
            "`github_com/devopsfaith/krakend-cors` is the old name of `security/cors` and is read as `security/cors`"
        ) in log
        assert (
            "`github.com/devopsfaith/krakend-botdetector` is the old name of `security/bot-detector` and is read "
            "as `security/bot-detector`"
        ) in log
        assert "Traceback" not in log
    finally:
        gateway.process.stop()
