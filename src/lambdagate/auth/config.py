"""`auth/validator`: the JWT validator's config (KrakenD's field names and defaults), checked once at load time.

```json
"extra_config": {"auth/validator": {"alg": "RS256", "jwk_url": "https://idp.example.com/.well-known/jwks.json",
                                    "audience": ["api"], "issuer": "https://idp.example.com/", "cache": true}}
```
Read at the endpoint level. At the service level KrakenD reads only `shared_cache_duration`; validator fields
there protect nothing, so they refuse the config (fail closed) unless `--allow-unsupported auth/validator`.
KrakenD reads JSON keys case-insensitively (Go's encoding/json): so does this, or `"Issuer"` would be ignored
here while KrakenD checks it. The legacy name `github.com/devopsfaith/krakend-jose/validator` reads the same.
"""

from __future__ import annotations

import base64
import binascii
import ssl
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from lambdagate.auth.jwks import ALGORITHMS, MAX_JWKS_BYTES, KeySetError, import_key_set, jws_algorithm
from lambdagate.config import files
from lambdagate.config.durations import Duration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.front.request import NEVER_FORWARD

NAMESPACE = "auth/validator"
LEGACY_NAMES = ("github.com/devopsfaith/krakend-jose/validator",)
DEFAULT_CACHE_SECONDS = 900  # KrakenD's, when "cache": true and no cache_duration
JWK_FILE = "a JSON file with a JWK set"
_EXAMPLE = '{"alg": "RS256", "jwk_url": "https://idp.example.com/.well-known/jwks.json", "cache": true}'
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# KrakenD reads "" as "not set" for these: what they mean then.
_EMPTY_MEANS = {
    "roles_key": "roles",
    "cookie_key": "access_token",
    "auth_header_name": "Authorization",
    "key_identify_strategy": "kid",
    "leeway": "1s",
    "failed_jwk_key_cooldown": "0s",
}
# Accepted and read by KrakenD, but not here (reported as ignored).
_IGNORED = {"cipher_suites": "TLS cipher suites are Python's defaults (TLS 1.2 or later)"}
# Refused: without them the key file cannot be read.
_REFUSED = {
    "secret_url": "encrypted key files (secret_url, cypher_key) are not supported: give a plain JWK set "
    "in jwk_local_path",
    "cypher_key": "encrypted key files (secret_url, cypher_key) are not supported: give a plain JWK set "
    "in jwk_local_path",
}


class ValidatorConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    alg: Literal[ALGORITHMS] = "RS256"  # type: ignore[valid-type] - KrakenD's documented default
    jwk_url: StrictStr = ""
    jwk_local_path: StrictStr = ""
    jwk_local_ca: StrictStr = ""
    disable_jwk_security: StrictBool = False
    jwk_fingerprints: list[StrictStr] = Field(default_factory=list)
    cache: StrictBool = False
    cache_duration: StrictInt = Field(default=0, ge=0, le=2**32 - 1)  # seconds
    audience: list[StrictStr] = Field(default_factory=list)
    issuer: StrictStr = ""
    roles_key: StrictStr = "roles"
    roles_key_is_nested: StrictBool = False
    roles: list[StrictStr] = Field(default_factory=list)
    scopes_key: StrictStr = ""
    scopes: list[StrictStr] = Field(default_factory=list)
    scopes_matcher: Literal["any", "all"] = "any"
    cookie_key: StrictStr = "access_token"
    auth_header_name: StrictStr = "Authorization"
    # [claim, header] pairs; the example is what a "not a list" error shows (config/shapes.py)
    propagate_claims: list[list[StrictStr]] = Field(default_factory=list, examples=[[["sub", "X-User"]]])
    propagate_claims_preserve_array: StrictBool = False
    key_identify_strategy: Literal["kid", "x5t", "kid_x5t", "x5t#S256"] = "kid"
    operation_debug: StrictBool = False
    leeway: Duration = 1.0
    failed_jwk_key_cooldown: Duration = 0.0
    cipher_suites: list[StrictInt] = Field(default_factory=list)

    # Filled in by parse(): the decoded pins, and the local key file's bytes (read once, at load time; they may
    # hold HMAC secrets, so they are kept out of repr and dumps).
    pins: tuple[bytes, ...] = ()
    local_keys: bytes = Field(default=b"", repr=False, exclude=True)

    @field_validator(*_EMPTY_MEANS, mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info) -> Any:
        return _EMPTY_MEANS[info.field_name] if value == "" else value  # KrakenD: "" is "not set" for these

    @field_validator("leeway")
    @classmethod
    def _at_least_a_second(cls, value: float) -> float:
        return max(value, 1.0)  # go-auth0 never uses less than one second

    @property
    def key_lifetime(self) -> float:
        """How long a fetched key set is used: cache_duration with "cache": true, else a minute (KrakenD fetches
        the set on every request without cache: see the README for why lambdagate does not)."""
        if self.cache:
            return float(self.cache_duration or DEFAULT_CACHE_SECONDS)
        return 60.0


class SharedCacheConfig(BaseModel):
    """The service-level `auth/validator`: KrakenD's key cache shared by endpoints. Key sets are always shared
    by the endpoints of a worker here, so the duration is accepted and has no effect."""

    model_config = ConfigDict(extra="allow")

    shared_cache_duration: StrictInt = Field(default=0, ge=0)


def _fields_case_insensitively(value: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """Keys spelled with other cases mapped onto their field, as Go's encoding/json does. Raises when one field
    is given twice."""
    by_lower = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    issues = []
    for key, item in value.items():
        name = key if key in fields else by_lower.get(key.lower(), key)
        if name in out:
            issues.append((key, f'"{name}" is given twice (KrakenD reads keys case-insensitively): keep one'))
        out[name] = item
    if issues:
        raise NamespaceError(issues)
    return out


def _hint_misspelled(ctx: NamespaceContext, fields: set[str]) -> None:
    """ "jwk-url" is no field, for KrakenD either: say which one was meant."""
    by_plain = {f.replace("_", ""): f for f in fields}
    for i, (key, message) in enumerate(ctx.warnings):
        meant = by_plain.get(key.lower().replace("-", "").replace("_", ""))
        if meant and message == "not supported, ignored":
            ctx.warnings[i] = (key, f'not supported, ignored: did you mean "{meant}"? (KrakenD ignores it too)')


def parse(value: Any, ctx: NamespaceContext) -> ValidatorConfig | SharedCacheConfig:
    if ctx.endpoint is None:
        return _parse_service_level(value, ctx)
    fields = set(ValidatorConfig.model_fields) - {"pins", "local_keys"}
    if isinstance(value, dict):
        value = {k: v for k, v in _fields_case_insensitively(value, fields).items() if k not in ("pins", "local_keys")}
    cfg = parse_namespace_model(
        ValidatorConfig,
        value,
        ctx,
        _EXAMPLE,
        hints={
            "alg": f"must be one of {', '.join(ALGORITHMS)} (never none)",
            "key_identify_strategy": 'must be "kid", "x5t", "kid_x5t" or "x5t#S256"',
            "scopes_matcher": 'must be "any" or "all"',
        },
    )
    _hint_misspelled(ctx, fields)
    issues: list[tuple[str, str]] = []
    for key, why in _REFUSED.items():
        if key in (cfg.model_extra or {}):
            issues.append((key, why))
    for key, why in _IGNORED.items():
        if key in value:
            ctx.warnings.append((key, f"accepted and ignored: {why}"))
    _check_key_source(cfg, ctx, issues)
    _check_claim_rules(cfg, issues)
    if issues:
        raise NamespaceError(issues)
    return cfg


def _parse_service_level(value: Any, ctx: NamespaceContext) -> SharedCacheConfig:
    if isinstance(value, dict) and set(value) - {"shared_cache_duration"} - {k for k in value if k.startswith("@")}:
        fields = sorted(set(value) & set(ValidatorConfig.model_fields)) or sorted(value)
        message = (
            f"at the service level KrakenD reads only shared_cache_duration, so {', '.join(fields)} protect "
            "no endpoint here; move the validator to each endpoint's extra_config"
        )
        if NAMESPACE not in ctx.options.allow_unsupported:
            raise NamespaceError(
                [("", f"{message}, or start with `--allow-unsupported {NAMESPACE}` to serve the endpoints without it")]
            )
        ctx.warnings.append(
            ("", f"{message}; ignored: the endpoints are served WITHOUT it (--allow-unsupported {NAMESPACE})")
        )
        value = {k: v for k, v in value.items() if k == "shared_cache_duration"}
    return parse_namespace_model(SharedCacheConfig, value, ctx, '{"shared_cache_duration": 900}')


def _check_key_source(cfg: ValidatorConfig, ctx: NamespaceContext, issues: list[tuple[str, str]]) -> None:
    if bool(cfg.jwk_url) == bool(cfg.jwk_local_path):
        given = "both are" if cfg.jwk_url else "neither is"
        near = [k for k in cfg.model_extra or {} if k.lower().replace("-", "_") in ("jwk_url", "jwk_local_path")]
        hint = f' ("{near[0]}" is no field, for KrakenD either)' if near and not cfg.jwk_url else ""
        issues.append(
            (
                "",
                f'give exactly one of "jwk_url" (a JWK set served over HTTPS) or "jwk_local_path" (a JWK '
                f"set file); {given} given{hint}",
            )
        )
        return
    if cfg.jwk_local_path:
        _read_local_keys(cfg, issues)
        if cfg.cache:
            ctx.warnings.append(("cache", "applies to jwk_url only; a local key file is read once"))
        return
    if not cfg.jwk_url.startswith(("https://", "http://")):
        issues.append(
            (
                "jwk_url",
                f'{cfg.jwk_url!r} is not an http(s) URL: write it like "https://idp.example.com/.well-known/jwks.json"',
            )
        )
        return
    https = cfg.jwk_url.startswith("https://")
    if not https and not cfg.disable_jwk_security:
        issues.append(
            (
                "jwk_url",
                f"{cfg.jwk_url!r} is plain HTTP, so the keys could be replaced on the way: use "
                'https, or set "disable_jwk_security": true',
            )
        )
    _check_tls_trust(cfg, https, issues)
    if cfg.cache_duration and not cfg.cache:
        ctx.warnings.append(
            (
                "cache_duration",
                'read only with "cache": true (as in KrakenD); the key set is fetched again every minute',
            )
        )


def _check_tls_trust(cfg: ValidatorConfig, https: bool, issues: list[tuple[str, str]]) -> None:
    cfg.pins = tls_trust(cfg.jwk_fingerprints, cfg.jwk_local_ca, https, issues)


def tls_trust(fingerprints: list[str], local_ca: str, https: bool, issues: list[tuple[str, str]]) -> tuple[bytes, ...]:
    """`jwk_fingerprints` decoded into pins, and `jwk_local_ca` checked: what a key server's TLS must show (the
    validator's and the signer's `jwk_url`)."""
    pins = []
    for i, text in enumerate(fingerprints):
        try:
            pin = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            pin = b""
        if len(pin) != 32:
            issues.append(
                (
                    f"jwk_fingerprints[{i}]",
                    "must be the base64url SHA-256 of a certificate's public key (32 bytes), as KrakenD reads it",
                )
            )
        pins.append(pin)
    if (pins or local_ca) and not https:
        issues.append(("jwk_url", "jwk_fingerprints and jwk_local_ca check a TLS server: jwk_url must be https"))
    if local_ca:
        try:
            ssl.create_default_context().load_verify_locations(cafile=local_ca)
        except ssl.SSLError as exc:  # an OSError too: first
            issues.append(("jwk_local_ca", f"cannot read {local_ca!r} as PEM CA certificates ({exc.reason or exc})"))
        except OSError as exc:
            issues.append(("jwk_local_ca", files.unreadable(local_ca, exc, files.CA_FILE)))
        except ValueError as exc:
            issues.append(("jwk_local_ca", f"cannot read {local_ca!r} as PEM CA certificates ({exc})"))
    return tuple(pins)


def _read_local_keys(cfg: ValidatorConfig, issues: list[tuple[str, str]]) -> None:
    try:
        with open(cfg.jwk_local_path, "rb") as f:
            data = f.read(MAX_JWKS_BYTES + 1)  # import_key_set refuses a larger set
    except OSError as exc:
        issues.append(("jwk_local_path", files.unreadable(cfg.jwk_local_path, exc, JWK_FILE)))
        return
    try:
        keys = import_key_set(data, cfg.key_identify_strategy)
    except KeySetError as exc:
        issues.append(("jwk_local_path", f"{cfg.jwk_local_path!r}: {exc}"))
        return
    alg = jws_algorithm(cfg.alg)
    if not any(keys.fits(kid, alg) for kid in keys.keys):
        issues.append(("jwk_local_path", f"{cfg.jwk_local_path!r} has no key for {cfg.alg}"))
    cfg.local_keys = data


def _check_claim_rules(cfg: ValidatorConfig, issues: list[tuple[str, str]]) -> None:
    if cfg.scopes and not cfg.scopes_key:
        # KrakenD skips the scope check without scopes_key: a silent no-op of a guard, refused here.
        issues.append(("scopes", 'needs "scopes_key", the claim holding the scopes (e.g. "scope")'))
    if cfg.scopes_key and not cfg.scopes:
        issues.append(("scopes_key", 'without "scopes" no scope is checked: add the scopes required'))
    for i, pair in enumerate(cfg.propagate_claims):
        where = f"propagate_claims[{i}]"
        if len(pair) != 2 or not pair[0]:
            issues.append((where, 'must be a pair ["claim", "Header-Name"], e.g. ["sub", "X-User"]'))
            continue
        header = pair[1].lower()
        if not header or not set(header) <= _TOKEN_CHARS:
            issues.append((where, f"{pair[1]!r} is not a header name"))
        elif header.encode("latin-1") in NEVER_FORWARD:
            issues.append(
                (where, f"{pair[1]} is set by the gateway itself and cannot carry a claim: choose another header")
            )
    header = cfg.auth_header_name
    if not set(header) <= _TOKEN_CHARS:
        issues.append(("auth_header_name", f"{header!r} is not a header name"))


VALIDATOR_NAMESPACE = Namespace(NAMESPACE, "endpoint", parse, aliases=LEGACY_NAMES, other_scopes=("service",))
