"""Rate limits in this worker's memory (qos/ratelimit/router, /service, /proxy): exact token counts through the real
request stack in-process (tests/support/asgi.py), statuses and headers, strategies, bounds, and config refusals."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
import pytest

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from lambdagate.front import Exchange
from lambdagate.ratelimit import key_reader
from lambdagate.ratelimit.buckets import ClientBuckets, TokenBucket, client_key
from lambdagate.ratelimit.config import RouterLimits
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run
from tests.support.jwt_keys import jwks, sign
from tests.support.procs import serve_module

RL = "qos/ratelimit/router"


def endpoint(path: str, *patterns: str, limit: dict | None = None, key: str = RL, **kw) -> dict:
    extra = {key: limit} if limit is not None else {}
    return {
        "endpoint": path,
        "backend": [{"host": ["http://fake"], "url_pattern": p} for p in patterns],
        "extra_config": extra,
        **kw,
    }


def config(*endpoints: dict, **kw) -> dict:
    return {"version": 3, "timeout": "1s", "endpoints": list(endpoints), **kw}


async def statuses(gw: InProcessGateway, n: int, path: str = "/a", **kw) -> list[int]:
    return [(await gw.request("GET", path, **kw)).status for _ in range(n)]


def test_endpoint_bucket_admits_its_capacity_then_503_with_retry_and_ratelimit_headers() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        assert await statuses(gw, 3) == [200, 200, 200]
        refused = await gw.request("GET", "/a")
        assert (refused.status, refused.json()) == (503, {"error": "service unavailable: rate limit reached"})
        assert refused.header("retry-after") == "1"
        assert refused.header("ratelimit-policy") == '"endpoint";q=10;w=1'
        assert refused.header("ratelimit") == '"endpoint";r=0;t=1'
        await asyncio.sleep(0.13)  # 10 tokens a second: one more token, not two
        assert await statuses(gw, 2) == [200, 503]
        assert len(fakes.seen["/a"]) == 4  # refused requests never reach the backend

    run(config(endpoint("/a", "/a", limit={"max_rate": 10, "capacity": 3})), fakes, scenario)


def test_every_is_the_period_of_max_rate_and_capacity_defaults_to_the_rate_per_second() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        assert await statuses(gw, 2) == [200, 503]  # 60 a minute: one a second, capacity 1 (KrakenD's default)
        assert await statuses(gw, 3, "/b") == [200, 200, 503]  # capacity defaults to max_rate per second

    run(
        config(
            endpoint("/a", "/a", limit={"max_rate": 60, "every": "1m"}), endpoint("/b", "/a", limit={"max_rate": 2})
        ),
        fakes,
        scenario,
    )


def test_client_limit_is_429_per_address_and_a_spoofed_forwarded_for_does_not_change_the_bucket() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        assert await statuses(gw, 2, client="10.0.0.1") == [200, 200]
        spoofed = [
            (
                await gw.request(
                    "GET", "/a", [("X-Forwarded-For", f"192.0.2.{i}"), ("X-Real-Ip", "1.2.3.4")], client="10.0.0.1"
                )
            ).status
            for i in range(3)
        ]
        assert spoofed == [429, 429, 429]
        refused = await gw.request("GET", "/a", client="10.0.0.1")
        assert (refused.status, refused.json()) == (429, {"error": "too many requests"})
        assert refused.header("ratelimit-policy") == '"client";q=2;w=1'
        assert refused.header("retry-after") == "1"
        assert await statuses(gw, 2, client="10.0.0.2") == [200, 200]  # another client has its own bucket

    limit = {"client_max_rate": 2, "strategy": "ip", "key": "X-Forwarded-For"}
    run(config(endpoint("/a", "/a", limit=limit)), fakes, scenario)


def test_header_strategy_counts_by_the_header_and_refuses_a_request_without_it() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a")).status == 429
        assert [(await gw.request("GET", "/a", [("X-Api-Key", "one")])).status for _ in range(2)] == [200, 429]
        assert (await gw.request("GET", "/a", [("x-api-key", "two")])).status == 200
        long_key = "k" * 10_000  # kept as a digest, still its own bucket
        assert [(await gw.request("GET", "/a", [("X-Api-Key", long_key)])).status for _ in range(2)] == [200, 429]

    run(
        config(endpoint("/a", "/a", limit={"client_max_rate": 1, "strategy": "header", "key": "X-Api-Key"})),
        fakes,
        scenario,
    )


def test_the_header_key_is_read_as_the_guards_left_it() -> None:
    read = key_reader(RouterLimits(client_max_rate=1, strategy="header", key=" X-User "))
    ex = Exchange({"headers": [(b"x-other", b"o"), (b"x-user", b"mallory"), (b"x-user", b"2nd")]}, None, "GET", "/")
    assert read(ex) == "mallory"  # no guard set it: the client's first value
    ex.backend_headers = {"x-org": "acme"}
    assert read(ex) == "mallory"
    ex.backend_headers = {"x-user": "alice"}  # a propagated claim (names are lower case there)
    assert read(ex) == "alice"
    ex.backend_headers = {"x-user": ""}  # a missing claim sets it empty: the request is refused, as in KrakenD
    assert read(ex) == ""
    assert read(Exchange({"headers": []}, None, "GET", "/")) == ""


def test_param_strategy_counts_by_the_path_parameter_and_the_client_check_comes_first() -> None:
    fakes = FakeBackends({"/u": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        assert await statuses(gw, 2, "/users/1") == [200, 429]
        assert await statuses(gw, 1, "/users/2") == [200]
        assert await statuses(gw, 1, "/users/3") == [503]  # the endpoint-wide capacity (2) is spent

    limit = {"max_rate": 0.5, "capacity": 2, "client_max_rate": 1, "strategy": "param", "key": "id"}
    run(config(endpoint("/users/{id}", "/u", limit=limit)), fakes, scenario)


def test_service_limit_spans_every_endpoint_before_the_jwt_check_and_spares_misses_and_health() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    jwt = {"auth/validator": {"alg": "RS256", "jwk_url": "https://keys.invalid/jwks.json", "cache": True}}

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a")).status == 200
        assert (await gw.request("GET", "/missing")).status == 404  # no token spent
        assert (await gw.request("GET", "/b")).status == 200
        assert (await gw.request("GET", "/c")).status == 401  # a token spent, then refused by the validator
        assert [(await gw.request("GET", p)).status for p in ("/a", "/c")] == [503, 503]
        assert (await gw.request("GET", "/__health")).status == 200

    run(
        config(
            endpoint("/a", "/a"),
            endpoint("/b", "/a"),
            endpoint("/c", "/a", extra_config=jwt),
            extra_config={"qos/ratelimit/service": {"max_rate": 1, "capacity": 3}},
        ),
        fakes,
        scenario,
    )


def test_backend_limit_fails_that_backend_partial_in_a_merge_and_503_alone(start_gateway, upstream: str) -> None:
    limit = {"qos/ratelimit/proxy": {"max_rate": 1, "capacity": 1}}
    gw = start_gateway(
        config(
            {
                "endpoint": "/m",
                "backend": [
                    {"host": [upstream], "url_pattern": "/json/a", "group": "a"},
                    {"host": [upstream], "url_pattern": "/json/b", "group": "b", "extra_config": limit},
                ],
            },
            {"endpoint": "/one", "backend": [{"host": [upstream], "url_pattern": "/json/c", "extra_config": limit}]},
        )
    )
    first, second = get(gw.url + "/m"), get(gw.url + "/m")
    assert (first[0], sorted(first[1]), first[2]) == (200, ["a", "b"], "true")
    assert (second[0], sorted(second[1]), second[2]) == (200, ["a"], "false")
    assert [get(gw.url + "/one")[0] for _ in range(2)] == [200, 503]


@pytest.fixture(scope="module")
def key_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real JWK set server (tests/support/jwks_server.py) publishing one RS256 key."""
    with serve_module("tests.support.jwks_server", "/ready", tmp_path_factory.mktemp("jwks")) as url:
        body = orjson.dumps(jwks(("RS256", "k1")))
        urllib.request.urlopen(urllib.request.Request(f"{url}/jwks", data=body, method="PUT"), timeout=5).read()
        yield url


def test_header_strategy_counts_by_a_propagated_claim_not_the_clients_header(
    key_server: str, upstream: str, start_gateway
) -> None:
    # The shape of a real config (JWT-validation-based rate limiting): the validator writes the user's name into
    # x-user before the limit reads it, as krakend-jose does (Request.Header.Set), so the limit is per user and a
    # client's own x-user neither shares nor escapes a bucket.
    validator = {
        "alg": "RS256",
        "jwk_url": f"{key_server}/jwks",
        "disable_jwk_security": True,
        "propagate_claims": [["preferred_username", "x-user"]],
    }
    limit = {"client_max_rate": 1, "client_capacity": 1, "strategy": "header", "key": "x-user"}
    gw = start_gateway(
        config(
            {
                "endpoint": "/me",
                "input_headers": ["x-user"],
                "extra_config": {"auth/validator": validator, RL: limit},
                "backend": [{"host": [upstream], "url_pattern": "/echo/me"}],
            }
        )
    )
    alice, bob = (sign(kid="k1", preferred_username=name) for name in ("alice", "bob"))

    def call(token: str, user: str | None = None) -> tuple[int, dict, str | None]:
        return get(gw.url + "/me", {"Authorization": f"Bearer {token}", **({"X-User": user} if user else {})})

    first = call(alice, "r0")
    assert first[0] == 200, first
    assert first[1]["headers"]["x-user"] == "alice"  # the claim, over the client's value
    assert [call(alice, f"r{i}")[0] for i in range(1, 4)] + [call(alice)[0]] == [429] * 4
    second = call(bob)  # his own bucket, not the one every request without x-user would share
    assert (second[0], second[1]["headers"]["x-user"]) == (200, "bob")
    assert call(bob, "alice")[0] == 429


def _body(raw: bytes) -> dict:
    """A JSON body, or the router's plain-text one ("404 page not found") as {"text": ...}."""
    try:
        return orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        return {"text": raw.decode("utf-8", "replace")}


def get(url: str, headers: dict | None = None) -> tuple[int, dict, str | None]:
    """(status, JSON body, X-KrakenD-Completed) of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, _body(reply.read()), reply.headers.get("x-krakend-completed")
    except urllib.error.HTTPError as error:
        return error.code, _body(error.read()), error.headers.get("x-krakend-completed")


def test_legacy_names_are_read_with_a_warning() -> None:
    # KrakenD 1.x's juju limits, with their camelCase fields (as real configs still write them)
    doc = config(
        endpoint(
            "/a",
            "/a",
            limit={"maxRate": 5, "clientMaxRate": 2, "strategy": "ip", "every": "1s"},
            key="github.com/devopsfaith/krakend-ratelimit/juju/router",
        ),
        {
            "endpoint": "/b",
            "backend": [
                {
                    "host": ["http://fake"],
                    "url_pattern": "/b",
                    "extra_config": {
                        "github_com/devopsfaith/krakend-ratelimit/juju/proxy": {"maxRate": 1, "capacity": 1}
                    },
                }
            ],
        },
    )
    loaded = validate_document(doc, LoadOptions())
    router = loaded.service.endpoints[0].namespaces[RL]
    assert (router.max_rate, router.client_max_rate, router.strategy) == (5, 2, "ip")
    assert loaded.service.endpoints[1].backend[0].namespaces["qos/ratelimit/proxy"].max_rate == 1
    text = "\n".join(str(w) for w in loaded.warnings)
    assert "is the old name of `qos/ratelimit/router`" in text and "is the old name of `qos/ratelimit/proxy`" in text
    assert "not supported" not in text
    both = config(endpoint("/a", "/a", limit={"maxRate": 5, "max_rate": 1}))
    with pytest.raises(ConfigError, match="old name of max_rate"):
        validate_document(both, LoadOptions())
    unknown = validate_document(config(endpoint("/a", "/a", limit={"max_rate": 1, "burst": 3})), LoadOptions())
    assert any("burst" in str(w) and "not supported" in str(w) for w in unknown.warnings)


@pytest.mark.parametrize(
    "limit, where, words",
    [
        ({"max_rate": -1}, "max_rate", "at least 0"),
        ({"max_rate": "10"}, "max_rate", "must be a number"),
        ({"client_max_rate": 1, "strategy": "cookie"}, "strategy", '"ip", "header" or "param"'),
        ({"client_max_rate": 1, "strategy": "header"}, "key", "needs the header"),
        ({"client_max_rate": 1, "strategy": "param", "key": "nope"}, "key", "no parameter"),
        # Not a header name (outside Latin-1 it also failed every request with a traceback, not the start-up).
        ({"client_max_rate": 1, "strategy": "header", "key": "X-\u0100"}, "key", "is no header name"),
        ({"client_max_rate": 1, "strategy": "header", "key": "X User"}, "key", "is no header name"),
        ({"max_rate": 1, "every": "soon"}, "every", "malformed duration"),
        ({"client_max_rate": 1, "client_capacity": -2}, "client_capacity", "at least 0"),
    ],
)
def test_bad_router_limits_are_refused_with_their_json_path(limit: dict, where: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_document(config(endpoint("/a/{id}", "/a", limit=limit)), LoadOptions())
    text = str(caught.value)
    assert f'endpoints[0].extra_config["{RL}"].{where}' in text and words in text, text


def test_bad_redis_limits_and_pools_are_refused() -> None:
    pools = {
        "redis": {
            "connection_pools": [{"name": "main", "address": "127.0.0.1:6379"}],
            "clusters": [{"name": "big", "addresses": ["127.0.0.1:7000"]}],
        }
    }
    cases = [
        ({"max_rate": 1, "connection_pool": "other"}, r"is no connection pool or cluster .*\(big, main\)"),
        ({"max_rate": 1}, "connection_pool: is missing"),
        ({"max_rate": 1, "connection_pool": "main", "on_failure": "open"}, '"local" or "deny"'),
    ]
    for limit, words in cases:
        doc = config(endpoint("/a", "/a", limit=limit, key="qos/ratelimit/router/redis"), extra_config=pools)
        with pytest.raises(ConfigError, match=words):
            validate_document(doc, LoadOptions())
    bad_pool = {
        "redis": {"connection_pools": [{"name": "main", "address": "nohost"}, {"name": "main", "address": "h:1"}]}
    }
    with pytest.raises(ConfigError) as caught:
        validate_document(config(endpoint("/a", "/a"), extra_config=bad_pool), LoadOptions())
    assert "connection_pools[0].address" in str(caught.value) and "names must be unique" in str(caught.value)
    bad_cluster = {"redis": {"clusters": [{"name": "c", "addresses": ["h:1", "h:99999"], "read_timeout": "0s"}]}}
    with pytest.raises(ConfigError) as caught:
        validate_document(config(endpoint("/a", "/a"), extra_config=bad_cluster), LoadOptions())
    assert "clusters[0].addresses[1]" in str(caught.value) and "clusters[0].read_timeout" in str(caught.value)
    with pytest.raises(ConfigError, match=r"clusters\[0\]\.addresses"):
        validate_document(
            config(endpoint("/a", "/a"), extra_config={"redis": {"clusters": [{"name": "c"}]}}), LoadOptions()
        )
    # str.isdigit() is true for both ports: int() raised on "²" (not a ConfigError), read "６３７９" as 6379
    for address in ("h:\u00b2", "h:\uff16\uff13\uff17\uff19"):
        bad_port = {"redis": {"connection_pools": [{"name": "p", "address": address}]}}
        with pytest.raises(ConfigError, match=r'connection_pools\[0\]\.address.*must be "host:port"'):
            validate_document(config(endpoint("/a", "/a"), extra_config=bad_port), LoadOptions())
    # A cluster is named as a pool is.
    limit = {"max_rate": 1, "connection_pool": "big"}
    validate_document(config(endpoint("/a", "/a", limit=limit, key=RL + "/redis"), extra_config=pools), LoadOptions())
    service = {"qos/ratelimit/service": {"client_max_rate": 1, "strategy": "param", "key": "id"}}
    with pytest.raises(ConfigError, match="at service level"):
        validate_document(config(endpoint("/a", "/a"), extra_config=service), LoadOptions())


def test_token_bucket_exact_counts_with_a_fake_clock() -> None:
    bucket = TokenBucket(2.0, 3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0 and bucket.take(0.5) > 0
    assert sum(bucket.take(100.0) == 0.0 for _ in range(10)) == 3  # refills to capacity, no more


def test_a_flood_of_distinct_clients_keeps_the_table_bounded_and_idle_clients_are_swept() -> None:
    table = ClientBuckets(rate=10.0, capacity=2, max_clients=1000, cleanup_period=60.0)
    now = time.monotonic()
    admitted = sum(table.take(f"client-{i}", now) == 0.0 for i in range(50_000))
    assert len(table.buckets) == 1000 and admitted == 1000  # new clients past the bound are refused
    later = now + 1.0  # every bucket has refilled: all idle, swept when the next new client comes
    assert table.take("late", later) == 0.0 and len(table.buckets) == 1
    assert table.take("late", later) == 0.0 and table.take("late", later) > 0  # its own bucket, limited
    assert len(client_key("x" * 100_000)) < 64


def test_a_key_flood_through_the_gateway_is_refused_past_the_bound() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        codes = [(await gw.request("GET", "/a", [("X-Key", f"k{i}")])).status for i in range(60)]
        assert codes[:50] == [200] * 50 and set(codes[50:]) == {429}

    limit = {"client_max_rate": 0.1, "strategy": "header", "key": "X-Key", "max_clients": 50}
    run(config(endpoint("/a", "/a", limit=limit)), fakes, scenario)
