"""Signing keys and JWS signing for `auth/signer`: the private key a `kid` names in a JWK set, and tokens signed
with it (joserfc underneath, the same library as `auth/validator`).

A key set comes from a file (read when the config is loaded) or from a URL (fetched when the worker starts, over
HTTPS unless `disable_jwk_security`). Either way the key is checked once, by signing a probe with the configured
algorithm, so a public key, a key of another type, or a key made for another algorithm is refused before any
request. Keys never come from a request or a backend's reply.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import warnings
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws
from joserfc.jwk import import_key
from joserfc.jws import JWSRegistry
from yarl import URL

from lambdagate.auth.jwks import FETCH_TIMEOUT, MAX_JWKS_BYTES, KeySetError, fetch_key_set
from lambdagate.client.base import HttpClient


class SigningKeyError(Exception):
    """A signing key could not be loaded; the message says why, without key material."""


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _kid(entry: Any) -> str | None:
    kid = entry.get("kid", "") if isinstance(entry, dict) else None
    return kid if isinstance(kid, str) else None


def pick_key(data: bytes, kid: str, alg: str) -> tuple[Any, list[str]]:
    """The private key with this `kid` (a key without one when `kid` is "", as KrakenD looks it up) in a JWK set,
    checked by signing a probe with `alg`; and what joserfc warned about it (e.g. a short HMAC key)."""
    if len(data) > MAX_JWKS_BYTES:
        raise SigningKeyError(f"the JWK set is larger than {MAX_JWKS_BYTES} bytes")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise SigningKeyError("the JWK set is not JSON") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise SigningKeyError('not a JWK set: expected {"keys": [...]}')
    found = [entry for entry in entries if _kid(entry) == kid]
    if len(found) != 1:
        kids = sorted({k for k in map(_kid, entries) if k is not None})
        listed = ", ".join(repr(k) for k in kids[:10]) + (", ..." if len(kids) > 10 else "")
        which = "no key has" if not found else f"{len(found)} keys have"
        raise SigningKeyError(f"{which} kid {kid!r}, one is needed (kids in the set: {listed or 'none'})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            key = import_key(found[0])
        except Exception as exc:
            raise SigningKeyError(f"key {kid!r} cannot be imported ({type(exc).__name__}: {exc})") from None
        if not key.is_private:
            raise SigningKeyError(f"key {kid!r} is a public key: signing needs the private one")
        try:  # every check joserfc applies before signing (key type, curve, "use", "alg", "key_ops")
            jws.serialize_compact({"alg": alg}, b"{}", key, algorithms=[alg])
        except Exception as exc:
            raise SigningKeyError(f"key {kid!r} cannot sign {alg} ({exc})") from None
    return key, sorted({str(w.message) for w in caught})


class TokenSigner:
    """Signs a JSON object into a JWS: compact (`header.payload.signature`), or KrakenD's `full` serialization (the
    flattened JSON form, as a string). The protected header is encoded once."""

    __slots__ = ("_key", "_algorithm", "_protected", "_full")

    def __init__(self, key: Any, alg: str, kid: str, typ: str, full: bool) -> None:
        header = {"alg": alg, **({"kid": kid} if kid else {}), **({"typ": typ} if typ else {})}
        self._key = key
        self._algorithm = JWSRegistry.algorithms[alg]
        self._protected = _b64(orjson.dumps(header))
        self._full = full

    def sign(self, claims: dict[str, Any]) -> str:
        """Raises orjson.JSONEncodeError for what JSON cannot hold, or the key's error (none is expected: the key
        signed a probe at start-up)."""
        payload = _b64(orjson.dumps(claims))
        signature = _b64(self._algorithm.sign(self._protected + b"." + payload, self._key))
        if self._full:
            return orjson.dumps(
                {"payload": payload.decode(), "protected": self._protected.decode(), "signature": signature.decode()}
            ).decode()
        return b".".join((self._protected, payload, signature)).decode()


@dataclass(frozen=True)
class RemoteSet:
    """Where a JWK set is fetched from, and how its server is trusted."""

    url: str
    insecure: bool = False  # disable_jwk_security: plain HTTP allowed and certificates not verified, as KrakenD
    local_ca: str = ""  # jwk_local_ca: a PEM file of CA certificates trusted besides the system's
    pins: tuple[bytes, ...] = ()  # jwk_fingerprints: SHA-256 of the server certificate's public key

    @property
    def name(self) -> str:
        """The URL for logs: no credentials, no query."""
        return str(URL(self.url).with_user(None).with_query(None).with_fragment(None))


async def fetch_set(remote: RemoteSet, client: HttpClient, context: ssl.SSLContext) -> bytes:
    """GET the JWK set through the worker's client with the validator's TLS rules (`context`: tls_context(remote)):
    bounded in time and size; never redirected from HTTPS to plain HTTP."""
    try:
        async with asyncio.timeout(FETCH_TIMEOUT):
            return await fetch_key_set(client, remote.url, context, accept_json=False)
    except KeySetError as exc:
        raise SigningKeyError(str(exc)) from None
