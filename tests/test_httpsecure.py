"""`security/http`, in-process (tests/support/asgi.py): host refusal, the HTTPS redirect and the security headers,
on every reply; its place after CORS. End-to-end: tests/test_websec_e2e.py."""

from __future__ import annotations

import re

import pytest

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from lambdagate.proxy import ProxyRequest, ProxyResponse
from lambdagate.security.httpsecure import HttpSecurity, HttpSecurityOptions
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run

HOST = "api.example.com"


def config(secure: dict, *endpoints: dict, cors: dict | None = None) -> dict:
    endpoints = endpoints or ({"endpoint": "/a", "backend": [{"host": ["http://fake"], "url_pattern": "/a"}]},)
    extra = {"security/http": secure, **({"security/cors": cors} if cors is not None else {})}
    return {"version": 3, "timeout": "1s", "extra_config": extra, "endpoints": list(endpoints)}


def security_headers(reply) -> list[tuple[str, str]]:
    names = {
        "strict-transport-security",
        "x-frame-options",
        "x-content-type-options",
        "x-xss-protection",
        "content-security-policy",
        "referrer-policy",
    }
    return [(k.decode(), v.decode()) for k, v in reply.headers if k.decode() in names]


def test_hosts_outside_allowed_hosts_get_400() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    secure = {"allowed_hosts": [HOST, "api.example.com:8443"], "host_proxy_headers": ["X-Forwarded-Host"]}

    async def scenario(gw: InProcessGateway) -> None:
        for host, status in [
            (HOST, 200),
            ("API.Example.COM", 200),
            ("api.example.com:8443", 200),
            ("evil.example", 400),
            ("api.example.com:8080", 400),
            ("", 400),
            ("a" * 5000, 400),
        ]:
            r = await gw.request("GET", "/a", [("Host", host)] if host else [])
            assert r.status == status, host
            if status == 400:
                assert r.json() == {"error": "host not allowed"} and r.header("x-request-id")  # logged as any reply
        # A proxy's header names the host when present (the first of host_proxy_headers), else Host does.
        proxied = await gw.request("GET", "/a", [("Host", "internal:8080"), ("X-Forwarded-Host", HOST)])
        refused = await gw.request("GET", "/a", [("Host", HOST), ("X-Forwarded-Host", "evil.example")])
        assert (proxied.status, refused.status) == (200, 400)
        assert (await gw.request("GET", "/nope", [("Host", "evil.example")])).status == 400  # before routing
        assert len(fakes.seen["/a"]) == 4

    run(config(secure), fakes, scenario)


def test_regex_hosts_must_match_the_whole_host() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        for host, status in [
            ("api.example.com", 200),
            ("api.example.org", 200),
            ("xapi.example.com", 400),
            ("api.example.com.evil.net", 400),
            ("api-example.com", 400),
        ]:
            assert (await gw.request("GET", "/a", [("Host", host)])).status == status, host

    run(config({"allowed_hosts": [r"api\.example\.(com|org)"], "allowed_hosts_are_regex": True}), fakes, scenario)


def test_plain_http_is_redirected_to_https() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a/b%20c?x=1&y=%2F", [("Host", "api.example.com:8080")])
        assert (r.status, r.header("location"), r.body) == (301, "https://api.example.com:8080/a/b%20c?x=1&y=%2F", b"")
        behind_proxy = await gw.request("GET", "/a", [("Host", HOST), ("X-Forwarded-Proto", "https")])
        assert (behind_proxy.status, behind_proxy.json()) == (200, {"a": 1})
        other_value = await gw.request("GET", "/a", [("Host", HOST), ("X-Forwarded-Proto", "http")])
        assert other_value.status == 301
        bad = await gw.request("GET", "/a", [("Host", "evil.example/x")])
        assert (bad.status, bad.json()) == (400, {"error": "no valid host to redirect to"})

    run(config({"ssl_redirect": True, "ssl_proxy_headers": {"X-Forwarded-Proto": "https"}}), fakes, scenario)

    async def on_ssl_host(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a", [("Host", "api.example.com:8080")])
        assert (r.status, r.header("location")) == (301, "https://secure.example.com:8443/a")

    run(config({"ssl_redirect": True, "ssl_host": "secure.example.com", "ssl_port": 8443}), fakes, on_ssl_host)

    async def on_ssl_port(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a?q", [("Host", "api.example.com:8080")])
        assert (r.status, r.header("location")) == (301, "https://api.example.com/a?q")

    run(config({"ssl_redirect": True, "ssl_port": 443}), fakes, on_ssl_port)


HEADERS = {
    "sts_seconds": 31536000,
    "sts_include_subdomains": True,
    "frame_deny": True,
    "content_type_nosniff": True,
    "browser_xss_filter": True,
    "content_security_policy": "default-src 'self'",
    "referrer_policy": "same-origin",
    "ssl_proxy_headers": {"X-Forwarded-Proto": "https"},
}
PLAIN = [
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    ("content-security-policy", "default-src 'self'"),
    ("referrer-policy", "same-origin"),
]
STS = ("strict-transport-security", "max-age=31536000; includeSubDomains")


def test_every_reply_gets_the_security_headers_and_sts_only_over_https() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        assert security_headers(await gw.request("GET", "/a")) == PLAIN
        assert security_headers(await gw.request("GET", "/nope")) == PLAIN  # the router's 404 too
        assert security_headers(await gw.request("POST", "/a")) == PLAIN  # and its 405
        https = await gw.request("GET", "/a", [("X-Forwarded-Proto", "https")])
        assert security_headers(https) == [*PLAIN, STS]

    run(config(HEADERS), fakes, scenario)

    async def forced(gw: InProcessGateway) -> None:
        assert security_headers(await gw.request("GET", "/a")) == [*PLAIN, STS]

    run(config({**HEADERS, "force_sts_header": True}), fakes, forced)


def test_custom_frame_options_and_a_fresh_csp_nonce_per_reply() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    secure = {
        "frame_deny": True,
        "custom_frame_options_value": "SAMEORIGIN",
        "content_security_policy": "script-src $NONCE 'strict-dynamic'",
    }

    async def scenario(gw: InProcessGateway) -> None:
        policies = []
        for _ in range(2):
            r = await gw.request("GET", "/a")
            assert r.header("x-frame-options") == "SAMEORIGIN"
            policies.append(r.header("content-security-policy"))
        assert all(re.fullmatch(r"script-src 'nonce-[A-Za-z0-9+/]{22}==' 'strict-dynamic'", p) for p in policies)
        assert policies[0] != policies[1]

    run(config(secure), fakes, scenario)


def test_the_gateways_headers_replace_a_backends() -> None:
    async def answer(req: ProxyRequest) -> ProxyResponse:
        return ProxyResponse.passthrough(
            200, [("X-Frame-Options", "ALLOWALL"), ("X-Other", "kept")], b"{}", complete=True
        )

    endpoint = {
        "endpoint": "/a",
        "output_encoding": "no-op",
        "backend": [{"host": ["http://fake"], "url_pattern": "/a", "encoding": "no-op"}],
    }

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a")
        assert [(k, v) for k, v in r.headers if k in (b"x-frame-options", b"x-other")] == [
            (b"x-other", b"kept"),
            (b"x-frame-options", b"DENY"),
        ]

    run(config({"frame_deny": True}, endpoint), FakeBackends({"/a": answer}), scenario)


def test_is_development_turns_off_hosts_redirect_and_sts_only() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    secure = {**HEADERS, "allowed_hosts": [HOST], "ssl_redirect": True, "is_development": True}

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a", [("Host", "localhost:8080"), ("X-Forwarded-Proto", "https")])
        assert (r.status, security_headers(r)) == (200, PLAIN)

    run(config(secure), fakes, scenario)
    warnings = [str(w) for w in validate_document(config(secure), LoadOptions()).warnings]
    assert warnings == [
        'extra_config["security/http"].is_development: true: allowed_hosts, ssl_redirect and '
        "Strict-Transport-Security are off"
    ]


def test_cors_comes_first_a_refused_host_still_gets_cors_headers() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    origin = "https://app.example.com"

    async def scenario(gw: InProcessGateway) -> None:
        refused = await gw.request("GET", "/a", [("Host", "evil.example"), ("Origin", origin)])
        assert (refused.status, refused.header("access-control-allow-origin"), refused.header("vary")) == (
            400,
            origin,
            "Origin",
        )
        preflight = await gw.request(
            "OPTIONS", "/a", [("Host", "evil.example"), ("Origin", origin), ("Access-Control-Request-Method", "GET")]
        )
        assert (preflight.status, preflight.header("access-control-allow-origin")) == (204, origin)
        served = await gw.request("GET", "/a", [("Host", HOST), ("Origin", origin)])
        assert (served.status, served.header("x-frame-options"), served.header("access-control-allow-origin")) == (
            200,
            "DENY",
            origin,
        )

    run(config({"allowed_hosts": [HOST], "frame_deny": True}, cors={"allow_origins": [origin]}), fakes, scenario)


def test_https_connections_are_recognised_by_their_scheme() -> None:
    rules = HttpSecurity(HttpSecurityOptions(sts_seconds=60, ssl_redirect=True))
    assert rules.facts({"scheme": "https", "headers": [(b"host", HOST.encode())]}) == (HOST.encode(), True)
    assert rules.facts({"scheme": "http", "headers": [(b"host", HOST.encode())]}) == (HOST.encode(), False)
    assert rules.with_headers([], True) == [(b"strict-transport-security", b"max-age=60")]
    assert rules.with_headers([], False) == []


@pytest.mark.parametrize(
    ("secure", "error"),
    [
        ({"ssl_host": "https://secure.example.com"}, "ssl_host: 'https://secure.example.com' is not a host"),
        ({"ssl_port": 70000}, "ssl_port: Input should be less than or equal to 65535"),
        ({"sts_seconds": -1}, "sts_seconds: Input should be greater than or equal to 0"),
        ({"allowed_hosts": ["(a"], "allowed_hosts_are_regex": True}, "allowed_hosts[0]: invalid regular expression"),
        (
            {"referrer_policy": "same-origin\r\nX-Injected: 1"},
            "referrer_policy: 'same-origin\\r\\nX-Injected: 1' cannot",
        ),
        ({"host_proxy_headers": ["X Forwarded"]}, "host_proxy_headers[0]: 'X Forwarded' is not a header name"),
        ({"frame_deny": "true"}, "frame_deny: Input should be a valid boolean"),
    ],
)
def test_bad_options_are_refused_with_their_path(secure: dict, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_document(config(secure), LoadOptions())
    messages = [str(issue) for issue in info.value.issues]
    assert len(messages) == 1 and messages[0].startswith(f'extra_config["security/http"].{error}'), messages


def test_hpkp_is_accepted_and_ignored_with_a_warning() -> None:
    loaded = validate_document(config({"hpkp_public_key": 'pin-sha256="base64=="; max-age=1'}), LoadOptions())
    assert [str(w) for w in loaded.warnings] == [
        'extra_config["security/http"].hpkp_public_key: ignored, as KrakenD CE does: browsers dropped HTTP Public '
        "Key Pinning"
    ]
