"""`auth/validator` with a real JWK set server process (tests/support/jwks_server.py): fetch at start-up, key
rotation, the refetch limit under a flood of unknown key ids, servers that hang or answer garbage, expiry and
recovery; then end to end through a real gateway process, to an HTTP upstream and to Lambda API Gateway events."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from lambdagate.auth import jwks as jwks_module
from lambdagate.backends.client_options import client_kind, new_backend_client, new_http_session
from lambdagate.client import ClientError
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run
from tests.support.jwt_keys import b64, claims, jwks, raw_token, sign, tls_files
from tests.support.procs import Process, free_port, python_module, serve_module, wait_http
from tests.test_lambda_backend import AWS_ENV, http, lam

NS = "auth/validator"


@pytest.fixture(scope="module")
def key_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_module("tests.support.jwks_server", "/ready", tmp_path_factory.mktemp("jwks")) as url:
        yield url


def publish(server: str, key_set: dict | bytes) -> None:
    body = key_set if isinstance(key_set, bytes) else orjson.dumps(key_set)
    urllib.request.urlopen(urllib.request.Request(f"{server}/jwks", data=body, method="PUT"), timeout=5).read()


def fetches(server: str, route: str = "jwks") -> int:
    with urllib.request.urlopen(f"{server}/calls", timeout=5) as resp:
        return json.loads(resp.read()).get(route, 0)


def validator(server: str, route: str = "jwks", **fields) -> dict:
    return {"alg": "RS256", "jwk_url": f"{server}/{route}", "disable_jwk_security": True, **fields}


def config(rules: dict, timeout: str = "2s") -> dict:
    return {
        "version": 3,
        "timeout": timeout,
        "endpoints": [
            {
                "endpoint": "/a",
                "extra_config": {NS: rules},
                "backend": [{"host": ["http://127.0.0.1:9"], "url_pattern": "/a"}],
            }
        ],
    }


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def made_up_kid(i: int) -> str:
    """A token naming a key nobody has (the signature is never checked: the key is looked up first)."""
    return raw_token({"alg": "RS256", "kid": f"made-up-{i}"}, claims(), b"x" * 256)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up waits briefly for a first key set, as a test has no time to lose."""
    monkeypatch.setattr(jwks_module, "STARTUP_WAIT", 0.3)


# --- in-process gateway, real key server -----------------------------------------------------------------


def test_fetched_at_start_up_and_a_new_kid_is_fetched_once(key_server: str) -> None:
    publish(key_server, jwks(("RS256", "k1")))
    before = fetches(key_server)
    backends = FakeBackends({"/a": returning({"ok": True})})

    async def scenario(gw: InProcessGateway) -> None:
        assert fetches(key_server) == before + 1
        assert (await gw.request("GET", "/a", bearer(sign(kid="k1")))).status == 200
        publish(key_server, jwks(("RS256", "k1"), ("RS256", "k2")))  # the issuer rotates: k2 appears
        replies = await asyncio.gather(*(gw.request("GET", "/a", bearer(sign(kid="k2"))) for _ in range(20)))
        assert {r.status for r in replies} == {200}
        assert (await gw.request("GET", "/a", bearer(sign(kid="k1")))).status == 200
        assert fetches(key_server) == before + 2  # twenty concurrent k2 tokens, one fetch

    run(config(validator(key_server)), backends, scenario)


def test_unknown_kids_refetch_at_most_once_per_interval(key_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwks_module, "MIN_REFETCH_INTERVAL", 1.0)
    publish(key_server, jwks(("RS256", "k1")))

    async def scenario(gw: InProcessGateway) -> None:
        before = fetches(key_server)
        started, sent = time.monotonic(), 0
        while time.monotonic() - started < 2.5 and sent < 2000:
            replies = await asyncio.gather(*(gw.request("GET", "/a", bearer(made_up_kid(sent + i))) for i in range(20)))
            assert {r.status for r in replies} == {401}
            sent += 20
            await asyncio.sleep(0.05)  # a steady flood over the whole time, not a burst
        elapsed = time.monotonic() - started
        refetches = fetches(key_server) - before
        assert sent >= 200 and 2 <= refetches <= int(elapsed / 1.0) + 1, (sent, refetches, elapsed)
        assert (await gw.request("GET", "/a", bearer(sign(kid="k1")))).status == 200

    run(config(validator(key_server)), FakeBackends({"/a": returning({})}), scenario)


@pytest.mark.parametrize("route", ["hang", "garbage", "empty", "missing"])
def test_no_key_set_ever_loaded_is_503_within_the_deadline(key_server: str, route: str, quick) -> None:
    async def scenario(gw: InProcessGateway) -> None:
        for _ in range(3):
            started = time.monotonic()
            reply = await gw.request("GET", "/a", bearer(sign(kid="k1")))
            assert (reply.status, reply.json()) == (503, {"error": "token validation unavailable"})
            assert time.monotonic() - started < 1.5
        assert (await gw.request("GET", "/a")).status == 401  # no token at all: no need for keys to say so

    run(config(validator(key_server, route), timeout="1s"), FakeBackends({"/a": returning({})}), scenario)


def test_a_failed_refresh_keeps_the_set_until_it_expires_then_503_then_recovers(
    key_server: str, quick, monkeypatch
) -> None:
    monkeypatch.setattr(jwks_module, "MIN_REFETCH_INTERVAL", 0.3)
    publish(key_server, jwks(("RS256", "k1")))
    token = sign(kid="k1")

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a", bearer(token))).status == 200
        publish(key_server, b"<html>maintenance")
        await asyncio.sleep(1.6)  # past the refresh point (75 % of 2 s): refreshed in the background, and fails
        assert (await gw.request("GET", "/a", bearer(token))).status == 200
        await asyncio.sleep(0.6)  # past the set's lifetime
        assert (await gw.request("GET", "/a", bearer(token))).status == 503
        publish(key_server, jwks(("RS256", "k1")))
        await asyncio.sleep(0.4)
        assert (await gw.request("GET", "/a", bearer(token))).status == 200

    run(config(validator(key_server, cache=True, cache_duration=2)), FakeBackends({"/a": returning({})}), scenario)


def test_a_key_removed_from_the_set_stops_validating(key_server: str, quick, monkeypatch) -> None:
    monkeypatch.setattr(jwks_module, "MIN_REFETCH_INTERVAL", 0.3)
    publish(key_server, jwks(("RS256", "k1"), ("RS256", "k2")))
    token = sign(kid="k1")

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a", bearer(token))).status == 200  # and now in the token cache
        publish(key_server, jwks(("RS256", "k2")))  # k1 revoked
        await asyncio.sleep(1.6)
        await gw.request("GET", "/a", bearer(token))  # starts the background refresh
        await asyncio.sleep(0.3)
        assert (await gw.request("GET", "/a", bearer(token))).status == 401
        assert (await gw.request("GET", "/a", bearer(sign(kid="k2")))).status == 200

    run(config(validator(key_server, cache=True, cache_duration=2)), FakeBackends({"/a": returning({})}), scenario)


@pytest.fixture(scope="module")
def tls_key_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The key server over HTTPS, with a certificate from a test CA; yields its URL, the CA file and the pin."""
    directory = tmp_path_factory.mktemp("tls")
    files = tls_files(directory)
    port = free_port()
    proc = Process(
        python_module("tests.support.jwks_server", str(port), files["cert"], files["key"]), directory / "jwks.log"
    )
    url = f"https://127.0.0.1:{port}"
    unverified = ssl._create_unverified_context()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/ready", timeout=1, context=unverified).read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.proc.poll() is None, proc.log()
                time.sleep(0.05)
        body = orjson.dumps(jwks(("RS256", "k1")))
        urllib.request.urlopen(
            urllib.request.Request(f"{url}/jwks", data=body, method="PUT"), timeout=5, context=unverified
        ).read()
        yield {**files, "url": url}
    finally:
        proc.stop()


def test_https_key_server_trusted_by_its_ca_or_pinned_by_its_key(tls_key_server: dict[str, str], quick) -> None:
    url, ca, pin = tls_key_server["url"] + "/jwks", tls_key_server["ca"], tls_key_server["pin"]
    other_pin = b64(b"\x00" * 32) + "="
    cases = {
        "/ca": ({"jwk_local_ca": ca}, 200),
        "/untrusted": ({}, 503),  # the test CA is not in the system's trust store
        "/pinned": ({"jwk_local_ca": ca, "jwk_fingerprints": [pin]}, 200),
        "/wrong-pin": ({"jwk_local_ca": ca, "jwk_fingerprints": [other_pin]}, 503),
        "/insecure": ({"disable_jwk_security": True}, 200),  # KrakenD: no certificate check at all
        "/insecure-pinned": ({"disable_jwk_security": True, "jwk_fingerprints": [pin]}, 200),
        "/insecure-wrong-pin": ({"disable_jwk_security": True, "jwk_fingerprints": [other_pin]}, 503),
    }
    doc = {
        "version": 3,
        "timeout": "2s",
        "endpoints": [
            {
                "endpoint": path,
                "extra_config": {NS: {"alg": "RS256", "jwk_url": url, **rules}},
                "backend": [{"host": ["http://f"], "url_pattern": "/a"}],
            }
            for path, (rules, _) in cases.items()
        ],
    }

    async def scenario(gw: InProcessGateway) -> None:
        for path, (_, status) in cases.items():
            assert (await gw.request("GET", path, bearer(sign(kid="k1")))).status == status, path

    run(doc, FakeBackends({"/a": returning({})}), scenario)


def test_pins_hold_in_a_real_gateway_too(tls_key_server: dict[str, str], upstream: str, start_gateway) -> None:
    """The worker's event loop is uvloop's, with its own TLS code: the pin check must hold there as well."""
    url, ca, pin = tls_key_server["url"] + "/jwks", tls_key_server["ca"], tls_key_server["pin"]
    gw = start_gateway(
        {
            "version": 3,
            "endpoints": [
                {
                    "endpoint": path,
                    "extra_config": {
                        NS: {"alg": "RS256", "jwk_url": url, "jwk_local_ca": ca, "jwk_fingerprints": [pins]}
                    },
                    "backend": [{"host": [upstream], "url_pattern": "/json/ok"}],
                }
                for path, pins in (("/pinned", pin), ("/wrong-pin", b64(b"\x01" * 32)))
            ],
        }
    )
    assert get(f"{gw.url}/pinned", sign(kid="k1"))[0] == 200
    assert get(f"{gw.url}/wrong-pin", sign(kid="k1"))[0] == 503
    assert "fetch failed" in gw.log()  # uvloop reports the refused handshake without our message


async def fetched(url: str, settings: dict | None = None) -> bytes | str:
    """One key set fetch through the client the gateway would use (LAMBDAGATE_HTTP_CLIENT picks it): the set, or
    the error's text."""
    session = new_http_session()
    client = new_backend_client(client_kind(None), session)
    try:
        return await jwks_module.JwksFetcher(jwks_module.RemoteSettings(url, **(settings or {})), client)()
    except (jwks_module.KeySetError, ClientError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()
        await session.close()


def test_key_set_fetch_follows_three_redirects_not_four(key_server: str) -> None:
    publish(key_server, jwks(("RS256", "k1")))
    assert b'"k1"' in asyncio.run(fetched(f"{key_server}/hop/2"))  # three redirects: /hop/1, /hop/0, /jwks
    assert asyncio.run(fetched(f"{key_server}/hop/3")) == "ClientError: stopped after 4 redirects"


def test_key_set_fetch_is_never_redirected_from_https_to_http(tls_key_server: dict[str, str], key_server: str) -> None:
    ca = {"local_ca": tls_key_server["ca"]}
    assert b'"k1"' in asyncio.run(fetched(f"{tls_key_server['url']}/hop/1", ca))
    downgrade = f"{tls_key_server['url']}/redirect?to={key_server}/jwks"
    assert asyncio.run(fetched(downgrade, ca)) == f"ClientError: redirected to plain HTTP ({key_server}/jwks)"
    assert "CERTIFICATE_VERIFY_FAILED" in asyncio.run(fetched(f"{tls_key_server['url']}/jwks"))


def test_key_set_fetch_is_bounded_in_size(key_server: str) -> None:
    publish(key_server, b"x" * (jwks_module.MAX_JWKS_BYTES + 1))
    try:
        reply = asyncio.run(fetched(f"{key_server}/jwks"))
        assert reply == f"KeySetError: the JWK set is larger than {jwks_module.MAX_JWKS_BYTES} bytes"
    finally:
        publish(key_server, jwks(("RS256", "k1")))


# --- real gateway processes ------------------------------------------------------------------------------


def get(url: str, token: str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    status, _, body = http(
        "GET", url, headers={**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    )
    return status, json.loads(body) if body else {}


def test_claims_reach_an_http_backend_end_to_end(key_server: str, upstream: str, start_gateway) -> None:
    publish(key_server, jwks(("RS256", "k1")))
    rules = validator(key_server, propagate_claims=[["sub", "X-User"], ["org.id", "X-Org"]], roles=["user"])
    gw = start_gateway(
        {
            "version": 3,
            "endpoints": [
                {
                    "endpoint": "/me/{item}",
                    "input_headers": ["X-User"],
                    "extra_config": {NS: rules},
                    "backend": [{"host": [upstream], "url_pattern": "/echo/users/{JWT.sub}/{item}?org={JWT.org.id}"}],
                }
            ],
        }
    )
    token = sign(kid="k1", sub="alice smith", org={"id": "acme&x=1"}, roles=["user"])
    status, echoed = get(f"{gw.url}/me/42", token, {"X-User": "mallory"})
    assert status == 200, echoed
    assert echoed["path"] == "/echo/users/alice%20smith/42"
    assert echoed["query"] == {"org": ["acme&x=1"]}
    assert (echoed["headers"]["x-user"], echoed["headers"]["x-org"]) == ("alice smith", "acme&x=1")
    assert "authorization" not in echoed["headers"]  # not in input_headers: the token itself is not forwarded
    assert get(f"{gw.url}/me/42", sign(kid="k1"))[0] == 403  # no "user" role
    assert get(f"{gw.url}/me/42")[0] == 401


def test_claims_reach_lambda_events_where_api_gateway_puts_them(key_server: str, stub: str, start_gateway) -> None:
    publish(key_server, jwks(("RS256", "k1")))
    rules = validator(key_server)
    gw = start_gateway(
        {
            "version": 3,
            "endpoints": [
                {
                    "endpoint": "/v2",
                    "extra_config": {NS: rules},
                    "backend": [
                        lam(stub, function_name="echo-v2", payload_format="apigateway_v2", response_format="data")
                    ],
                },
                {
                    "endpoint": "/v1",
                    "extra_config": {NS: rules},
                    "backend": [
                        lam(stub, function_name="echo-v1", payload_format="apigateway_v1", response_format="data")
                    ],
                },
                {
                    "endpoint": "/open",
                    "backend": [
                        lam(stub, function_name="echo-v2", payload_format="apigateway_v2", response_format="data")
                    ],
                },
            ],
        },
        env=AWS_ENV,
    )
    token = sign(kid="k1", scope="read write", groups=["a", "b"])
    status, event = get(f"{gw.url}/v2", token)
    assert status == 200, event
    jwt_authorizer = event["requestContext"]["authorizer"]["jwt"]
    assert jwt_authorizer["scopes"] == ["read", "write"]
    assert jwt_authorizer["claims"]["sub"] == "user-1" and jwt_authorizer["claims"]["groups"] == "[a b]"
    assert isinstance(jwt_authorizer["claims"]["exp"], str)
    status, event = get(f"{gw.url}/v1", token)
    assert status == 200 and event["requestContext"]["authorizer"]["claims"]["scope"] == "read write"
    status, event = get(f"{gw.url}/open")
    assert status == 200 and "authorizer" not in event["requestContext"]


def test_a_flood_of_unknown_kids_refetches_once_per_ten_seconds(key_server: str, start_gateway) -> None:
    publish(key_server, jwks(("RS256", "k1")))
    gw = start_gateway(config(validator(key_server)))
    before = fetches(key_server)
    started, sent = time.monotonic(), 0
    while time.monotonic() - started < 3 and sent < 300:
        assert get(f"{gw.url}/a", made_up_kid(sent))[0] == 401
        sent += 1
    assert fetches(key_server) == before + 1, sent  # well under ten seconds: one refetch for them all
    assert get(f"{gw.url}/a", sign(kid="k1"))[0] == 500  # valid token: on to the (closed) backend


def test_key_server_down_at_start_up_503_until_it_comes_up(tmp_path: Path, start_gateway) -> None:
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    gw = start_gateway(config(validator(server)))
    assert "JWK set http://127.0.0.1" in gw.log() and "not loaded yet" in gw.log()
    status, body = get(f"{gw.url}/a", sign(kid="k1"))
    assert (status, body) == (503, {"error": "token validation unavailable"})
    proc = Process(python_module("tests.support.jwks_server", str(port)), tmp_path / "jwks.log")
    try:
        wait_http(f"{server}/ready", proc=proc.proc)
        publish(server, jwks(("RS256", "k1")))
        deadline = time.monotonic() + 20  # the next attempt comes at most ten seconds after the failed one
        while get(f"{gw.url}/a", sign(kid="k1"))[0] == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert get(f"{gw.url}/a", sign(kid="k1"))[0] == 500  # validated; the backend is a placeholder host
    finally:
        proc.stop()
    assert "Traceback" not in gw.log()
