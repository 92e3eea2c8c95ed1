"""`auth/client-credentials`: backend calls with an OAuth2 token from a real token server process
(tests/support/oauth_server.py, which counts the token requests): the token is cached, refreshed shortly before it
expires, fetched once for concurrent callers; a token server that is down, hangs or answers garbage fails the
backend within the deadline; the secret never reaches a log; load-time checks; the legacy name; a real gateway."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest

from lambdagate import plugins
from lambdagate.auth import oauth2_tokens
from lambdagate.auth.oauth2_tokens import Client, TokenSource
from lambdagate.backends.client_options import client_kind, new_backend_client, new_http_session
from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import BackendError, ConfigError
from tests.support.asgi import InProcessGateway
from tests.support.oauth_server import CLIENT_ID, SECRET
from tests.support.procs import free_port, serve_module

PATH = 'endpoints[0].backend[0].extra_config["auth/client-credentials"]'


@pytest.fixture(scope="module")
def oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_module("tests.support.oauth_server", "/ready", tmp_path_factory.mktemp("oauth")) as url:
        yield url


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def token_requests(oauth: str, mode: str) -> int:
    return get_json(f"{oauth}/calls").get(mode, 0)


def credentials(oauth: str, mode: str = "ok", query: str = "", **extra: Any) -> dict:
    return {"client_id": CLIENT_ID, "client_secret": SECRET, "token_url": f"{oauth}/token/{mode}{query}", **extra}


def backend(oauth: str, name: str, cc: dict | None, **extra: Any) -> dict:
    return {
        "host": [oauth],
        "url_pattern": f"/api/{name}",
        "extra_config": {"auth/client-credentials": cc} if cc is not None else {},
        **extra,
    }


def service(*endpoints: dict) -> dict:
    return {"version": 3, "timeout": "1s", "endpoints": list(endpoints)}


def in_process(config: dict, scenario: Callable[[InProcessGateway], Awaitable[None]]) -> None:
    """The real stack with the real backend factories (HTTP backends, their wrappers), in this process."""

    async def main() -> None:
        async with InProcessGateway(config, SimpleNamespace(factory=plugins.backend_factory)) as gateway:
            await scenario(gateway)

    asyncio.run(main())


# --- the token source --------------------------------------------------------------------------------------


async def with_source(client: Client, use: Callable[[TokenSource], Awaitable[None]]) -> None:
    """A token source on the client a worker would use (LAMBDAGATE_HTTP_CLIENT picks it)."""
    session = new_http_session()
    http = new_backend_client(client_kind(None), session)
    source = TokenSource(client, http)
    try:
        await use(source)
    finally:
        await source.close()
        await http.close()
        await session.close()


def client_for(oauth: str, mode: str = "ok", query: str = "", **kw: Any) -> Client:
    return Client(f"{oauth}/token/{mode}{query}", CLIENT_ID, SECRET, **kw)


def test_a_token_is_cached_and_concurrent_callers_share_one_fetch(oauth: str) -> None:
    before = token_requests(oauth, "slow")

    async def use(source: TokenSource) -> None:
        values = await asyncio.gather(*(source.authorization() for _ in range(20)))
        assert len(set(values)) == 1 and values[0].startswith("Bearer tok-")
        assert [await source.authorization() for _ in range(5)] == values[:5]  # cached

    asyncio.run(with_source(client_for(oauth, "slow", "?delay=0.3"), use))
    assert token_requests(oauth, "slow") - before == 1


def test_a_token_is_replaced_ten_seconds_before_it_expires(oauth: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth2_tokens, "EXPIRY_MARGIN", 9.6)  # a token of 10 s is then used for 0.4 s

    async def use(source: TokenSource) -> None:
        first = await source.authorization()
        assert await source.authorization() == first
        await asyncio.sleep(0.5)
        second = await source.authorization()
        assert second != first and await source.authorization() == second
        assert source.fetches == 2

    asyncio.run(with_source(client_for(oauth, "ok", "?expires_in=10"), use))


def test_a_token_without_expiry_is_kept_and_a_form_encoded_reply_is_read(oauth: str) -> None:
    async def use(source: TokenSource) -> None:
        assert (await source.authorization()).startswith("Bearer tok-")
        await source.authorization()
        assert source.fetches == 1

    asyncio.run(with_source(client_for(oauth, "ok", "?expires_in=none"), use))
    asyncio.run(with_source(client_for(oauth, "urlencoded"), use))


def test_basic_authentication_first_then_the_form_which_is_kept(oauth: str) -> None:
    async def use(source: TokenSource) -> None:
        await source.authorization()
        source._refresh_at = 0  # expire it
        await source.authorization()

    seen = len(get_json(f"{oauth}/requests"))
    asyncio.run(
        with_source(
            client_for(oauth, "form-only", scopes=("a", "b"), params=(("audience", "api"), ("audience", "web"))), use
        )
    )
    requests = get_json(f"{oauth}/requests")[seen:]
    assert [(r["auth"], r["secret_ok"]) for r in requests] == [("basic", True), ("form", True), ("form", True)]
    assert requests[1]["form"] == {
        "grant_type": "client_credentials",
        "scope": "a b",
        "audience": "api",
        "client_id": CLIENT_ID,
    }  # the server's dict keeps one value per name


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("garbage", "the reply is not JSON"),
        ("error", "HTTP status 500 (server_error)"),
        ("injection", "access_token is not a valid header value"),
        ("form-only?wrong", "HTTP status 401 (invalid_client)"),
    ],
)
def test_a_token_server_that_answers_no_token_fails_every_caller(oauth: str, mode: str, reason: str) -> None:
    async def use(source: TokenSource) -> None:
        results = await asyncio.gather(*(source.authorization() for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, BackendError) for r in results)
        assert results[0].cause == f"OAuth2 token from {oauth}/token/{mode.split('?')[0]}: {reason}"
        assert SECRET not in repr(results[0].__dict__)

    client = client_for(oauth, mode.split("?")[0])
    if mode.endswith("?wrong"):
        client = Client(client.token_url, CLIENT_ID, "wrong-secret")
    asyncio.run(with_source(client, use))


def _token_reply(form: bool, expires_in: str) -> tuple[str, bytes]:
    reply = {"access_token": "t", "expires_in": expires_in}
    if form:
        return "application/x-www-form-urlencoded", urlencode(reply).encode()
    return "application/json", json.dumps(reply).encode()


@pytest.mark.parametrize("expires_in", ["\u00b2", "-\u00b2", "\uff13\uff16\uff10\uff10"])
@pytest.mark.parametrize("form", [False, True])
def test_expires_in_is_read_only_from_ascii_digits(expires_in: str, form: bool) -> None:
    """str.isdigit() is true for these: int() raised on "²" (not a TokenRefused), read "３６００" as 3600."""
    with pytest.raises(oauth2_tokens.TokenRefused, match="expires_in is not a number of seconds"):
        oauth2_tokens.read_token(*_token_reply(form, expires_in))
    assert oauth2_tokens.read_token(*_token_reply(form, "60")) == ("Bearer t", 60.0)


def test_a_hanging_or_absent_token_server_fails_within_the_callers_deadline(oauth: str) -> None:
    async def use(source: TokenSource) -> None:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await source.authorization()
        assert time.monotonic() - started < 1.0
        with pytest.raises(TimeoutError):  # the fetch still runs: the next caller waits for it, not for a new one
            async with asyncio.timeout(0.3):
                await source.authorization()
        assert source.fetches == 1

    asyncio.run(with_source(client_for(oauth, "hang"), use))

    async def refused(source: TokenSource) -> None:
        with pytest.raises(BackendError) as info:
            await source.authorization()
        assert "ClientConnectorError: Cannot connect to host" in info.value.cause
        assert info.value.cause.endswith(f"Connect call failed ('127.0.0.1', {port})]")

    port = free_port()
    asyncio.run(with_source(Client(f"http://127.0.0.1:{port}/token", CLIENT_ID, SECRET), refused))


# --- in the gateway ----------------------------------------------------------------------------------------


def test_backends_get_the_token_which_replaces_the_clients_and_is_shared(oauth: str) -> None:
    """Two backends with the same client share one token; a backend without the namespace gets no token."""
    cc = credentials(oauth, "ok", "?expires_in=3600&for=shared")
    config = service(
        {
            "endpoint": "/e",
            "input_headers": ["Authorization"],
            "backend": [
                backend(oauth, "a", cc, group="a"),
                backend(oauth, "b", cc, group="b"),
                backend(oauth, "c", None, group="c"),
            ],
        }
    )
    before = token_requests(oauth, "ok")

    async def scenario(gw: InProcessGateway) -> None:
        replies = [await gw.request("GET", "/e", [("Authorization", "Bearer client-token")]) for _ in range(3)]
        bodies = [r.json() for r in replies]
        assert all(r.status == 200 for r in replies)
        token = bodies[0]["a"]["authorization"]
        assert token.startswith("Bearer tok-")
        assert all(b["a"]["authorization"] == b["b"]["authorization"] == token for b in bodies)
        assert all(b["c"]["authorization"] == "Bearer client-token" for b in bodies)

    in_process(config, scenario)
    assert token_requests(oauth, "ok") - before == 1


@pytest.mark.parametrize("mode", ["hang", "garbage", "error"])
def test_no_token_fails_the_backend_within_the_deadline(oauth: str, mode: str, capfd: pytest.CaptureFixture) -> None:
    config = service(
        {"endpoint": "/one", "backend": [backend(oauth, "a", credentials(oauth, mode))]},
        {
            "endpoint": "/two",
            "backend": [backend(oauth, "a", credentials(oauth, mode), group="a"), backend(oauth, "b", None, group="b")],
        },
    )

    async def scenario(gw: InProcessGateway) -> None:
        started = time.monotonic()
        one = await gw.request("GET", "/one")
        two = await gw.request("GET", "/two")
        assert time.monotonic() - started < 3.0  # two endpoints, each within its 1 s deadline
        assert one.status == (504 if mode == "hang" else 500)
        assert (two.status, two.header("x-krakend-completed"), two.json()) == (
            200,
            "false",
            {"b": {"name": "b", "authorization": None}},
        )

    in_process(config, scenario)
    log = capfd.readouterr().err
    assert "backend failed" in log and SECRET not in log and "tok-" not in log


def test_is_disabled_and_a_lambda_backend_send_no_token(oauth: str) -> None:
    config = service({"endpoint": "/e", "backend": [backend(oauth, "a", {**credentials(oauth), "is_disabled": True})]})

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/e")).json() == {"name": "a", "authorization": None}

    in_process(config, scenario)
    lam = {
        "host": [],
        "url_pattern": "",
        "extra_config": {
            "backend/lambda": {"function_name": "f", "region": "eu-west-1"},
            "auth/client-credentials": credentials(oauth),
        },
    }
    warnings = [
        str(w) for w in validate_document(service({"endpoint": "/l", "backend": [lam]}), LoadOptions()).warnings
    ]
    assert warnings == [
        f"{PATH}: ignored on a Lambda backend, as in KrakenD: the function is invoked with the "
        "gateway's AWS credentials, and no token is sent"
    ]


# --- load time ---------------------------------------------------------------------------------------------


def load_errors(cc: Any) -> list[str]:
    config = service(
        {
            "endpoint": "/e",
            "backend": [{"host": ["http://h"], "url_pattern": "/", "extra_config": {"auth/client-credentials": cc}}],
        }
    )
    with pytest.raises(ConfigError) as info:
        validate_document(config, LoadOptions())
    return [str(issue) for issue in info.value.issues]


def test_config_problems_refuse_the_config() -> None:
    good = {"client_id": "gw", "client_secret": "x", "token_url": "https://idp.test/token"}
    assert load_errors({**good, "client_secret": 1234567}) == [f"{PATH}.client_secret: must be a string"]
    assert load_errors({"client_secret": "x"}) == [
        f'{PATH}.client_id: required: add "client_id"',
        f'{PATH}.token_url: required: add "token_url"',
    ]
    assert load_errors({**good, "token_url": "idp.test/token"}) == [
        f'{PATH}.token_url: must be an http(s) URL, e.g. "https://idp.example.com/oauth2/token"'
    ]
    assert load_errors({**good, "scopes": "a", "endpoint_params": {"scope": ["b"], "client_secret": ["c"]}}) == [
        f'{PATH}.endpoint_params.scope: the gateway sends "scope" itself: give it as a field',
        f'{PATH}.endpoint_params.client_secret: the gateway sends "client_secret" itself: give it as a field',
    ]
    assert load_errors({**good, "scopes": ["a", "b"]}) == [
        f"{PATH}.scopes: must be one comma-separated string, as KrakenD reads it, e.g. \"read,write\", got ['a', 'b']"
    ]
    errors = load_errors({**good, "endpoint_params": {"audience": "api"}})
    assert errors[0].startswith(f"{PATH}.endpoint_params.audience: Input should be a valid list")
    assert all(SECRET not in e for e in load_errors({**good, "client_secret": SECRET, "client_id": 5}))


def test_plain_http_and_the_legacy_name_are_warned_about(oauth: str) -> None:
    old = "github.com/devopsfaith/krakend-oauth2-clientcredentials"
    config = service(
        {
            "endpoint": "/e",
            "backend": [{"host": [oauth], "url_pattern": "/api/a", "extra_config": {old: credentials(oauth)}}],
        }
    )
    warnings = [str(w) for w in validate_document(config, LoadOptions()).warnings]
    path = f'endpoints[0].backend[0].extra_config["{old}"]'
    assert warnings == [
        f"{path}: `{old}` is the old name of `auth/client-credentials` and is read as `auth/client-credentials`; "
        "write `auth/client-credentials` (KrakenD 2 reads this spelling too)",  # it is in KrakenD CE's alias table
        f"{path}.token_url: is plain HTTP: the client secret and the tokens travel unencrypted",
    ]

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/e")).json()["authorization"].startswith("Bearer tok-")

    in_process(config, scenario)


# --- end to end --------------------------------------------------------------------------------------------


def test_a_real_gateway_never_logs_the_secret(oauth: str, start_gateway) -> None:
    """Two workers, debug logging, a token server that echoes the secret in its error: the backend fails, the
    other endpoint is served with a token, and the secret is nowhere in the gateway's output."""
    config = service(
        {"endpoint": "/ok", "backend": [backend(oauth, "a", credentials(oauth, "ok"))]},
        {"endpoint": "/bad", "backend": [backend(oauth, "a", credentials(oauth, "error"))]},
    )
    config["extra_config"] = {"telemetry/logging": {"level": "DEBUG"}}
    gateway = start_gateway(config, "--workers", "2")
    with urllib.request.urlopen(f"{gateway.url}/ok", timeout=10) as resp:
        assert json.loads(resp.read())["authorization"].startswith("Bearer tok-")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{gateway.url}/bad", timeout=10)
    assert info.value.code == 500 and SECRET not in info.value.read().decode()
    time.sleep(0.2)
    log = gateway.log()
    assert "HTTP status 500 (server_error)" in log and "Traceback" not in log
    assert SECRET not in log and "s3cr3t" not in log
