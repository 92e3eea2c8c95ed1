"""Compact JWS tokens: bounded parsing, and the claim rules of KrakenD's validator (go-jose's).

A token is parsed without trusting any of it: its size is bounded before anything is decoded, base64url is strict,
header and payload must be JSON objects, and the payload is decoded only once the signature is verified (so a
forged token's payload, JSON bomb or not, is never parsed). Registered claims are checked as go-jose does:
`exp`, `nbf` and `iat` with leeway, every configured audience, the issuer, and JSON types.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

import orjson

# Larger tokens are refused before any decoding (KrakenD has no limit but the header size).
MAX_TOKEN_BYTES = 8192
_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_EPSILON = 1e-6  # as KrakenD: a float claim this close to an integer is written as that integer


class TokenError(Exception):
    """Why a token is refused: for the log (and the reply with operation_debug). Never holds the token."""


def b64url(segment: str) -> bytes:
    """Strict base64url without padding (the caller has checked the alphabet)."""
    if len(segment) % 4 == 1:
        raise TokenError("malformed base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed base64url") from None


def json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)  # orjson refuses nesting deeper than 1024 and numbers beyond 64 bits
    except orjson.JSONDecodeError:
        raise TokenError(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"the {what} is not a JSON object")
    return value


class Compact:
    """A compact JWS split and its header decoded; the payload stays encoded until the signature is checked."""

    __slots__ = ("header", "signing_input", "signature", "payload")

    def __init__(self, token: str) -> None:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError(f"token longer than {MAX_TOKEN_BYTES} bytes")
        match = _COMPACT.fullmatch(token)
        if match is None:
            raise TokenError("not a compact JWS (three base64url segments)")
        header_b64, self.payload, signature_b64 = match.groups()
        self.header = json_object(b64url(header_b64), "header")
        if "crit" in self.header:  # RFC 7515 4.1.11: no extension is understood here, so none may be required
            raise TokenError("the header lists critical extensions")
        self.signature = b64url(signature_b64)
        self.signing_input = token[: match.end(2)].encode("ascii")

    def claims(self) -> dict[str, Any]:
        return json_object(b64url(self.payload), "payload")

    def text_header(self, name: str) -> str | None:
        value = self.header.get(name)
        if value is not None and not isinstance(value, str):
            raise TokenError(f'the header\'s "{name}" is not a string')
        return value

    def key_id(self, strategy: str) -> str:
        """The id of the key that signed the token, by KrakenD's key_identify_strategy."""
        kid = self.text_header("kid") or ""
        if strategy == "kid":
            return kid
        thumbprint = self.text_header("x5t#S256" if strategy == "x5t#S256" else "x5t")
        if strategy == "kid_x5t":
            return kid + (thumbprint if thumbprint is not None else kid)
        return thumbprint if thumbprint is not None else kid


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenError(f'"{name}" is not a number')
    return value


def _text(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise TokenError(f'"{name}" is not a string')
    return value


def audiences(claims: dict[str, Any]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if aud is None:
        return ()
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return tuple(aud)
    raise TokenError('"aud" is neither a string nor a list of strings')


class Registered:
    """A token's registered claims, their JSON types checked once (a cached token is not checked again)."""

    __slots__ = ("iss", "aud", "nbf", "exp", "iat")

    def __init__(self, claims: dict[str, Any]) -> None:
        for name in ("sub", "jti"):
            _text(claims, name)
        self.iss = _text(claims, "iss")
        self.aud = audiences(claims)
        self.nbf, self.exp, self.iat = _number(claims, "nbf"), _number(claims, "exp"), _number(claims, "iat")

    def check(self, issuer: str, audience: tuple[str, ...], leeway: float, now: float) -> None:
        """go-jose's ValidateWithLeeway: issuer, every configured audience, then nbf, exp and iat against `now`."""
        if issuer and self.iss != issuer:
            raise TokenError("wrong issuer")
        if audience and any(a not in self.aud for a in audience):
            raise TokenError("wrong audience")
        if self.nbf is not None and now + leeway < self.nbf:
            raise TokenError("not valid yet (nbf)")
        if self.exp is not None and now - leeway > self.exp:
            raise TokenError("expired")
        if self.iat is not None and now + leeway < self.iat:
            raise TokenError("issued in the future (iat)")


def claim_at(claims: dict[str, Any], key: str, nested: bool) -> tuple[bool, Any]:
    """(found, value) of a claim. `nested`: a dotted key is a path ("realm_access.roles"), unless the whole key is
    a claim itself or is a URL ("https://example.com/roles"), as KrakenD reads namespaced claims."""
    if key in claims:
        return True, claims[key]
    if not nested or "." not in key or key.startswith("http"):
        return False, None
    value: Any = claims
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def go_text(value: Any) -> str:
    """An element of a list claim as Go's %v prints it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "<nil>"
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def claim_text(value: Any) -> str:
    """A claim as one string, as KrakenD writes it into a header or a URL: lists joined with ",", whole numbers
    without decimals, objects as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        rounded = round(value)
        return str(rounded) if abs(value - rounded) <= _EPSILON else f"{value:f}"
    if isinstance(value, list):
        return ",".join(go_text(v) for v in value)
    return str(value)


def claim_list(value: Any) -> list[str]:
    """A claim as a list of strings (KrakenD's propagate_claims_preserve_array)."""
    if isinstance(value, list):
        return [go_text(v) for v in value]
    return [claim_text(value)]


def words(value: Any) -> list[str] | None:
    """Roles or scopes held by a claim: a list's strings, or a space-separated string; None for anything else."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, str):
        return value.split(" ")
    return None


def jwt_params(params: dict[str, str], claims: dict[str, Any] | None, names: tuple[str, ...]) -> dict[str, str]:
    """A request's path parameters plus its claims for `{JWT.name}` url_pattern placeholders (the validator has
    refused tokens that lack them)."""
    out = dict(params)
    for name in names:
        found, value = claim_at(claims or {}, name, True)
        out[f"JWT.{name}"] = claim_text(value) if found else ""
    return out
