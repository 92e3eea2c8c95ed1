"""`qos/http-cache`: the caching rules and the LRU bounds as units; load-time checks and the legacy name; end to end
with a real gateway against the real upstream (tests/support/upstream.py `/cache/...`, which counts its calls) and
the Lambda Invoke stub, proving what a hit does not reach."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from email.utils import formatdate
from typing import Any

import pytest
from multidict import CIMultiDict

from lambdagate.backends.http_cache import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_SIZE,
    Entry,
    LruCache,
    ResponseCache,
    cache_control,
    freshness,
)
from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from tests.test_circuit_breaker import AWS_ENV  # fake credentials for the Invoke stub

HC = "qos/http-cache"
PATH = f'endpoints[0].backend[0].extra_config["{HC}"]'
LEGACY = "github.com/devopsfaith/krakend-httpcache"


# --- the rules, as units -------------------------------------------------------------------------------------------


def entry(size: int, expires: float = 100.0) -> Entry:
    return Entry(200, CIMultiDict(), b"", expires, (), False, size)


def test_lru_drops_the_least_recently_used_past_max_items() -> None:
    cache = LruCache(max_items=2, max_size=10_000)
    cache.put("a", entry(10))
    cache.put("b", entry(10))
    assert cache.get("a", 0.0) is not None  # "a" is now the most recently used
    cache.put("c", entry(10))
    assert [cache.get(k, 0.0) is not None for k in "abc"] == [True, False, True]
    assert len(cache) == 2 and cache.size == 20


def test_lru_keeps_within_max_size_and_refuses_an_entry_larger_than_it() -> None:
    cache = LruCache(max_items=100, max_size=100)
    for key in "abcd":
        cache.put(key, entry(40))
    assert len(cache) == 2 and cache.size == 80 and cache.get("a", 0.0) is None
    cache.put("huge", entry(101))
    assert cache.get("huge", 0.0) is None and len(cache) == 2
    cache.put("c", entry(30))  # replacing an entry counts its new size only
    assert cache.size == 70


def test_lru_expired_entries_are_dropped_on_read() -> None:
    cache = LruCache(10, 1000)
    cache.put("a", entry(10, expires=5.0))
    assert cache.get("a", 4.9) is not None
    assert cache.get("a", 5.0) is None and len(cache) == 0 and cache.size == 0


def test_cache_control_directives() -> None:
    assert cache_control(['public, Max-Age="30"', "no-transform"]) == {
        "public": None,
        "max-age": "30",
        "no-transform": None,
    }
    assert cache_control([]) == {}


def headers(**values: str) -> CIMultiDict:
    return CIMultiDict({k.replace("_", "-"): v for k, v in values.items()})


def test_freshness_by_s_maxage_max_age_expires_and_age() -> None:
    now = time.time()
    fresh = headers(cache_control="max-age=60, s-maxage=10")
    assert freshness(fresh, cache_control([fresh["cache-control"]]), now) == 10.0  # a shared cache reads s-maxage
    assert freshness(headers(age="15"), {"max-age": "60"}, now) == 45.0
    expires = headers(date=formatdate(now, usegmt=True), expires=formatdate(now + 30, usegmt=True))
    assert freshness(expires, {}, now) == pytest.approx(30.0, abs=1)
    assert freshness(headers(expires="0"), {}, now) is None  # an invalid Expires: already stale
    assert freshness(headers(), {"max-age": "soon"}, now) is None
    assert freshness(headers(), {}, now) is None  # no lifetime given: never kept (no heuristics)


def stored(reply: CIMultiDict, request: dict[str, str] | None = None, status: int = 200) -> bool:
    cache = ResponseCache(LruCache(10, 100_000), None)
    asyncio.run(cache.store("k", request or {}, status, reply, b"{}"))
    return asyncio.run(cache.lookup("k", request or {})) is not None


def test_what_a_shared_cache_keeps() -> None:
    assert stored(headers(cache_control="max-age=60"))
    assert not stored(headers(cache_control="max-age=60"), status=500)
    assert not stored(headers(cache_control="max-age=60"), status=206)
    for refused in ("no-store, max-age=60", "no-cache, max-age=60", "private, max-age=60", "max-age=0"):
        assert not stored(headers(cache_control=refused)), refused
    assert not stored(headers(cache_control="max-age=60", vary="*"))
    assert not stored(headers(cache_control="max-age=60", set_cookie="s=1"))
    # A request that forwarded credentials: kept only when the reply says public.
    for credential in ("authorization", "cookie"):
        assert not stored(headers(cache_control="max-age=60"), {credential: "secret"})
        assert stored(headers(cache_control="public, max-age=60"), {credential: "secret"})
    # The request's own Cache-Control, when forwarded.
    assert not stored(headers(cache_control="max-age=60"), {"cache-control": "no-store"})


def test_a_request_with_credentials_gets_only_public_entries() -> None:
    cache = ResponseCache(LruCache(10, 100_000), None)
    asyncio.run(cache.store("k", {}, 200, headers(cache_control="max-age=60"), b"{}"))
    assert asyncio.run(cache.lookup("k", {})) is not None
    assert asyncio.run(cache.lookup("k", {"authorization": "Bearer x"})) is None
    assert asyncio.run(cache.lookup("k", {"cache-control": "no-cache"})) is None  # the client asked for a fresh reply


# --- configuration --------------------------------------------------------------------------------------------------


def doc(options: Any, key: str = HC, lambda_backend: bool = False) -> dict:
    backend: dict[str, Any] = {"host": ["http://127.0.0.1:1"], "url_pattern": "/x", "extra_config": {key: options}}
    if lambda_backend:
        backend = {"extra_config": {"backend/lambda": {"function_name": "f", "region": "us-east-1"}, key: options}}
    return {"version": 3, "endpoints": [{"endpoint": "/a", "backend": [backend]}]}


def load(config: dict):
    return validate_document(config, LoadOptions())


def refused(options: Any) -> str:
    with pytest.raises(ConfigError) as err:
        load(doc(options))
    return str(err.value)


def test_fields_parsed_with_defaults() -> None:
    loaded = load(doc({"shared": True, "max_items": 5, "max_size": 1000, "cache_lambda": True, "ttl": "2m"}))
    options = loaded.service.endpoints[0].backend[0].namespaces[HC]
    assert (options.shared, options.max_items, options.max_size, options.cache_lambda, options.ttl) == (
        True,
        5,
        1000,
        True,
        120.0,
    )
    defaults = load(doc({})).service.endpoints[0].backend[0].namespaces[HC]
    assert (defaults.shared, defaults.max_items, defaults.max_size, defaults.cache_lambda) == (False, 0, 0, False)
    assert (DEFAULT_MAX_ITEMS, DEFAULT_MAX_SIZE) == (1000, 16 * 1024 * 1024)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"max_items": -1}, f"{PATH}.max_items: must be a whole number >= 0"),
        ({"max_size": "big"}, f"{PATH}.max_size: must be a whole number of bytes >= 0"),
        ({"shared": "yes"}, f"{PATH}.shared"),
        ({"ttl": 0}, f"{PATH}.ttl: must be seconds > 0"),
        ({"ttl": "soon"}, f"{PATH}.ttl"),
        (
            {"connection_pool": "cache"},
            f"{PATH}.connection_pool: 'cache' is no connection pool or cluster of the service's \"redis\" namespace",
        ),
        ([], f"{PATH}: must be an object"),
    ],
)
def test_bad_values_refused_with_their_path(options: Any, expected: str) -> None:
    assert expected in refused(options)


def test_legacy_name_read_with_a_warning() -> None:
    loaded = load(doc({"max_items": 3}, key=LEGACY))
    assert loaded.service.endpoints[0].backend[0].namespaces[HC].max_items == 3
    assert any(
        LEGACY in message and f"read as `{HC}`" in message and "KrakenD 2 reads this spelling too" in message
        for message in map(str, loaded.warnings)
    ), loaded.warnings


def test_unknown_fields_warned() -> None:
    loaded = load(doc({"max_itmes": 3}))
    assert any("max_itmes" in str(w) and "not supported, ignored" in str(w) for w in loaded.warnings), loaded.warnings


# --- end to end: a real gateway, the counting upstream, the Invoke stub ---------------------------------------------


def get(url: str, **request_headers: str) -> tuple[int, Any, Any]:
    req = urllib.request.Request(url, headers=request_headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.headers, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def calls(server: str, name: str, counter: str = "cache-calls") -> int:
    return get(f"{server}/{counter}/{name}")[2]["calls"]


def http_endpoint(upstream: str, path: str, options: dict, encoding: str = "json") -> dict:
    return {
        "endpoint": f"/{path}/{{name}}",
        **({"output_encoding": "no-op"} if encoding == "no-op" else {}),
        "input_headers": ["Accept-Language", "Authorization", "Cookie", "Cache-Control"],
        "backend": [
            {"host": [upstream], "url_pattern": "/cache/{name}", "encoding": encoding, "extra_config": {HC: options}}
        ],
    }


@pytest.fixture(scope="module")
def cached_gateway(upstream, tmp_path_factory):
    from tests.support.gateway import launch_gateway

    shared = {"shared": True, "max_items": 50}
    config = {
        "version": 3,
        "timeout": "3s",
        "endpoints": [
            http_endpoint(upstream, "c", {}),
            http_endpoint(upstream, "raw", {}, encoding="no-op"),
            http_endpoint(upstream, "items", {"max_items": 2}),
            http_endpoint(upstream, "sized", {"max_size": 6000}),
            http_endpoint(upstream, "s1", shared),
            http_endpoint(upstream, "s2", shared),
        ],
    }
    gateway = launch_gateway(config, tmp_path_factory.mktemp("cache-gw"))
    yield gateway
    gateway.process.stop()


def answers(url: str, n: int, **request_headers: str) -> list[int]:
    """The upstream's call counter as each of n replies shows it."""
    return [get(url, **request_headers)[2]["calls"] for _ in range(n)]


def test_fresh_replies_are_served_without_calling_the_upstream(upstream, cached_gateway) -> None:
    gw = cached_gateway.url
    for name in ("fresh-1", "smax-1", "expires-1", "public-1"):
        assert answers(f"{gw}/c/{name}", 3) == [1, 1, 1], name
        assert calls(upstream, name) == 1, name
    status, reply_headers, body = get(f"{gw}/raw/fresh-2")  # no-op: the body and headers as kept
    assert (status, body["calls"], reply_headers["Cache-Control"]) == (200, 1, "max-age=60")
    assert get(f"{gw}/raw/fresh-2")[2]["calls"] == 1 and calls(upstream, "fresh-2") == 1


def test_replies_not_kept(upstream, cached_gateway) -> None:
    gw = cached_gateway.url
    for name in ("nostore-1", "nocache-1", "private-1", "none-1", "varyall-1", "cookie-1", "aged-1"):
        assert answers(f"{gw}/c/{name}", 3) == [1, 2, 3], name
        assert calls(upstream, name) == 3, name


def test_expiry(upstream, cached_gateway) -> None:
    url = f"{cached_gateway.url}/c/short-1"
    assert answers(url, 2) == [1, 1]
    time.sleep(1.2)
    assert answers(url, 2) == [2, 2] and calls(upstream, "short-1") == 2


def test_vary_keeps_the_reply_for_the_header_values_it_was_fetched_with(upstream, cached_gateway) -> None:
    url = f"{cached_gateway.url}/c/vary-1"
    assert get(url, **{"Accept-Language": "en"})[2] == {"name": "vary-1", "calls": 1, "lang": "en"}
    assert get(url, **{"Accept-Language": "en"})[2]["calls"] == 1
    assert get(url, **{"Accept-Language": "fr"})[2] == {"name": "vary-1", "calls": 2, "lang": "fr"}
    assert calls(upstream, "vary-1") == 2


def test_credentials_only_with_public_replies(upstream, cached_gateway) -> None:
    gw = cached_gateway.url
    assert answers(f"{gw}/c/fresh-auth", 2, Authorization="Bearer a") == [1, 2]
    assert answers(f"{gw}/c/fresh-cookie", 2, Cookie="session=a") == [1, 2]
    assert answers(f"{gw}/c/public-auth", 2, Authorization="Bearer a") == [1, 1]
    # A reply kept for an anonymous request is not handed to one with credentials.
    assert answers(f"{gw}/c/fresh-anon", 1) == [1]
    assert answers(f"{gw}/c/fresh-anon", 1, Authorization="Bearer a") == [2]
    # A forwarded Cache-Control from the client: no-cache fetches anew.
    assert answers(f"{gw}/c/fresh-nc", 1) == [1]
    assert answers(f"{gw}/c/fresh-nc", 1, **{"Cache-Control": "no-cache"}) == [2]


def test_max_items_evicts_the_least_recently_used(upstream, cached_gateway) -> None:
    gw = cached_gateway.url
    for name in ("fresh-i1", "fresh-i2", "fresh-i1", "fresh-i3"):  # i1 read again: i2 is the least recently used
        get(f"{gw}/items/{name}")
    assert [calls(upstream, n) for n in ("fresh-i1", "fresh-i2", "fresh-i3")] == [1, 1, 1]
    get(f"{gw}/items/fresh-i1")
    get(f"{gw}/items/fresh-i2")  # evicted: fetched again
    assert [calls(upstream, n) for n in ("fresh-i1", "fresh-i2")] == [1, 2]


def test_max_size_evicts_by_bytes(upstream, cached_gateway) -> None:
    gw = cached_gateway.url
    for name in ("big-1", "big-2"):  # about 2.5 kB each: two fit in 6000 bytes, three do not
        get(f"{gw}/sized/{name}")
    assert answers(f"{gw}/sized/big-1", 1) == [1] and answers(f"{gw}/sized/big-2", 1) == [1]
    get(f"{gw}/sized/big-3")
    assert answers(f"{gw}/sized/big-1", 1) == [2]  # the least recently used went


def test_shared_caches_serve_every_backend_that_shares(upstream, cached_gateway) -> None:
    gw = cached_gateway.url
    assert answers(f"{gw}/s1/fresh-sh", 1) == [1]
    assert answers(f"{gw}/s2/fresh-sh", 1) == [1] and calls(upstream, "fresh-sh") == 1
    assert answers(f"{gw}/c/fresh-sh", 1) == [2]  # a backend with a cache of its own


def lambda_endpoint(stub: str, path: str, options: dict | None, **fields: Any) -> dict:
    extra: dict[str, Any] = {"backend/lambda": {"endpoint": stub, "max_retries": 0, **fields}}
    if options is not None:
        extra[HC] = options
    return {"endpoint": f"/{path}/{{name}}", "input_headers": ["Authorization"], "backend": [{"extra_config": extra}]}


def test_lambda_replies_cached_only_with_cache_lambda(stub, start_gateway) -> None:
    config = {
        "version": 3,
        "timeout": "3s",
        "endpoints": [
            lambda_endpoint(stub, "on", {"cache_lambda": True, "ttl": "1s"}, function_param_name="name"),
            lambda_endpoint(stub, "off", {}, function_param_name="name"),
        ],
    }
    gw = start_gateway(config, env=AWS_ENV).url
    for _ in range(3):
        assert get(f"{gw}/on/echo-hc1")[2] == {"name": "echo-hc1"}
        assert get(f"{gw}/off/echo-hc2")[0] == 200
    assert calls(stub, "echo-hc1", "__calls") == 1 and calls(stub, "echo-hc2", "__calls") == 3
    assert get(f"{gw}/on/echo-hc3", Authorization="Bearer a")[0] == 200  # credentials: never kept
    assert get(f"{gw}/on/echo-hc3", Authorization="Bearer a")[0] == 200
    assert calls(stub, "echo-hc3", "__calls") == 2
    assert get(f"{gw}/on/unhandled")[0] == 500 and get(f"{gw}/on/unhandled")[0] == 500  # errors are not kept
    assert calls(stub, "unhandled", "__calls") == 2
    time.sleep(1.2)  # ttl
    assert get(f"{gw}/on/echo-hc1")[0] == 200 and calls(stub, "echo-hc1", "__calls") == 2


def test_lambda_keys() -> None:
    from lambdagate.backends.http_cache import LambdaCache
    from lambdagate.proxy import ProxyRequest

    def request(**changes: Any) -> ProxyRequest:
        fields: dict[str, Any] = {
            "method": "GET",
            "path": "/fn/a",
            "params": {"name": "a"},
            "query": [("q", "1")],
            "headers": {},
            "body": b"",
            "client_ip": "10.0.0.1",
            "request_id": "r1",
            "deadline": 0.0,
        }
        return ProxyRequest(**{**fields, **changes})

    by_payload = LambdaCache(LruCache(10, 10_000), 60.0, by_payload=True, scope="us-east-1 prod")
    assert by_payload.key("f", b"p", request()) == ("lambda", "us-east-1 prod", "f", b"p")
    elsewhere = LambdaCache(LruCache(10, 10_000), 60.0, by_payload=True, scope="eu-west-1 prod")
    assert elsewhere.key("f", b"p", request()) != by_payload.key("f", b"p", request())
    assert by_payload.key("f", b"p", request(headers={"cookie": "s=1"})) is None
    # API Gateway events carry a request id and the client's address: the key leaves them out, not the query.
    by_request = LambdaCache(LruCache(10, 10_000), 60.0, by_payload=False)
    first = by_request.key("f", b"event-1", request())
    assert first == by_request.key("f", b"event-2", request(request_id="r2", client_ip="10.0.0.2"))
    assert first != by_request.key("f", b"event-3", request(query=[("q", "2")]))
    assert first != by_request.key("g", b"event-1", request())
    assert by_request.key("f", b"e", request(claims={"sub": object()})) is None
    asyncio.run(by_request.put(first, b'{"ok":1}'))
    assert asyncio.run(by_request.get(first)) == b'{"ok":1}'


# --- shared through Redis ----------------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path):
    from tests.test_ratelimit_redis import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; `make install-test` installs it)")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_replicas_share_entries_through_redis_and_survive_its_loss(upstream, start_gateway, redis_server) -> None:
    config = {
        "version": 3,
        "timeout": "3s",
        "extra_config": {
            "redis": {"connection_pools": [{"name": "cache", "address": f"127.0.0.1:{redis_server.port}"}]}
        },
        "endpoints": [http_endpoint(upstream, "c", {"connection_pool": "cache"})],
    }
    first, second = start_gateway(config), start_gateway(config)
    assert answers(f"{first.url}/c/fresh-r1", 2) == [1, 1]
    assert answers(f"{second.url}/c/fresh-r1", 2) == [1, 1]  # from Redis, then from its own memory
    assert calls(upstream, "fresh-r1") == 1
    assert answers(f"{second.url}/c/nostore-r1", 1) == [1] and answers(f"{first.url}/c/nostore-r1", 1) == [2]
    redis_server.stop()
    # Without Redis each worker still caches in memory, and says why once.
    assert answers(f"{first.url}/c/fresh-r2", 2) == [1, 1]
    assert answers(f"{second.url}/c/fresh-r2", 2) == [2, 2]
    assert "http cache: Redis pool 'cache' failed" in first.log()


def test_redis_entries_round_trip_and_refuse_what_is_malformed_or_expired() -> None:
    from lambdagate.backends.http_cache_redis import decode, encode, redis_key

    kept = Entry(203, CIMultiDict([("A", "1"), ("a", "2")]), b"body\nwith newline", 0.0, (("x-v", None),), True, 9)
    raw = encode(kept, expires_at=1000.0)
    back = decode(raw, now_wall=990.0, now=50.0)
    assert back is not None
    assert (back.status, list(back.headers.items()), back.body, back.vary, back.public) == (
        203,
        [("A", "1"), ("a", "2")],
        b"body\nwith newline",
        (("x-v", None),),
        True,
    )
    assert back.expires == pytest.approx(60.0)
    assert decode(raw, now_wall=1000.0, now=50.0) is None  # expired
    assert decode(b"not json\nbody", 0.0, 0.0) is None and decode(b'{"s": 200}', 0.0, 0.0) is None
    assert redis_key(("lambda", "ab", b"c")) != redis_key(("lambda", "a", b"bc"))
    assert redis_key("http://x/a").startswith("lambdagate:http-cache:") and len(redis_key("u" * 9000)) < 100
