"""`auth/signer`: response fields signed into JWTs with real generated keys (RSA, RSA-PSS, EC, Ed25519, HMAC), from a
JWK file or a JWK set URL (plain HTTP, HTTPS with a local CA, pinned), verified with joserfc and the public key;
fields left alone; failures; load-time refusals; the legacy name; one real gateway process end to end."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import ssl
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from lambdagate.auth import signer as signer_module
from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import BackendError, ConfigError
from lambdagate.proxy import ProxyRequest, ProxyResponse
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run
from tests.support.procs import Process, free_port, python_module, serve_module

CLAIMS = {"sub": "user-1", "exp": 1893456000, "roles": ["admin"], "nested": {"a": [1, 2]}}
LOGIN = {
    "access_token": CLAIMS,
    "refresh_token": {"sub": "user-1", "kind": "refresh"},
    "user": {"name": "Ann"},
    "expires_in": 3600,
}


def generate(alg: str, kid: str, params: dict | None = None) -> Any:
    parameters = {"kid": kid, **(params or {})}
    if alg.startswith("HS"):
        return OctKey.generate_key(512, parameters=parameters)
    if alg.startswith(("RS", "PS")):
        return RSAKey.generate_key(2048, parameters=parameters)
    if alg.startswith("ES"):
        return ECKey.generate_key({"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg], parameters=parameters)
    return OKPKey.generate_key("Ed25519", parameters=parameters)


def key_set(*keys: Any, private: bool = True) -> bytes:
    return orjson.dumps({"keys": [k.as_dict(private=private) for k in keys]})


def write_set(directory: Path, *keys: Any, private: bool = True) -> str:
    path = directory / f"keys-{time.monotonic_ns()}.json"
    path.write_bytes(key_set(*keys, private=private))
    return str(path)


def verify(token: str, key: Any, alg: str) -> dict:
    """The claims of a compact JWT, checked with the public key only (the secret for HMAC)."""
    public = key if alg.startswith("HS") else type(key).import_key(key.as_dict(private=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc: EdDSA is deprecated (RFC 9864)
        return jwt.decode(token, public, algorithms=[alg]).claims


def header_of(token: str) -> dict:
    part = token.split(".")[0]
    return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def login_config(signer: dict, *, backends: list[str] | None = None, **endpoint: Any) -> dict:
    return {
        "version": 3,
        "timeout": "2s",
        "endpoints": [
            {
                "endpoint": "/login",
                "method": "POST",
                "extra_config": {"auth/signer": signer},
                "backend": [{"host": ["http://fake"], "url_pattern": p} for p in backends or ["/login"]],
                **endpoint,
            }
        ],
    }


def load_errors(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_document(config, LoadOptions())
    return [str(issue) for issue in info.value.issues]


def load_warnings(config: dict) -> list[str]:
    return [str(w) for w in validate_document(config, LoadOptions()).warnings]


# --- signing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "HS512", "RS256", "PS384", "ES256", "ES512", "EdDSA"])
def test_listed_fields_are_signed_and_verify_with_the_public_key(tmp_path: Path, alg: str) -> None:
    key, other = generate(alg, "k1"), generate(alg, "k2")
    signer = {
        "alg": alg,
        "kid": "k1",
        "keys_to_sign": ["access_token", "refresh_token"],
        "jwk_local_path": write_set(tmp_path, other, key),
    }
    fakes = FakeBackends({"/login": returning(LOGIN)})

    async def scenario(gw: InProcessGateway) -> None:
        reply = await gw.request("POST", "/login", body=b"{}")
        assert reply.status == 200, reply.body
        body = reply.json()
        assert verify(body["access_token"], key, alg) == CLAIMS
        assert verify(body["refresh_token"], key, alg) == {"sub": "user-1", "kind": "refresh"}
        assert header_of(body["access_token"]) == {"alg": alg, "kid": "k1", "typ": "JWT"}
        assert (body["user"], body["expires_in"]) == ({"name": "Ann"}, 3600)  # not listed: as the backend gave it
        with pytest.raises(BadSignatureError):  # the other key of the set did not sign it
            verify(body["access_token"], other, alg)

    run(login_config(signer), fakes, scenario)


def test_full_serialization_and_typ(tmp_path: Path) -> None:
    key = generate("RS256", "k1")
    signer = {
        "alg": "RS256",
        "kid": "k1",
        "typ": "at+jwt",
        "full": True,
        "keys_to_sign": ["access_token"],
        "jwk_local_path": write_set(tmp_path, key),
    }

    async def scenario(gw: InProcessGateway) -> None:
        value = (await gw.request("POST", "/login")).json()["access_token"]
        assert isinstance(value, str)
        serialized = orjson.loads(value)
        assert set(serialized) == {"payload", "protected", "signature"}
        public = RSAKey.import_key(key.as_dict(private=False))
        obj = jws.deserialize_json(serialized, public, algorithms=["RS256"])
        assert orjson.loads(obj.payload) == CLAIMS
        assert obj.headers() == {"alg": "RS256", "kid": "k1", "typ": "at+jwt"}

    run(login_config(signer), FakeBackends({"/login": returning(LOGIN)}), scenario)


def test_missing_and_non_object_fields_are_left_as_they_are(tmp_path: Path) -> None:
    key = generate("HS256", "k1")
    signer = {
        "alg": "HS256",
        "kid": "k1",
        "keys_to_sign": ["access_token", "refresh_token", "absent"],
        "jwk_local_path": write_set(tmp_path, key),
    }
    answer = {"access_token": "already-a-string", "refresh_token": [1, 2], "other": 1}

    async def scenario(gw: InProcessGateway) -> None:
        reply = await gw.request("POST", "/login")
        assert (reply.status, reply.json()) == (200, answer)

    run(login_config(signer), FakeBackends({"/login": returning(answer)}), scenario)


def test_failures_and_merges(tmp_path: Path) -> None:
    """Every backend failed: their usual error, nothing signed. A partial merge: what is there is signed. Cached
    replies are private: a signed token is one user's."""
    key = generate("HS256", "k1")
    signer = {"alg": "HS256", "kid": "k1", "keys_to_sign": ["access_token"], "jwk_local_path": write_set(tmp_path, key)}
    fakes = FakeBackends({"/login": returning(LOGIN), "/bad": returning(error=BackendError("boom", cause="test"))})
    config = login_config(signer, backends=["/bad"], cache_ttl="60s")
    config["endpoints"].append(
        {**login_config(signer, backends=["/login", "/bad"], cache_ttl="60s")["endpoints"][0], "endpoint": "/partial"}
    )

    async def scenario(gw: InProcessGateway) -> None:
        failed = await gw.request("POST", "/login")
        assert (failed.status, failed.json()) == (500, {"error": "boom"})
        partial = await gw.request("POST", "/partial")
        assert (partial.status, partial.header("x-krakend-completed")) == (200, "false")
        assert verify(partial.json()["access_token"], key, "HS256") == CLAIMS

    run(config, fakes, scenario)


def test_cache_ttl_gives_private_replies(tmp_path: Path) -> None:
    key = generate("HS256", "k1")
    signer = {"alg": "HS256", "kid": "k1", "keys_to_sign": ["access_token"], "jwk_local_path": write_set(tmp_path, key)}

    async def scenario(gw: InProcessGateway) -> None:
        reply = await gw.request("POST", "/login")
        assert reply.header("cache-control") == "private, max-age=60"

    run(login_config(signer, cache_ttl="60s"), FakeBackends({"/login": returning(LOGIN)}), scenario)


def passthrough(status: int, body: bytes) -> Any:
    async def answer(req: ProxyRequest) -> ProxyResponse:
        return ProxyResponse.passthrough(
            status, [("Content-Type", "application/json"), ("X-Fn", "1")], body, complete=True
        )

    return answer


def test_a_passed_through_json_reply_is_signed_when_2xx(tmp_path: Path) -> None:
    """A function's HTTP reply (API Gateway style) reaches the client as is: its JSON object is signed too."""
    key = generate("ES256", "k1")
    signer = {"alg": "ES256", "kid": "k1", "keys_to_sign": ["access_token"], "jwk_local_path": write_set(tmp_path, key)}
    refusal = orjson.dumps({"access_token": {"sub": "x"}, "error": "bad password"})
    fakes = FakeBackends(
        {
            "/ok": passthrough(201, orjson.dumps(LOGIN)),
            "/refused": passthrough(401, refusal),
            "/text": passthrough(200, b"not json"),
        }
    )
    config = login_config(signer, backends=["/ok"])
    for name in ("refused", "text"):
        config["endpoints"].append(
            {**login_config(signer, backends=[f"/{name}"])["endpoints"][0], "endpoint": f"/{name}"}
        )

    async def scenario(gw: InProcessGateway) -> None:
        ok = await gw.request("POST", "/login")
        assert (ok.status, ok.header("x-fn")) == (201, "1")
        assert verify(ok.json()["access_token"], key, "ES256") == CLAIMS
        refused = await gw.request("POST", "/refused")
        assert (refused.status, refused.body) == (401, refusal)  # no 2xx: nothing is signed
        text = await gw.request("POST", "/text")
        assert (text.status, text.body) == (200, b"not json")

    run(config, fakes, scenario)


def test_a_signing_failure_is_500_without_data(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    key = generate("HS256", "k1")
    signer = {"alg": "HS256", "kid": "k1", "keys_to_sign": ["access_token"], "jwk_local_path": write_set(tmp_path, key)}
    # orjson cannot encode this integer (it is beyond 64 bits): the signer cannot serialize the claims.
    fakes = FakeBackends({"/login": returning({"access_token": {"n": 2**70, "secret-claim": "x"}})})

    async def scenario(gw: InProcessGateway) -> None:
        reply = await gw.request("POST", "/login")
        assert (reply.status, reply.json()) == (500, {"error": "the response could not be signed"})

    run(login_config(signer), fakes, scenario)
    log = capfd.readouterr().err
    assert "could not be signed: TypeError" in log and "secret-claim" not in log


# --- load time ---------------------------------------------------------------------------------------------


def test_key_problems_refuse_the_config(tmp_path: Path) -> None:
    rsa, hmac_key = generate("RS256", "k1"), generate("HS256", "h1", {"alg": "HS256"})
    path = 'endpoints[0].extra_config["auth/signer"]'
    cases = {
        "public key": (
            {"alg": "RS256", "kid": "k1", "jwk_local_path": write_set(tmp_path, rsa, private=False)},
            "key 'k1' is a public key: signing needs the private one",
        ),
        "unknown kid": (
            {"alg": "RS256", "kid": "nope", "jwk_local_path": write_set(tmp_path, rsa)},
            "no key has kid 'nope', one is needed (kids in the set: 'k1')",
        ),
        "wrong type": (
            {"alg": "ES256", "kid": "k1", "jwk_local_path": write_set(tmp_path, rsa)},
            "key 'k1' cannot sign ES256",
        ),
        "made for another alg": (
            {"alg": "HS512", "kid": "h1", "jwk_local_path": write_set(tmp_path, hmac_key)},
            "key 'h1' cannot sign HS512",
        ),
        "missing file": (
            {"alg": "RS256", "kid": "k1", "jwk_local_path": str(tmp_path / "none.json")},
            "does not exist",
        ),
    }
    for name, (signer, message) in cases.items():
        errors = load_errors(login_config({"keys_to_sign": ["a"], **signer}))
        assert len(errors) == 1 and errors[0].startswith(f"{path}.jwk_local_path: ") and message in errors[0], name


def test_config_problems_refuse_the_config(tmp_path: Path) -> None:
    local = write_set(tmp_path, generate("HS256", "k1"))
    base = {"kid": "k1", "keys_to_sign": ["a"]}
    cases = [
        (
            {"alg": "none", "jwk_local_path": local},
            ".alg: must be one of EdDSA, HS256, HS384, HS512, RS256, RS384, "
            "RS512, ES256, ES384, ES512, PS256, PS384, PS512 (never none), "
            "got 'none'",
        ),
        ({"jwk_local_path": local}, "PS512 (never none)"),
        ({"alg": "HS256"}, 'give exactly one of "jwk_local_path" (a JWK set file) or "jwk_url"'),
        ({"alg": "HS256", "jwk_local_path": local, "jwk_url": "https://k/j"}, "both are given"),
        ({"alg": "HS256", "jwk_url": "http://keys.test/jwks"}, ".jwk_url: 'http://keys.test/jwks' is plain HTTP"),
        ({"alg": "HS256", "jwk_url": "ftp://keys.test/jwks"}, "is not an http(s) URL"),
        ({"alg": "HS256", "jwk_url": "https://k/j", "jwk_fingerprints": ["short"]}, ".jwk_fingerprints[0]: must be"),
        (
            {"alg": "HS256", "jwk_url": "https://k/j", "jwk_local_ca": str(tmp_path / "no-ca.pem")},
            f".jwk_local_ca: the file {str(tmp_path / 'no-ca.pem')!r} does not exist: write the path of a PEM file",
        ),
        (
            {"alg": "HS256", "jwk_local_path": local, "secret_url": "base64key://", "cypher_key": "x"},
            ".secret_url: encrypted key files",
        ),
    ]
    for signer, message in cases:
        errors = load_errors(login_config({**base, **signer}))
        assert any(message in e for e in errors), (signer, errors)


def test_warnings(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = OctKey.import_key({"kty": "oct", "k": "c2hvcnQ", "kid": "s"})  # "short": 40 bits
    signer = {
        "alg": "HS256",
        "kid": "s",
        "jwk_local_path": write_set(tmp_path, short),
        "cipher_suites": [49199],
        "jwk_fingerprints": ["x"],
        "leeway": "1s",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # joserfc's own warning is turned into a config warning, not printed
        found = load_warnings(login_config(signer))
    path = 'endpoints[0].extra_config["auth/signer"]'
    assert found == [
        f"{path}.leeway: not supported, ignored",
        f"{path}.cipher_suites: accepted and ignored: TLS cipher suites are Python's defaults (TLS 1.2 or later)",
        f"{path}.keys_to_sign: is empty: no field of the response is signed",
        f"{path}.jwk_fingerprints: applies to jwk_url only, ignored with jwk_local_path",
        f"{path}.jwk_local_path: {signer['jwk_local_path']!r}: Key size should be >= 112 bits",
    ]


def test_the_legacy_name_signs_with_a_warning_naming_auth_signer(tmp_path: Path) -> None:
    key = generate("HS256", "k1")
    signer = {"alg": "HS256", "kid": "k1", "keys_to_sign": ["access_token"], "jwk_local_path": write_set(tmp_path, key)}
    config = login_config(signer)
    config["endpoints"][0]["extra_config"] = {"github_com/devopsfaith/krakend-jose/signer": signer}
    found = load_warnings(config)
    assert (
        len(found) == 1
        and "`github_com/devopsfaith/krakend-jose/signer` is the old name of `auth/signer`" in found[0]
        and "write `auth/signer`" in found[0]
    )

    async def scenario(gw: InProcessGateway) -> None:
        assert verify((await gw.request("POST", "/login")).json()["access_token"], key, "HS256") == CLAIMS

    run(config, FakeBackends({"/login": returning(LOGIN)}), scenario)


def test_in_a_backend_it_protects_nothing_and_is_refused(tmp_path: Path) -> None:
    config = login_config({"alg": "HS256"})
    config["endpoints"][0]["backend"][0]["extra_config"] = config["endpoints"][0].pop("extra_config")
    errors = load_errors(config)
    assert errors == [
        'endpoints[0].backend[0].extra_config["auth/signer"]: `auth/signer` is read only in an '
        "endpoint's extra_config, so here it protects nothing; move it there, or start with "
        "`--allow-unsupported auth/signer` to call the backend without it"
    ]


# --- key sets from a URL -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_module("tests.support.oauth_server", "/ready", tmp_path_factory.mktemp("oauth")) as url:
        yield url


def put_set(base: str, name: str, data: bytes) -> None:
    req = urllib.request.Request(f"{base}/jwks/{name}", data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def test_key_set_from_a_url_over_plain_http_with_disable_jwk_security(keys_server: str) -> None:
    key = generate("RS256", "k1")
    put_set(keys_server, "plain", key_set(generate("RS256", "k0"), key))
    signer = {
        "alg": "RS256",
        "kid": "k1",
        "keys_to_sign": ["access_token"],
        "jwk_url": f"{keys_server}/jwks/plain",
        "disable_jwk_security": True,
    }

    async def scenario(gw: InProcessGateway) -> None:
        assert verify((await gw.request("POST", "/login")).json()["access_token"], key, "RS256") == CLAIMS

    run(login_config(signer), FakeBackends({"/login": returning(LOGIN)}), scenario)


def test_a_key_set_that_does_not_load_gives_503_until_a_retry_loads_it(keys_server: str, capfd, monkeypatch) -> None:
    monkeypatch.setattr(signer_module, "RETRY_INTERVAL", 0.3)
    key = generate("HS256", "late")
    signer = {
        "alg": "HS256",
        "kid": "late",
        "keys_to_sign": ["access_token"],
        "jwk_url": f"{keys_server}/jwks/late",
        "disable_jwk_security": True,
    }
    fakes = FakeBackends({"/login": returning(LOGIN)})

    async def scenario(gw: InProcessGateway) -> None:
        reply = await gw.request("POST", "/login")
        assert (reply.status, reply.json(), reply.header("retry-after")) == (
            503,
            {"error": "the signing key is not available"},
            "1",
        )
        await asyncio.to_thread(put_set, keys_server, "late", key_set(key))
        deadline = time.monotonic() + 5
        while (reply := await gw.request("POST", "/login")).status == 503 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert verify(reply.json()["access_token"], key, "HS256") == CLAIMS

    run(login_config(signer), fakes, scenario)
    log = capfd.readouterr().err
    assert "the endpoint answers 503 until the key set at" in log and "HTTP status 404" in log
    assert "signing key 'late' loaded" in log


def test_a_hanging_or_garbage_key_server_delays_the_start_at_most_a_few_seconds(keys_server: str, capfd) -> None:
    common = {"alg": "HS256", "kid": "k1", "keys_to_sign": ["access_token"], "disable_jwk_security": True}
    config = {
        "version": 3,
        "timeout": "1s",
        "endpoints": [
            {
                "endpoint": f"/{name}",
                "method": "POST",
                "backend": [{"host": ["http://fake"], "url_pattern": "/login"}],
                "extra_config": {"auth/signer": {**common, "jwk_url": f"{keys_server}/jwks/{name}"}},
            }
            for name in ("hang", "garbage")
        ],
    }
    started = time.monotonic()

    async def scenario(gw: InProcessGateway) -> None:
        assert time.monotonic() - started < signer_module.STARTUP_WAIT + 2
        for name in ("hang", "garbage"):
            reply = await gw.request("POST", f"/{name}")
            assert (reply.status, reply.json()) == (503, {"error": "the signing key is not available"})

    run(config, FakeBackends({"/login": returning(LOGIN)}), scenario)
    log = capfd.readouterr().err
    assert "/jwks/garbage: the JWK set is not JSON" in log and "Traceback" not in log


def self_signed(directory: Path) -> tuple[str, str, str]:
    """A certificate for 127.0.0.1 and its key (PEM files), and the base64url SHA-256 of its public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).decode()
    return str(cert_path), str(key_path), pin


@pytest.fixture(scope="module")
def tls_keys_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key, pin = self_signed(directory)
    port = free_port()
    proc = Process(python_module("tests.support.oauth_server", str(port), cert, key), directory / "server.log")
    try:
        base = f"https://127.0.0.1:{port}"
        _wait_tls(f"{base}/ready", cert, proc)
        yield base, cert, pin
    finally:
        proc.stop()


def _wait_tls(url: str, cafile: str, proc: Process) -> None:
    context = ssl.create_default_context(cafile=cafile)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as resp:
                resp.read()
                return
        except OSError:
            if time.monotonic() > deadline or proc.proc.poll() is not None:
                raise
            time.sleep(0.05)


def put_set_tls(base: str, cafile: str, name: str, data: bytes) -> None:
    req = urllib.request.Request(f"{base}/jwks/{name}", data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=5, context=ssl.create_default_context(cafile=cafile)) as resp:
        resp.read()


def test_https_key_set_with_local_ca_and_pins(tls_keys_server, monkeypatch, capfd) -> None:
    """Trusted by jwk_local_ca: loads; the right pin: loads; a wrong pin or an unknown CA: never loads (503)."""
    monkeypatch.setattr(signer_module, "RETRY_INTERVAL", 30)
    base, cafile, pin = tls_keys_server
    key = generate("ES256", "k1")
    put_set_tls(base, cafile, "tls", key_set(key))
    common = {"alg": "ES256", "kid": "k1", "keys_to_sign": ["access_token"], "jwk_url": f"{base}/jwks/tls"}
    wrong_pin = base64.urlsafe_b64encode(b"\0" * 32).decode()
    cases = {
        "/ca": {"jwk_local_ca": cafile},
        "/pinned": {"jwk_local_ca": cafile, "jwk_fingerprints": [pin]},
        "/wrong-pin": {"jwk_local_ca": cafile, "jwk_fingerprints": [wrong_pin]},
        "/unknown-ca": {},
        "/insecure": {"disable_jwk_security": True},
    }
    config = {
        "version": 3,
        "timeout": "2s",
        "endpoints": [
            {
                "endpoint": path,
                "method": "POST",
                "extra_config": {"auth/signer": {**common, **extra}},
                "backend": [{"host": ["http://fake"], "url_pattern": "/login"}],
            }
            for path, extra in cases.items()
        ],
    }

    async def scenario(gw: InProcessGateway) -> None:
        for path in ("/ca", "/pinned", "/insecure"):
            reply = await gw.request("POST", path)
            assert verify(reply.json()["access_token"], key, "ES256") == CLAIMS, path
        for path in ("/wrong-pin", "/unknown-ca"):
            assert (await gw.request("POST", path)).status == 503, path

    run(config, FakeBackends({"/login": returning(LOGIN)}), scenario)
    log = capfd.readouterr().err
    assert "matches none of jwk_fingerprints" in log and "CERTIFICATE_VERIFY_FAILED" in log, log


# --- end to end --------------------------------------------------------------------------------------------


def test_a_real_gateway_signs_a_real_backends_reply(start_gateway, upstream: str, tmp_path: Path) -> None:
    key = generate("RS256", "login")
    signer = {"alg": "RS256", "kid": "login", "keys_to_sign": ["nested"], "jwk_local_path": write_set(tmp_path, key)}
    config = {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/token",
                "extra_config": {"auth/signer": signer},
                "backend": [{"host": [upstream], "url_pattern": "/json/ann"}],
            }
        ],
    }
    gateway = start_gateway(config)
    with urllib.request.urlopen(f"{gateway.url}/token", timeout=10) as resp:
        body = orjson.loads(resp.read())
    assert body["name"] == "ann" and body["items"] == [1, 2]
    assert verify(body["nested"], key, "RS256") == {"a": 1, "b": {"c": 2}}
    assert "Traceback" not in gateway.log()
