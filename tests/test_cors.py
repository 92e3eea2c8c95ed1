"""`security/cors`, in-process (tests/support/asgi.py): exact headers of preflights and actual requests, replies
of every kind (404, 405, 5xx) carrying them, and the credential rules. End-to-end: tests/test_websec_e2e.py."""

from __future__ import annotations

import pytest

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import BackendError, ConfigError
from lambdagate.proxy import ProxyRequest, ProxyResponse
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run

APP = "https://app.example.com"
PREFLIGHT_VARY = ("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
JSON_OK = [("content-type", "application/json; charset=utf-8"), ("x-krakend-completed", "true")]


def config(cors: dict, *endpoints: dict, **service) -> dict:
    endpoints = endpoints or ({"endpoint": "/a", "backend": [{"host": ["http://fake"], "url_pattern": "/a"}]},)
    return {
        "version": 3,
        "timeout": "1s",
        "extra_config": {"security/cors": cors},
        "endpoints": list(endpoints),
        **service,
    }


STRICT = {
    "allow_origins": [APP, "https://*.example.org"],
    "allow_methods": ["GET", "POST", "PUT"],
    "allow_headers": ["Authorization", "Content-Type"],
    "expose_headers": ["x-request-id", "Content-Length"],
    "allow_credentials": True,
    "max_age": "12h",
}


def headers(reply) -> list[tuple[str, str]]:
    """The reply's headers as text, without the request id (its value changes) and X-KrakenD (on every reply)."""
    return [(k.decode(), v.decode()) for k, v in reply.headers if k not in (b"x-request-id", b"x-krakend")]


def preflight(origin: str | None, method: str, requested: str | None = None, **extra: str) -> list[tuple[str, str]]:
    out = [("Origin", origin)] if origin is not None else []
    out.append(("Access-Control-Request-Method", method))
    if requested is not None:
        out.append(("Access-Control-Request-Headers", requested))
    return out + list(extra.items())


def test_preflight_is_answered_before_routing_with_exact_headers() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    allowed = [
        PREFLIGHT_VARY,
        ("access-control-allow-origin", APP),
        ("access-control-allow-methods", "PUT"),
        ("access-control-allow-headers", "authorization,content-type"),
        ("access-control-allow-credentials", "true"),
        ("access-control-max-age", "43200"),
    ]

    async def scenario(gw: InProcessGateway) -> None:
        # /a has only GET, /nope nothing at all: both preflights are answered, and no backend is called.
        for path in ("/a", "/nope"):
            r = await gw.request("OPTIONS", path, preflight(APP, "PUT", "authorization,content-type"))
            assert (r.status, headers(r), r.body) == (204, allowed, b"")
        assert fakes.seen == {"/a": []}

    run(config(STRICT), fakes, scenario)


def test_a_refused_preflight_gets_only_vary() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        for request in (
            preflight("https://evil.example", "GET"),
            preflight(None, "GET"),
            preflight(APP, "DELETE"),
            preflight(APP, "GET", "authorization,x-other"),
            preflight(APP, "get"),
        ):  # methods are case-sensitive, as in KrakenD
            r = await gw.request("OPTIONS", "/a", request)
            assert (r.status, headers(r), r.body) == (204, [PREFLIGHT_VARY], b""), request

    run(config(STRICT), fakes, scenario)


def test_wildcard_subdomains_match_subdomains_only() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        for origin, allowed in [
            ("https://a.example.org", True),
            ("https://a.b.EXAMPLE.org", True),
            ("https://example.org", False),
            ("https://evilexample.org", False),
            ("http://a.example.org", False),
            ("https://a.example.org.evil.com", False),
        ]:
            r = await gw.request("GET", "/a", [("Origin", origin)])
            assert r.header("access-control-allow-origin") == (origin if allowed else None), origin
            assert r.header("access-control-allow-credentials") == ("true" if allowed else None), origin

    run(config(STRICT), fakes, scenario)


def test_actual_requests_get_cors_headers_on_every_reply_errors_included() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1}), "/bad": returning(error=BackendError("boom", cause="test"))})
    cors = [
        ("vary", "Origin"),
        ("access-control-allow-origin", APP),
        ("access-control-expose-headers", "X-Request-Id, Content-Length"),
        ("access-control-allow-credentials", "true"),
    ]
    endpoints = (
        {"endpoint": "/a", "backend": [{"host": ["http://fake"], "url_pattern": "/a"}]},
        {"endpoint": "/bad", "backend": [{"host": ["http://fake"], "url_pattern": "/bad"}]},
    )

    async def scenario(gw: InProcessGateway) -> None:
        ok = await gw.request("GET", "/a", [("Origin", APP)])
        assert (ok.status, ok.json(), headers(ok)) == (200, {"a": 1}, [*JSON_OK, *cors])
        assert ok.header("x-request-id")
        missing = await gw.request("GET", "/nope", [("Origin", APP)])
        assert (missing.status, headers(missing)[-4:]) == (404, cors)
        wrong = await gw.request("POST", "/a", [("Origin", APP)])
        assert (wrong.status, wrong.header("allow"), headers(wrong)[-4:]) == (405, "GET", cors)
        failed = await gw.request("GET", "/bad", [("Origin", APP)])
        assert (failed.status, headers(failed)[-4:]) == (500, cors)
        # No Origin, another origin, or a method outside allow_methods: only Vary.
        for request in (
            ("GET", "/a", []),
            ("GET", "/a", [("Origin", "https://evil.example")]),
            ("DELETE", "/a", [("Origin", APP)]),
        ):
            r = await gw.request(*request)
            assert [h for h in headers(r) if h[0] in ("vary",) or h[0].startswith("access-control")] == [
                ("vary", "Origin")
            ], request

    run(config(STRICT, *endpoints), fakes, scenario)


def test_admission_refusals_get_cors_headers_too() -> None:
    """A browser must see the gateway's 431 (or 503, 413, 414) as such, not as a CORS failure."""
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a", [("Origin", APP), *[(f"x-{i}", "v") for i in range(3)]])
        assert r.status == 431 and r.header("access-control-allow-origin") == APP
        assert r.header("vary") == "Origin"

    run(
        config(STRICT, extra_config={"security/cors": STRICT, "lambdagate/server": {"max_header_count": 3}}),
        fakes,
        scenario,
    )


def test_any_origin_never_comes_with_credentials() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    cors = {"allow_origins": ["*"], "allow_credentials": True, "expose_headers": ["X-Total"]}

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a", [("Origin", "https://anyone.example")])
        assert headers(r)[2:] == [
            ("vary", "Origin"),
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", "X-Total"),
        ]
        p = await gw.request("OPTIONS", "/a", preflight("https://anyone.example", "POST", "x-anything"))
        assert headers(p) == [
            PREFLIGHT_VARY,
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "POST"),
            ("access-control-allow-headers", "x-anything"),
        ]

    run(config(cors), fakes, scenario)
    warnings = [str(w) for w in validate_document(config(cors), LoadOptions()).warnings]
    assert warnings == [
        'extra_config["security/cors"].allow_credentials: with allow_origins "*" browsers refuse '
        "credentialed requests (they need the origin named), and lambdagate sends no "
        "Access-Control-Allow-Credentials: list the origins that may send credentials"
    ]


def test_defaults_are_krakends_any_origin_simple_methods_any_header() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        p = await gw.request("OPTIONS", "/a", preflight(APP, "HEAD", "X-Custom, Authorization"))
        assert (p.status, headers(p)) == (
            204,
            [
                PREFLIGHT_VARY,
                ("access-control-allow-origin", "*"),
                ("access-control-allow-methods", "HEAD"),
                ("access-control-allow-headers", "X-Custom, Authorization"),
            ],
        )
        put = await gw.request("OPTIONS", "/a", preflight(APP, "PUT"))
        assert headers(put) == [PREFLIGHT_VARY]
        r = await gw.request("GET", "/a", [("Origin", APP)])
        assert headers(r)[2:] == [("vary", "Origin"), ("access-control-allow-origin", "*")]

    run(config({}), fakes, scenario)


def test_options_passthrough_success_status_and_private_network() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1}), "/opt": returning({"options": True})})
    cors = {
        "allow_origins": [APP],
        "allow_methods": ["GET", "OPTIONS"],
        "options_passthrough": True,
        "allow_private_network": True,
    }
    endpoints = (
        {"endpoint": "/a", "backend": [{"host": ["http://fake"], "url_pattern": "/a"}]},
        {"endpoint": "/opt", "method": "OPTIONS", "backend": [{"host": ["http://fake"], "url_pattern": "/opt"}]},
    )
    vary = ("vary", PREFLIGHT_VARY[1] + ", Access-Control-Request-Private-Network")
    allowed = [
        vary,
        ("access-control-allow-origin", APP),
        ("access-control-allow-methods", "GET"),
        ("access-control-allow-private-network", "true"),
    ]

    async def scenario(gw: InProcessGateway) -> None:
        request = preflight(APP, "GET", **{"Access-Control-Request-Private-Network": "true"})
        own = await gw.request("OPTIONS", "/opt", request)  # the endpoint answers, with the preflight's headers
        assert (own.status, own.json(), headers(own)) == (200, {"options": True}, [*JSON_OK, *allowed])
        none = await gw.request("OPTIONS", "/a", request)  # no OPTIONS endpoint: the router's 405
        assert (none.status, headers(none)[-4:]) == (405, allowed)

    run(config(cors, *endpoints), fakes, scenario)

    async def status_200(gw: InProcessGateway) -> None:
        r = await gw.request("OPTIONS", "/a", preflight(APP, "GET"))
        assert (r.status, r.body) == (200, b"")

    run(config({"allow_origins": [APP], "options_success_status": 200}), FakeBackends({"/a": returning()}), status_200)


def test_a_backends_own_cors_headers_are_replaced() -> None:
    async def answer(req: ProxyRequest) -> ProxyResponse:
        return ProxyResponse.passthrough(
            200,
            [
                ("Access-Control-Allow-Origin", "*"),
                ("Vary", "Accept-Encoding"),
                ("Access-Control-Allow-Credentials", "true"),
            ],
            b"{}",
            complete=True,
        )

    fakes = FakeBackends({"/a": answer})
    endpoint = {
        "endpoint": "/a",
        "output_encoding": "no-op",
        "backend": [{"host": ["http://fake"], "url_pattern": "/a", "encoding": "no-op"}],
    }

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a", [("Origin", "https://evil.example")])
        assert [h for h in headers(r) if h[0] in ("vary",) or h[0].startswith("access-control")] == [
            ("vary", "Accept-Encoding"),
            ("vary", "Origin"),
        ]
        r = await gw.request("GET", "/a", [("Origin", APP)])
        assert [v for k, v in headers(r) if k == "access-control-allow-origin"] == [APP]

    run(config({"allow_origins": [APP]}, endpoint), fakes, scenario)


@pytest.mark.parametrize(
    ("cors", "error"),
    [
        (
            {"allow_origins": ["http*"], "allow_credentials": True},
            "allow_origins[0]: 'http*' can match any site, which allow_credentials would let read replies with its "
            "users' cookies",
        ),
        (
            {"allow_origins": ["https://*.com"], "allow_credentials": True},
            "allow_origins[0]: 'https://*.com' can match",
        ),
        (
            {"allow_origins": ["https://*.*.example.com"]},
            "allow_origins[0]: 'https://*.*.example.com': at most one \"*\"",
        ),
        ({"options_success_status": 400}, "options_success_status: a preflight needs a 2xx status"),
        ({"max_age": 3600}, "max_age: Input should be a valid string"),
        ({"allow_headers": ["X-Ok", "Bad Header"]}, "allow_headers[1]: 'Bad Header' is not a header name"),
        ({"allow_credentials": "yes"}, "allow_credentials: Input should be a valid boolean"),
    ],
)
def test_bad_options_are_refused_with_their_path(cors: dict, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_document(config(cors), LoadOptions())
    messages = [str(issue) for issue in info.value.issues]
    assert len(messages) == 1 and messages[0].startswith(f'extra_config["security/cors"].{error}'), messages


def test_unanchored_wildcards_work_without_credentials_and_origins_that_never_match_are_warned() -> None:
    cors = {
        "allow_origins": ["http*", "krakend.test", "https://app.example.com/", 'https://{{ env "HOST" }}'],
        "max_age": "3600",
    }
    warnings = [str(w) for w in validate_document(config(cors), LoadOptions()).warnings]
    assert [w.split(":")[0] for w in warnings] == [
        f'extra_config["security/cors"].allow_origins[{i}]' for i in (1, 2, 3)
    ] + ['extra_config["security/cors"].max_age']
    assert warnings[-1].endswith(
        'malformed duration \'3600\': write it like "3s", "500ms" or "1m30s"; ignored, as KrakenD does'
    )
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/a", [("Origin", "https://anything.example")])
        assert (r.header("access-control-allow-origin"), r.header("access-control-allow-credentials")) == (
            "https://anything.example",
            None,
        )
        p = await gw.request("OPTIONS", "/a", preflight("https://anything.example", "GET"))
        assert p.header("access-control-max-age") is None  # "3600" has no unit: ignored

    run(config(cors), fakes, scenario)
