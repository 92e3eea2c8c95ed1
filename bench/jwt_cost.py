"""CPU cost of one RS256 token validation in-process, per JOSE library and for lambdagate's validator.

`python bench/jwt_cost.py`: joserfc (a dependency) always; PyJWT and jwcrypto when installed (they are not
dependencies: install them in a scratch venv to compare). Each figure is the best of 5 runs of N validations
(CPU time of this process), so a busy neighbour inflates it less. The token, key and checks (signature, exp,
aud, iss) are the same for every library.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from joserfc import jwt as jose_jwt
from joserfc.jwk import RSAKey

KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
PUBLIC = KEY.as_dict(private=False)
NOW = int(time.time())
CLAIMS = {"sub": "user-1", "iss": "https://idp", "aud": "api", "iat": NOW, "exp": NOW + 3600, "roles": ["a"]}
TOKEN = jose_jwt.encode({"alg": "RS256", "kid": "k1"}, CLAIMS, KEY)


def best_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 200)):
        fn()
    runs = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            fn()
        runs.append((time.process_time() - started) / n * 1e6)
    return min(runs)


def joserfc_decode() -> Callable[[], object]:
    from joserfc.jwk import import_key
    from joserfc.jwt import JWTClaimsRegistry

    key = import_key(PUBLIC)
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": "https://idp"}, aud={"essential": True, "value": "api"}, leeway=1
    )

    def check() -> object:
        token = jose_jwt.decode(TOKEN, key, algorithms=["RS256"])
        registry.validate(token.claims)
        return token

    return check


def pyjwt_decode() -> Callable[[], object]:
    import jwt
    from jwt import PyJWK

    key = PyJWK(PUBLIC, "RS256").key
    return lambda: jwt.decode(TOKEN, key, algorithms=["RS256"], audience="api", issuer="https://idp", leeway=1)


def jwcrypto_decode() -> Callable[[], object]:
    from jwcrypto import jwk, jwt

    key = jwk.JWK(**PUBLIC)
    return lambda: json.loads(
        jwt.JWT(
            jwt=TOKEN, key=key, algs=["RS256"], check_claims={"iss": "https://idp", "aud": "api", "exp": None}
        ).claims
    )


def lambdagate_validator(cached: bool) -> Callable[[], object]:
    from lambdagate.auth.config import ValidatorConfig
    from lambdagate.auth.jwks import KeySource, import_key_set
    from lambdagate.auth.validator import Validator

    keys = import_key_set(json.dumps({"keys": [PUBLIC]}).encode(), "kid")
    source = KeySource("bench", "kid", keys=keys)
    cfg = ValidatorConfig(jwk_local_path="-", audience=["api"], issuer="https://idp", roles=["a"])
    validator = Validator(cfg, source, 1.0, ())
    headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
    check = validator.check

    def run() -> object:
        if not cached:
            source.cache.clear()
        coro = check(headers)
        try:
            coro.send(None)  # never suspends with a local key set
        except StopIteration as done:
            return done.value
        raise RuntimeError("the validator suspended")

    return run


def rsa_verify_only() -> Callable[[], object]:
    """The floor: OpenSSL's RSA-2048 signature check through cryptography, nothing else."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from lambdagate.auth.tokens import b64url

    head, payload, signature = TOKEN.split(".")
    public, message, sig = KEY.public_key, f"{head}.{payload}".encode(), b64url(signature)
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    return lambda: public.verify(sig, message, pad, sha)


def main() -> None:
    cases: list[tuple[str, Callable[[], Callable[[], object]], int]] = [
        ("RSA-2048 verify alone (cryptography)", rsa_verify_only, 2000),
        ("joserfc jwt.decode + claims registry", joserfc_decode, 2000),
        ("PyJWT jwt.decode", pyjwt_decode, 2000),
        ("jwcrypto JWT", jwcrypto_decode, 1000),
        ("lambdagate validator, new token", lambda: lambdagate_validator(False), 2000),
        ("lambdagate validator, cached token", lambda: lambdagate_validator(True), 20000),
    ]
    for name, make, n in cases:
        try:
            fn = make()
        except ImportError:
            print(f"{name:40} not installed")
            continue
        print(f"{name:40} {best_us(fn, n):7.1f} µs CPU per validation")


if __name__ == "__main__":
    main()
