"""`auth/validator` in-process (tests/support/asgi.py): real keys and tokens, a local JWK set file, fake backends.

Algorithms, alg confusion and `none`, time claims with leeway, audience and issuer, roles and scopes, the token's
place (header or cookie), claims passed on, bad input, the validated-token cache, and the config's errors.
The JWK set server, key rotation and the end-to-end cases are in test_jwt_remote.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from lambdagate.auth import jwks as jwks_module
from lambdagate.auth import validator as validator_module
from lambdagate.auth.jwks import CACHE_BYTES, CACHE_ENTRIES, TokenCache, import_key_set
from lambdagate.auth.tokens import claim_text, jwt_params
from lambdagate.backends.lambda_events import jwt_authorizer
from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run
from tests.support.jwt_keys import ALL_ALGS, b64, hs256_with_public_key, jwks, private_key, raw_token, sign, unsigned

NS = "auth/validator"


@pytest.fixture
def keyfile(tmp_path: Path):
    """Writes a JWK set file of (alg, kid) pairs; returns its path."""

    def write(*keys: tuple[str, str]) -> str:
        path = tmp_path / f"jwks-{len(list(tmp_path.iterdir()))}.json"
        path.write_bytes(orjson.dumps(jwks(*keys)))
        return str(path)

    return write


def endpoint(path: str, validator: dict | None, pattern: str = "/a", **kw) -> dict:
    extra = {NS: validator} if validator is not None else {}
    return {
        "endpoint": path,
        "extra_config": extra,
        "backend": [{"host": ["http://fake"], "url_pattern": pattern}],
        **kw,
    }


def config(*endpoints: dict) -> dict:
    return {"version": 3, "timeout": "2s", "endpoints": list(endpoints)}


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def fakes() -> FakeBackends:
    return FakeBackends({"/a": returning({"ok": True}), "/b": returning({"ok": True})})


# --- algorithms and signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_each_algorithm_accepts_its_tokens_and_refuses_another_keys(alg: str, keyfile) -> None:
    backends = fakes()
    path = keyfile((alg, "k1"))

    async def scenario(gw: InProcessGateway) -> None:
        ok = await gw.request("GET", "/a", bearer(sign(alg, "k1", roles=["x"])))
        assert (ok.status, ok.json()) == (200, {"ok": True})
        assert backends.seen["/a"][-1].claims["roles"] == ["x"]
        # Same kid, same alg, another key: the signature does not verify.
        private_key.cache_clear()
        forged = sign(alg, "k1")
        private_key.cache_clear()
        assert (await gw.request("GET", "/a", bearer(forged))).status == 401
        assert len(backends.seen["/a"]) == 1

    run(config(endpoint("/a", {"alg": alg, "jwk_local_path": path})), backends, scenario)


def test_none_and_other_algs_are_refused_whatever_the_key(keyfile) -> None:
    backends = fakes()
    rsa_and_hmac = keyfile(("RS256", "k1"), ("HS256", "h1"))

    async def scenario(gw: InProcessGateway) -> None:
        none_token = unsigned("k1")
        none_with_sig = raw_token({"alg": "none", "kid": "k1"}, {"sub": "x"}, b"x")
        for token in (none_token, none_with_sig, sign("RS384", "k1"), sign("HS256", "h1")):
            assert (await gw.request("GET", "/rs", bearer(token))).status == 401
        # Alg confusion: HS256 "signed" with the RSA public key as the secret, on an RS256 endpoint...
        assert (await gw.request("GET", "/rs", bearer(hs256_with_public_key("k1")))).status == 401
        # ...and on an HS256 endpoint whose set holds that RSA key under that kid: a key of another type.
        assert (await gw.request("GET", "/hs", bearer(hs256_with_public_key("k1")))).status == 401
        assert (await gw.request("GET", "/hs", bearer(sign("HS256", "h1")))).status == 200
        assert (await gw.request("GET", "/rs", bearer(sign("RS256", "k1")))).status == 200
        assert len(backends.seen["/a"]) == 2

    run(
        config(
            endpoint("/rs", {"alg": "RS256", "jwk_local_path": rsa_and_hmac}),
            endpoint("/hs", {"alg": "HS256", "jwk_local_path": rsa_and_hmac}),
        ),
        backends,
        scenario,
    )


def test_an_unknown_kid_in_a_local_set_is_401(keyfile) -> None:
    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a", bearer(sign("RS256", "other")))).status == 401

    run(config(endpoint("/a", {"jwk_local_path": keyfile(("RS256", "k1"))})), fakes(), scenario)


def test_key_identify_strategy_x5t(tmp_path: Path) -> None:
    jwk = private_key("RS256", "k1").as_dict(private=False)
    jwk["x5t"] = b64(b"\x01" * 20)
    path = tmp_path / "jwks.json"
    path.write_bytes(orjson.dumps({"keys": [jwk]}))

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/x5t", bearer(sign(header={"x5t": jwk["x5t"]})))).status == 200
        assert (await gw.request("GET", "/x5t", bearer(sign(header={"x5t": b64(b"\x02" * 20)})))).status == 401
        assert (await gw.request("GET", "/both", bearer(sign(header={"x5t": jwk["x5t"]})))).status == 200
        assert (await gw.request("GET", "/kid", bearer(sign(header={"x5t": b64(b"\x02" * 20)})))).status == 200

    run(
        config(
            endpoint("/x5t", {"jwk_local_path": str(path), "key_identify_strategy": "x5t"}),
            endpoint("/both", {"jwk_local_path": str(path), "key_identify_strategy": "kid_x5t"}),
            endpoint("/kid", {"jwk_local_path": str(path)}),
        ),
        fakes(),
        scenario,
    )


# --- registered claims -----------------------------------------------------------------------------------


def test_exp_nbf_and_iat_with_leeway(keyfile) -> None:
    path = keyfile(("RS256", "k1"))
    now = int(time.time())
    cases = [
        ({"exp": now - 10}, 200),
        ({"exp": now - 60}, 401),
        ({"nbf": now + 10}, 200),
        ({"nbf": now + 60}, 401),
        ({"iat": now + 60}, 401),
        ({"exp": None, "iat": None}, 200),
        ({"exp": "tomorrow"}, 401),
        ({"exp": True}, 401),
    ]

    async def scenario(gw: InProcessGateway) -> None:
        for overrides, status in cases:
            assert (await gw.request("GET", "/a", bearer(sign(**overrides)))).status == status, overrides
        # The default leeway is one second, as go-auth0's minimum.
        assert (await gw.request("GET", "/strict", bearer(sign(exp=now - 10)))).status == 401

    run(
        config(
            endpoint("/a", {"jwk_local_path": path, "leeway": "30s"}), endpoint("/strict", {"jwk_local_path": path})
        ),
        fakes(),
        scenario,
    )


def test_every_configured_audience_and_the_issuer(keyfile) -> None:
    path = keyfile(("RS256", "k1"))
    rules = {"jwk_local_path": path, "audience": ["api", "admin"], "issuer": "https://idp.test"}
    cases = [
        ({"aud": ["api", "admin", "x"]}, 200),
        ({"aud": ["api"]}, 401),
        ({"aud": "api"}, 401),
        ({"aud": None}, 401),
        ({"aud": ["api", "admin"], "iss": "https://evil"}, 401),
        ({"aud": ["api", "admin"], "iss": None}, 401),
        ({"aud": ["api", "admin", 3]}, 401),
        ({"aud": ["api", "admin"], "sub": 7}, 401),
    ]

    async def scenario(gw: InProcessGateway) -> None:
        for overrides, status in cases:
            assert (await gw.request("GET", "/a", bearer(sign(**overrides)))).status == status, overrides

    run(config(endpoint("/a", rules)), fakes(), scenario)


def test_keys_are_read_case_insensitively_as_krakend_does(keyfile) -> None:
    # Go's encoding/json reads "Issuer" as issuer: ignoring it would serve open what KrakenD protects.
    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a", bearer(sign(iss="https://evil")))).status == 401
        assert (await gw.request("GET", "/a", bearer(sign()))).status == 200

    run(
        config(endpoint("/a", {"JWK_Local_Path": keyfile(("RS256", "k1")), "Issuer": "https://idp.test"})),
        fakes(),
        scenario,
    )


# --- roles and scopes ------------------------------------------------------------------------------------


def test_roles_any_of_them_nested_or_space_separated(keyfile) -> None:
    path = keyfile(("RS256", "k1"))
    nested = {
        "jwk_local_path": path,
        "roles": ["admin"],
        "roles_key": "realm_access.roles",
        "roles_key_is_nested": True,
    }

    async def scenario(gw: InProcessGateway) -> None:
        for token, status in [
            (sign(roles=["viewer", "editor"]), 200),
            (sign(roles="viewer editor"), 200),
            (sign(roles=["viewer"]), 403),
            (sign(), 403),
            (sign(roles=[1, "editor"]), 200),
            (sign(roles={"editor": True}), 403),
        ]:
            assert (await gw.request("GET", "/any", bearer(token))).status == status
        in_realm = sign(realm_access={"roles": ["admin"]})
        assert (await gw.request("GET", "/nested", bearer(in_realm))).status == 200
        assert (await gw.request("GET", "/nested", bearer(sign(realm_access={"roles": ["user"]})))).status == 403
        # Without roles_key_is_nested the dotted key is one claim's name, as in KrakenD.
        assert (await gw.request("GET", "/flat", bearer(in_realm))).status == 403
        assert (await gw.request("GET", "/flat", bearer(sign(**{"realm_access.roles": ["admin"]})))).status == 200
        assert (await gw.request("GET", "/url", bearer(sign(**{"https://ex.com/roles": ["admin"]})))).status == 200

    run(
        config(
            endpoint("/any", {"jwk_local_path": path, "roles": ["admin", "editor"]}),
            endpoint("/nested", nested),
            endpoint("/flat", {**nested, "roles_key_is_nested": False}),
            endpoint("/url", {**nested, "roles_key": "https://ex.com/roles"}),
        ),
        fakes(),
        scenario,
    )


def test_scopes_any_and_all(keyfile) -> None:
    path = keyfile(("RS256", "k1"))
    rules = {"jwk_local_path": path, "scopes_key": "scope", "scopes": ["read", "write"]}

    async def scenario(gw: InProcessGateway) -> None:
        for token, any_status, all_status in [
            (sign(scope="read write"), 200, 200),
            (sign(scope="read"), 200, 403),
            (sign(scope=["write", "read"]), 200, 200),
            (sign(scope="admin"), 403, 403),
            (sign(scope=[]), 403, 403),
            (sign(), 403, 403),
        ]:
            assert (await gw.request("GET", "/any", bearer(token))).status == any_status
            assert (await gw.request("GET", "/all", bearer(token))).status == all_status
        assert (await gw.request("GET", "/nested", bearer(sign(authz={"scp": ["read"]})))).status == 200

    run(
        config(
            endpoint("/any", rules),
            endpoint("/all", {**rules, "scopes_matcher": "all"}),
            endpoint("/nested", {**rules, "scopes_key": "authz.scp"}),
        ),
        fakes(),
        scenario,
    )


# --- where the token is, and what the client sees -------------------------------------------------------


def test_header_with_or_without_bearer_then_the_cookie(keyfile) -> None:
    path = keyfile(("RS256", "k1"))
    token = sign()

    async def scenario(gw: InProcessGateway) -> None:
        for headers, status in [
            ([("Authorization", f"bearer {token}")], 200),
            ([("Authorization", token)], 200),
            ([("Cookie", f"a=1; access_token={token}")], 200),
            ([("Cookie", f'access_token="{token}"')], 200),
            ([("Authorization", "Bearer garbage"), ("Cookie", f"access_token={token}")], 401),
            ([("Authorization", "Basic dXNlcjpwYXNz")], 401),
            ([("Cookie", f"session={token}")], 401),
        ]:
            assert (await gw.request("GET", "/default", headers)).status == status, headers
        assert (await gw.request("GET", "/custom", [("Cookie", f"jwt={token}")])).status == 200
        assert (await gw.request("GET", "/custom", [("Cookie", f"access_token={token}")])).status == 401
        assert (await gw.request("GET", "/header", [("X-Token", token)])).status == 200
        assert (await gw.request("GET", "/header", bearer(token))).status == 401

    run(
        config(
            endpoint("/default", {"jwk_local_path": path}),
            endpoint("/custom", {"jwk_local_path": path, "cookie_key": "jwt"}),
            endpoint("/header", {"jwk_local_path": path, "auth_header_name": "X-Token"}),
        ),
        fakes(),
        scenario,
    )


def test_refusals_say_why_only_with_operation_debug(keyfile) -> None:
    path = keyfile(("RS256", "k1"))
    backends = fakes()

    async def scenario(gw: InProcessGateway) -> None:
        quiet = await gw.request("GET", "/quiet", bearer(sign(exp=1)))
        assert (quiet.status, quiet.json(), quiet.header("www-authenticate")) == (
            401,
            {"error": "unauthorized"},
            "Bearer",
        )
        loud = await gw.request("GET", "/debug", bearer(sign(exp=1)))
        assert (loud.status, loud.json()) == (401, {"error": "unauthorized", "reason": "expired"})
        forbidden = await gw.request("GET", "/debug", bearer(sign()))
        assert forbidden.status == 403 and forbidden.json()["reason"].startswith("none of the roles")
        assert forbidden.header("www-authenticate") is None
        assert not backends.seen["/a"]

    run(
        config(
            endpoint("/quiet", {"jwk_local_path": path}),
            endpoint("/debug", {"jwk_local_path": path, "operation_debug": True, "roles": ["admin"]}),
        ),
        backends,
        scenario,
    )


def test_the_log_says_why_without_the_token(keyfile, capfd) -> None:
    token = sign(exp=1)

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a", bearer(token))).status == 401

    run(config(endpoint("/a", {"jwk_local_path": keyfile(("RS256", "k1"))})), fakes(), scenario)
    err = capfd.readouterr().err
    assert "GET /a: token refused (401): expired" in err
    assert token not in err and token.split(".")[1] not in err


# --- claims passed on ------------------------------------------------------------------------------------


def test_propagate_claims_to_backend_headers_over_the_clients(keyfile) -> None:
    backends = fakes()
    rules = {
        "jwk_local_path": keyfile(("RS256", "k1")),
        "propagate_claims": [
            ["sub", "X-User"],
            ["realm.roles", "X-Roles"],
            ["missing", "X-Missing"],
            ["n", "X-N"],
            ["f", "X-F"],
            ["obj", "X-Obj"],
            ["https://ex.com/tenant", "X-Tenant"],
        ],
    }

    async def scenario(gw: InProcessGateway) -> None:
        token = sign(
            realm={"roles": ["a", "b"]}, n=42, f=1.5, obj={"b": 1, "a": [1]}, **{"https://ex.com/tenant": "t1"}
        )
        spoofed = [("X-User", "admin"), ("X-Missing", "spoofed"), *bearer(token)]
        assert (await gw.request("GET", "/a", spoofed)).status == 200
        headers = backends.seen["/a"][-1].headers
        assert {k: headers[k] for k in ("x-user", "x-roles", "x-missing", "x-n", "x-f", "x-obj", "x-tenant")} == {
            "x-user": "user-1",
            "x-roles": "a,b",
            "x-missing": "",
            "x-n": "42",
            "x-f": "1.500000",
            "x-obj": '{"a":[1],"b":1}',
            "x-tenant": "t1",
        }
        assert (await gw.request("GET", "/array", bearer(token))).status == 200
        assert backends.seen["/b"][-1].headers["x-roles"] == "a, b"
        assert (await gw.request("GET", "/a", bearer(sign(sub="x\r\nEvil: 1")))).status == 403

    run(
        config(
            endpoint("/a", rules, input_headers=["*"]),
            endpoint("/array", {**rules, "propagate_claims_preserve_array": True}, "/b"),
        ),
        backends,
        scenario,
    )


def test_an_endpoint_script_and_the_rate_limit_after_it_see_the_propagated_claims(keyfile) -> None:
    # KrakenD: JWT sets the claim headers on the request, then Lua reads and may change them, then the limit reads
    # them; the backend gets what the last of them left.
    backends = fakes()
    rules = {"jwk_local_path": keyfile(("RS256", "k1")), "propagate_claims": [["sub", "x-user"], ["org", "x-org"]]}
    pre = """
local c = ctx.load()
c:headers("X-Seen", c:headers("X-User") .. "/" .. c:headerList("X-User"):get(0))
if c:headers("X-Org") == "blocked" then c:headers("X-User", "everyone") end
c:headers("X-Org", nil)
"""
    limit = {"client_max_rate": 1, "strategy": "header", "key": "X-User"}
    extra = {"modifier/lua-endpoint": {"pre": pre}, "qos/ratelimit/router": limit}

    async def scenario(gw: InProcessGateway) -> None:
        alice = bearer(sign(sub="alice", org="acme"))
        assert (await gw.request("GET", "/a", [("X-User", "mallory"), *alice])).status == 200
        headers = backends.seen["/a"][-1].headers
        assert (headers["x-user"], headers["x-seen"], "x-org" in headers) == ("alice", "alice/alice", False)
        assert (await gw.request("GET", "/a", [("X-User", "other"), *alice])).status == 429
        # The script's value replaces the claim's, for the limit and the backend.
        assert (await gw.request("GET", "/a", bearer(sign(sub="bob", org="blocked")))).status == 200
        assert backends.seen["/a"][-1].headers["x-user"] == "everyone"
        assert (await gw.request("GET", "/a", bearer(sign(sub="carol", org="blocked")))).status == 429
        assert (await gw.request("GET", "/a", bearer(sign(sub="carol", org="acme")))).status == 200

    run(
        config(endpoint("/a", None, input_headers=["x-user", "x-seen"], extra_config={NS: rules, **extra})),
        backends,
        scenario,
    )


def test_jwt_placeholders_need_their_claims(keyfile) -> None:
    backends = FakeBackends({"/users/{JWT.sub}/{JWT.org.id}": returning({"ok": True})})

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/me", bearer(sign(org={"id": 7})))).status == 200
        req = backends.seen["/users/{JWT.sub}/{JWT.org.id}"][-1]
        assert jwt_params(req.params, req.claims, ("sub", "org.id")) == {"JWT.sub": "user-1", "JWT.org.id": "7"}
        # A token without the claim, or with one that would leave its path segment, never reaches the backend.
        for token in (sign(), sign(sub="..", org={"id": 7}), sign(sub="a/b", org={"id": 7})):
            assert (await gw.request("GET", "/me", bearer(token))).status == 403
        assert len(backends.seen["/users/{JWT.sub}/{JWT.org.id}"]) == 1

    run(
        config(endpoint("/me", {"jwk_local_path": keyfile(("RS256", "k1"))}, "/users/{JWT.sub}/{JWT.org.id}")),
        backends,
        scenario,
    )


def test_claims_as_api_gateway_authorizers_pass_them() -> None:
    claims = {
        "sub": "u",
        "exp": 1700000000,
        "groups": ["a", "b"],
        "scope": "read write",
        "ok": True,
        "obj": {"k": 1},
        "f": 2.0,
    }
    flat = {
        "sub": "u",
        "exp": "1700000000",
        "groups": "[a b]",
        "scope": "read write",
        "ok": "true",
        "obj": '{"k":1}',
        "f": "2",
    }
    assert jwt_authorizer(claims, "2.0") == {"jwt": {"claims": flat, "scopes": ["read", "write"]}}
    assert jwt_authorizer({"scp": ["x"]}, "2.0")["jwt"]["scopes"] == ["x"]
    assert jwt_authorizer({"sub": "u"}, "2.0")["jwt"]["scopes"] is None
    assert jwt_authorizer(claims, "1.0") == {"claims": flat}


def test_claim_text_as_krakend_writes_claims() -> None:
    assert [claim_text(v) for v in ("s", 3, 3.0, 2.5, [1, "a", 2.0, True], [], None, {"b": 2, "a": 1}, False)] == [
        "s",
        "3",
        "3",
        "2.500000",
        "1,a,2,true",
        "",
        "null",
        '{"a":1,"b":2}',
        "false",
    ]


# --- bad input -------------------------------------------------------------------------------------------


def test_bad_tokens_are_401_quickly_and_never_reach_the_backend(keyfile) -> None:
    backends = fakes()
    header = {"alg": "RS256", "kid": "k1"}
    bomb = b"[" * 5000 + b"]" * 5000
    signed_bomb = sign(deep=orjson.loads(b"[" * 100 + b"]" * 100))
    bad = [
        "a" * 9000,
        sign(pad="x" * 9000),
        "x.y",
        "a.b.c.d.e",
        "%%%.abc.def",
        "abc.d$f.ghi",
        "e30.e30.e30=",
        f"{b64(bomb)}.e30.c2ln",
        raw_token(header, bomb),
        raw_token([1], {}),
        f"{b64(b'{')}.e30.c2ln",
        raw_token({**header, "crit": ["exp"]}, {}),
        raw_token({"alg": "RS256", "kid": 5}, {}),
        "a.b.c",
        raw_token(header, {"sub": "x"}, b"\x00" * 256),
        raw_token(header, b"\xff\xfe"),
        "\u00e9" * 40,
        f"{b64(orjson.dumps(header))}.{b64(b'null')}.{b64(b'x' * 256)}",
    ]

    async def scenario(gw: InProcessGateway) -> None:
        started = time.monotonic()
        for token in bad:
            reply = await gw.request("GET", "/a", bearer(token))
            assert (reply.status, reply.json()) == (401, {"error": "unauthorized"}), token[:60]
        assert time.monotonic() - started < 2
        # A deeply nested payload, validly signed, still parses (orjson's depth limit is far deeper).
        assert (await gw.request("GET", "/a", bearer(signed_bomb))).status == 200
        assert len(backends.seen["/a"]) == 1

    run(config(endpoint("/a", {"jwk_local_path": keyfile(("RS256", "k1"))})), backends, scenario)


# --- the validated-token cache ---------------------------------------------------------------------------


class FakeTime:
    """The validator's clocks, with wall time moved forward by `ahead` seconds."""

    ahead = 0.0

    @classmethod
    def time(cls) -> float:
        return time.time() + cls.ahead

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


def test_cached_tokens_still_expire_and_still_meet_each_endpoints_rules(keyfile, monkeypatch) -> None:
    monkeypatch.setattr(validator_module, "time", FakeTime)
    path = keyfile(("RS256", "k1"))
    token = sign(exp=int(time.time()) + 60, roles=["user"])

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a", bearer(token))).status == 200
        source = next(v for v in gw.app.resources.shared.values() if isinstance(v, jwks_module.KeySource))
        assert token in source.cache.entries
        # The cache saves the signature check, not the rules: another endpoint's roles still apply.
        assert (await gw.request("GET", "/admin", bearer(token))).status == 403
        FakeTime.ahead = 120
        assert (await gw.request("GET", "/a", bearer(token))).status == 401
        assert token not in source.cache.entries

    run(
        config(
            endpoint("/a", {"jwk_local_path": path}), endpoint("/admin", {"jwk_local_path": path, "roles": ["admin"]})
        ),
        fakes(),
        scenario,
    )


def test_the_token_cache_is_bounded() -> None:
    cache = TokenCache()
    for i in range(CACHE_ENTRIES + 10):
        cache.put(f"token-{i}", "RS256", {}, None)
    assert len(cache.entries) == CACHE_ENTRIES and "token-0" not in cache.entries and f"token-{i}" in cache.entries
    big = "x" * 8000
    for i in range(CACHE_BYTES // 8000 + 10):
        cache.put(f"{big}{i}", "RS256", {}, None)
    assert cache.size <= CACHE_BYTES and cache.size == sum(len(t) for t in cache.entries)


def test_rs256_validation_cpu_cost(keyfile) -> None:
    """Cheap enough: a cached token in a few µs of CPU, a new one within a few signature checks' time."""
    token = sign()
    keys = import_key_set(orjson.dumps(jwks(("RS256", "k1"))), "kid")
    source = jwks_module.KeySource("test", "kid", keys=keys)
    validator = validator_module.Validator(
        validate_document(config(endpoint("/a", {"jwk_local_path": keyfile(("RS256", "k1"))})), LoadOptions())
        .service.endpoints[0]
        .namespaces[NS],
        source,
        1.0,
        (),
    )
    headers = [(b"authorization", f"Bearer {token}".encode())]

    async def cost(n: int, clear: bool) -> float:
        started = time.process_time()
        for _ in range(n):
            if clear:
                source.cache.clear()
            await validator.check(headers)
        return (time.process_time() - started) / n * 1e6

    import asyncio

    uncached, cached = asyncio.run(cost(300, True)), asyncio.run(cost(3000, False))
    print(f"\nRS256 validation: {uncached:.1f} µs CPU uncached, {cached:.1f} µs cached")
    assert cached < 40 and uncached < 1000  # generous: the machine is shared; docs/benchmarks.md has the numbers


# --- config ------------------------------------------------------------------------------------------------


def errors_of(*endpoints: dict, service_ns: dict | None = None, allow: tuple[str, ...] = ()) -> list[str]:
    doc = config(*endpoints)
    doc["extra_config"] = service_ns or {}
    with pytest.raises(ConfigError) as info:
        validate_document(doc, LoadOptions(allow_unsupported=frozenset(allow)))
    return [str(issue) for issue in info.value.issues]


def warnings_of(*endpoints: dict, service_ns: dict | None = None, allow: tuple[str, ...] = ()) -> list[str]:
    doc = config(*endpoints)
    doc["extra_config"] = service_ns or {}
    return [str(w) for w in validate_document(doc, LoadOptions(allow_unsupported=frozenset(allow))).warnings]


P = f'endpoints[0].extra_config["{NS}"]'


def test_config_errors_name_the_field_and_what_to_write(keyfile, tmp_path: Path) -> None:
    path = keyfile(("RS256", "k1"))
    cases = [
        (
            {},
            f'{P}: give exactly one of "jwk_url" (a JWK set served over HTTPS) or "jwk_local_path" (a JWK set '
            "file); neither is given",
        ),
        (
            {"jwk-url": "https://idp"},
            f'{P}: give exactly one of "jwk_url" (a JWK set served over HTTPS) or '
            '"jwk_local_path" (a JWK set file); neither is given ("jwk-url" is no field, for '
            "KrakenD either)",
        ),
        ({"jwk_url": "https://a", "jwk_local_path": path}, f"{P}: give exactly one of"),
        (
            {"jwk_url": "http://idp/jwks"},
            f"{P}.jwk_url: 'http://idp/jwks' is plain HTTP, so the keys could be "
            'replaced on the way: use https, or set "disable_jwk_security": true',
        ),
        ({"jwk_url": "ftp://idp"}, f"{P}.jwk_url: 'ftp://idp' is not an http(s) URL"),
        ({"alg": "none", "jwk_local_path": path}, f"{P}.alg: must be one of EdDSA, HS256"),
        ({"jwk_local_path": path, "scopes": ["a"]}, f'{P}.scopes: needs "scopes_key"'),
        ({"jwk_local_path": path, "propagate_claims": [["sub"]]}, f"{P}.propagate_claims[0]: must be a pair"),
        ({"jwk_local_path": path, "propagate_claims": [["sub", "Host"]]}, f"{P}.propagate_claims[0]: Host is set by"),
        (
            {"jwk_local_path": path, "propagate_claims": [["sub", "X User"]]},
            f"{P}.propagate_claims[0]: 'X User' is not a header name",
        ),
        ({"jwk_url": "https://idp", "jwk_fingerprints": ["abc"]}, f"{P}.jwk_fingerprints[0]: must be the base64url"),
        (
            {"jwk_local_path": str(tmp_path / "none.json")},
            f"{P}.jwk_local_path: the file {str(tmp_path / 'none.json')!r} does not exist: write the path of a JSON "
            "file with a JWK set the gateway can read",
        ),
        ({"jwk_local_path": path, "alg": "ES256"}, f"{P}.jwk_local_path: '{path}' has no key for ES256"),
        ({"jwk_local_path": path, "leeway": "soon"}, f"{P}.leeway: malformed duration 'soon'"),
        ({"jwk_local_path": path, "issuer": "a", "ISSUER": "b"}, f'{P}.ISSUER: "issuer" is given twice'),
        (
            {"jwk_local_path": path, "audience": "api"},
            f"{P}.audience: Input should be a valid list, got str 'api': write a list, such as [\"api\"]",
        ),
        (  # a list of [claim, header] pairs: the hint shows one, not [true]
            {"jwk_local_path": path, "propagate_claims": True},
            f'{P}.propagate_claims: Input should be a valid list, got bool True: write a list, such as [["sub", "X-User"]]',
        ),
        ({"jwk_local_path": path, "secret_url": "x"}, f"{P}.secret_url: encrypted key files"),
    ]
    for validator, expected in cases:
        found = errors_of(endpoint("/a", validator))
        assert any(e.startswith(expected) for e in found), (validator, found)


def test_config_warnings(keyfile) -> None:
    path = keyfile(("RS256", "k1"))
    assert warnings_of(
        endpoint("/a", {"jwk_local_path": path, "jwk-url": "x", "cipher_suites": [49199], "cache": True})
    ) == [
        f'{P}.jwk-url: not supported, ignored: did you mean "jwk_url"? (KrakenD ignores it too)',
        f"{P}.cipher_suites: accepted and ignored: TLS cipher suites are Python's defaults (TLS 1.2 or later)",
        f"{P}.cache: applies to jwk_url only; a local key file is read once",
    ]


def test_legacy_name_is_read_with_a_warning_naming_the_current_one(keyfile) -> None:
    legacy = "github_com/devopsfaith/krakend-jose/validator"
    doc = config(
        {
            "endpoint": "/a",
            "extra_config": {legacy: {"jwk_local_path": keyfile(("RS256", "k1"))}},
            "backend": [{"host": ["http://fake"], "url_pattern": "/a"}],
        }
    )
    loaded = validate_document(doc, LoadOptions())
    assert [str(w) for w in loaded.warnings] == [
        f'endpoints[0].extra_config["{legacy}"]: `{legacy}` is the old name of `auth/validator` and is read as '
        "`auth/validator`; write `auth/validator` (KrakenD 2 and later may ignore the old name)"
    ]
    assert NS in loaded.service.endpoints[0].namespaces

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/a")).status == 401
        assert (await gw.request("GET", "/a", bearer(sign()))).status == 200

    run(doc, fakes(), scenario)


def test_service_level_reads_only_the_shared_cache_duration(keyfile) -> None:
    # "@" keys are KrakenD's comments: accepted silently everywhere.
    assert warnings_of(endpoint("/a", None), service_ns={NS: {"shared_cache_duration": 900, "@comment": "x"}}) == []
    assert errors_of(endpoint("/a", None), service_ns={NS: {"alg": "RS256", "jwk_url": "https://idp"}}) == [
        f'extra_config["{NS}"]: at the service level KrakenD reads only shared_cache_duration, so alg, jwk_url '
        "protect no endpoint here; move the validator to each endpoint's extra_config, or start with "
        f"`--allow-unsupported {NS}` to serve the endpoints without it"
    ]
    assert len(warnings_of(endpoint("/a", None), service_ns={NS: {"jwk_url": "https://idp"}}, allow=(NS,))) == 1
    assert errors_of(
        endpoint("/a", None, extra_config={})
        | {"backend": [{"host": ["http://f"], "url_pattern": "/a", "extra_config": {NS: {}}}]}
    )[0].startswith(f'endpoints[0].backend[0].extra_config["{NS}"]: `{NS}` is read only in an endpoint\'s extra_config')


def test_jwt_placeholders_need_the_validator() -> None:
    assert errors_of(endpoint("/a", None, "/u/{JWT.sub}?org={JWT.org}")) == [
        "endpoints[0].backend[0].url_pattern: {JWT.sub} is a claim of a validated token, and the endpoint "
        'validates none: add "auth/validator"',
        "endpoints[0].backend[0].url_pattern: {JWT.org} is a claim of a validated token, and the endpoint "
        'validates none: add "auth/validator"',
    ]
