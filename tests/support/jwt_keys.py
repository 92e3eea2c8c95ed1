"""Real keys and tokens for the JWT tests: RSA, EC, Ed25519 and HMAC keys generated here, tokens signed with
joserfc, and the hand-made tokens no library would sign (`none`, alg confusion, garbage)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

ALL_ALGS = [
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@cache
def private_key(alg: str, kid: str) -> Any:
    """One generated key per (alg family, kid), with its kid set."""
    params = {"kid": kid}
    if alg.startswith("HS"):
        return OctKey.generate_key(512, parameters=params)
    if alg.startswith(("RS", "PS")):
        return RSAKey.generate_key(2048, parameters=params)
    if alg.startswith("ES"):
        return ECKey.generate_key(_CURVES[alg], parameters=params)
    return OKPKey.generate_key("Ed25519", parameters=params)


def public_jwk(alg: str, kid: str) -> dict:
    key = private_key(alg, kid)
    return key.as_dict(private=alg.startswith("HS"))


def jwks(*keys: tuple[str, str]) -> dict:
    """A JWK set of the public keys (the secret for HMAC) of (alg, kid) pairs."""
    return {"keys": [public_jwk(alg, kid) for alg, kid in keys]}


def claims(**overrides: Any) -> dict:
    now = int(time.time())
    base = {"sub": "user-1", "iss": "https://idp.test", "aud": "api", "iat": now, "exp": now + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(alg: str = "RS256", kid: str = "k1", header: dict | None = None, **claim_overrides: Any) -> str:
    with warnings.catch_warnings():  # joserfc warns that EdDSA is deprecated (RFC 9864); KrakenD still offers it
        warnings.simplefilter("ignore")
        return jwt.encode(
            {"alg": alg, "kid": kid, **(header or {})},
            claims(**claim_overrides),
            private_key(alg, kid),
            algorithms=ALL_ALGS,
        )


def raw_token(header: dict, payload: dict | bytes, signature: bytes = b"sig") -> str:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return f"{b64(orjson.dumps(header))}.{b64(body)}.{b64(signature)}"


def unsigned(kid: str = "k1", **claim_overrides: Any) -> str:
    """alg "none", empty signature."""
    return f"{b64(orjson.dumps({'alg': 'none', 'kid': kid}))}.{b64(orjson.dumps(claims(**claim_overrides)))}."


def hs256_with_public_key(kid: str = "k1") -> str:
    """The classic alg confusion: HS256 signed with the RSA public key's PEM as the HMAC secret."""
    pem = private_key("RS256", kid).as_pem(private=False)
    signing_input = f"{b64(orjson.dumps({'alg': 'HS256', 'kid': kid}))}.{b64(orjson.dumps(claims()))}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def tls_files(directory: Path) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files; and the server key's pin as
    KrakenD's jwk_fingerprints hold it (base64url SHA-256 of the SubjectPublicKeyInfo, padded)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lambdagate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(pem))
    files["cert"].write_bytes(server.public_bytes(pem))
    files["key"].write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    spki = server_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        **{k: str(v) for k, v in files.items()},
        "pin": base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).decode(),
    }
