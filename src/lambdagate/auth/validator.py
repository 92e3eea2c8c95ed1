"""The `auth/validator` guard: an endpoint's JWT check, with KrakenD's order of checks and statuses.

A request meets, in order: the token (`Authorization: Bearer`, else the `cookie_key` cookie) → its `alg` (must be
the configured one, so `none` or a key of another type never verifies) → its key → the signature → the registered
claims (401 for any of these) → roles → scopes (403) → the claims the backends need (403 if missing). Then the
claims travel on: `propagate_claims` headers, `{JWT.claim}` in url_patterns, and API Gateway events.

The reply says nothing about why unless `operation_debug`; the log says why (never the token). Anything
unexpected while checking a token refuses it: this guard fails closed, never open and never with a 500.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from lambdagate.auth.config import NAMESPACE, ValidatorConfig
from lambdagate.auth.jwks import (
    FETCH_TIMEOUT,
    JwksFetcher,
    KeySource,
    NoKeySet,
    RemoteSettings,
    UnknownKey,
    import_key_set,
    jws_algorithm,
)
from lambdagate.auth.tokens import Compact, Registered, TokenError, claim_at, claim_list, claim_text, words
from lambdagate.config.model import JWT_PLACEHOLDER_RE
from lambdagate.front import Exchange, Handler, Reply, Step
from lambdagate.front.request import unsafe_param
from lambdagate.pipeline.render import CONTROL_CHARS, json_reply

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.stack import StepContext

log = logging.getLogger("lambdagate.jwt")
_CHALLENGE = (b"www-authenticate", b"Bearer")
_ERRORS = {401: "unauthorized", 403: "forbidden", 503: "token validation unavailable"}
_REPLIES = {
    401: json_reply(401, {"error": _ERRORS[401]}, [_CHALLENGE]),
    403: json_reply(403, {"error": _ERRORS[403]}),
    503: json_reply(503, {"error": _ERRORS[503]}, [(b"retry-after", b"10")]),
}


class Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def cookie_value(header: str, name: str) -> str | None:
    """The first cookie `name` of a Cookie header, as Go's Request.Cookie reads it (quotes removed)."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            value = value.strip()
            return value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
    return None


class Validator:
    """One endpoint's validator, built at start-up; `check` runs per request."""

    def __init__(self, cfg: ValidatorConfig, source: KeySource, timeout: float, url_claims: tuple[str, ...]) -> None:
        self.source = source
        self.alg_name = cfg.alg
        self.alg = jws_algorithm(cfg.alg)
        self.header_name = cfg.auth_header_name.lower().encode("latin-1")
        self.cookie = cfg.cookie_key
        self.issuer = cfg.issuer
        self.audience = tuple(cfg.audience)
        self.leeway = cfg.leeway
        self.roles = tuple(cfg.roles)
        self.roles_key, self.roles_nested = cfg.roles_key, cfg.roles_key_is_nested
        self.scopes = tuple(cfg.scopes)
        self.scopes_key, self.all_scopes = cfg.scopes_key, cfg.scopes_matcher == "all"
        self.propagate = tuple((claim, header.lower()) for claim, header in cfg.propagate_claims)
        self.preserve_array = cfg.propagate_claims_preserve_array
        self.url_claims = url_claims
        self.debug = cfg.operation_debug
        self.wait = min(FETCH_TIMEOUT, timeout)  # for a key set fetch, within the endpoint's own timeout

    def token_of(self, headers: list[tuple[bytes, bytes]]) -> str:
        """The token: the auth header's (with or without "Bearer "), else the cookie's. KrakenD reads the cookie
        only when the header holds nothing."""
        cookies = []
        for name, value in headers:
            if name == self.header_name:
                raw = value.decode("latin-1").strip()
                if len(raw) > 7 and raw[:7].lower() == "bearer ":
                    raw = raw[7:].strip()
                if raw:
                    return raw
            elif name == b"cookie":
                cookies.append(value)
        for header in cookies:
            found = cookie_value(header.decode("latin-1"), self.cookie)
            if found is not None:
                return found
        raise Refusal(401, "no token")

    async def check(self, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        """The token's claims once every rule holds; raises Refusal otherwise."""
        token = self.token_of(headers)
        source = self.source
        hit = source.cache.entries.get(token)
        fresh = hit is None or hit[0] != self.alg_name or not source.serves(time.monotonic())
        try:
            if fresh:
                claims = await self._verified(token)
                registered = Registered(claims)
            else:
                _, claims, registered = hit
            registered.check(self.issuer, self.audience, self.leeway, time.time())
        except TokenError as exc:
            if not fresh:
                source.cache.drop(token)
            raise Refusal(401, str(exc)) from None
        if fresh:
            source.cache.put(token, self.alg_name, claims, registered)
        self._authorize(claims)
        return claims

    async def _verified(self, token: str) -> dict[str, Any]:
        """The claims of a token whose alg, key and signature are right."""
        try:
            jws = Compact(token)
            alg = jws.text_header("alg")
            if alg != self.alg_name:
                raise TokenError(f"alg {alg!r:.20} is not the configured {self.alg_name}")
            kid = jws.key_id(self.source.strategy)
        except TokenError as exc:
            raise Refusal(401, str(exc)) from None
        try:
            key = await self.source.find(kid, self.wait)
        except NoKeySet:
            raise Refusal(503, f"no usable key set from {self.source.name}") from None
        except UnknownKey:
            raise Refusal(401, "no key with the token's key id") from None
        try:
            self.alg.check_key(key)
        except Exception:
            raise Refusal(401, f"the token's key is not a {self.alg_name} key") from None
        try:
            valid = self.alg.verify(jws.signing_input, jws.signature, key)
        except Exception:
            valid = False
        if not valid:
            raise Refusal(401, "invalid signature")
        return jws.claims()  # a TokenError here refuses the token (check)

    def _authorize(self, claims: dict[str, Any]) -> None:
        if self.roles:
            found, value = claim_at(claims, self.roles_key, self.roles_nested)
            held = words(value) if found else None
            if not held or not any(role in held for role in self.roles):
                raise Refusal(403, f"none of the roles required in {self.roles_key!r}")
        if self.scopes:
            found, value = claim_at(claims, self.scopes_key, True)
            held = words(value) if found else None
            match = all if self.all_scopes else any
            if not held or not match(scope in held for scope in self.scopes):
                raise Refusal(
                    403, f"{'not all' if self.all_scopes else 'none'} of the scopes required in {self.scopes_key!r}"
                )
        for name in self.url_claims:
            found, value = claim_at(claims, name, True)
            if not found or unsafe_param(claim_text(value), False):
                raise Refusal(403, f"claim {name!r} cannot fill the backend URL (missing, or not one path segment)")

    def headers_for(self, claims: dict[str, Any]) -> dict[str, str]:
        """propagate_claims: a missing claim sets its header empty, as KrakenD (a client's own value never
        passes for a claim)."""
        out = {}
        for key, header in self.propagate:
            found, value = claim_at(claims, key, True)
            if not found:
                text = ""
            elif self.preserve_array:
                text = ", ".join(claim_list(value))
            else:
                text = claim_text(value)
            if CONTROL_CHARS.search(text):
                raise Refusal(403, f"claim {key!r} holds a control character and cannot be a header")
            out[header] = text
        return out

    def reply(self, refusal: Refusal) -> Reply:
        if not self.debug:
            return _REPLIES[refusal.status]
        extra = [_CHALLENGE] if refusal.status == 401 else []
        return json_reply(refusal.status, {"error": _ERRORS[refusal.status], "reason": refusal.reason}, extra)


def guarding(validator: Validator, route: str) -> Step:
    def step(handler: Handler) -> Handler:
        async def guard(ex: Exchange) -> Reply:
            try:
                claims = await validator.check(ex.scope["headers"])
                headers = validator.headers_for(claims) if validator.propagate else None
            except Refusal as refusal:
                log.info(
                    "%s: token refused (%d): %s request_id=%s", route, refusal.status, refusal.reason, ex.request_id
                )
                return validator.reply(refusal)
            ex.claims = claims
            if headers:
                ex.backend_headers = {**ex.backend_headers, **headers} if ex.backend_headers else headers
            return await handler(ex)

        return guard

    return step


async def key_source(cfg: ValidatorConfig, resources: Resources) -> KeySource:
    """The worker's source for this config's key set: shared by the endpoints naming the same set."""
    if cfg.jwk_local_path:
        ident: Any = (NAMESPACE, "file", cfg.jwk_local_path, cfg.key_identify_strategy)
        source = resources.shared.get(ident)
        if source is None:
            keys = import_key_set(cfg.local_keys, cfg.key_identify_strategy)
            source = resources.shared[ident] = KeySource(cfg.jwk_local_path, cfg.key_identify_strategy, keys=keys)
        return source
    settings = RemoteSettings(cfg.jwk_url, cfg.jwk_local_ca, cfg.disable_jwk_security, cfg.pins)
    ident = (NAMESPACE, "url", settings, cfg.key_identify_strategy)
    source = resources.shared.get(ident)
    if source is None:
        fetcher = JwksFetcher(settings, resources.client)
        source = resources.shared[ident] = KeySource(
            _shown(cfg.jwk_url), cfg.key_identify_strategy, fetch=fetcher, lifetime=cfg.key_lifetime
        )
        resources.on_close(source.close)
    source.shorten(cfg.key_lifetime)
    source.cooldown = max(source.cooldown, cfg.failed_jwk_key_cooldown)
    await source.start()
    return source


def _shown(url: str) -> str:
    """A URL as logs show it: no credentials, no query (either may hold secrets)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{path.partition('?')[0]}"


async def jwt_validation(ctx: StepContext) -> Step | None:
    """The step factory (lambdagate.stack.ENDPOINT_GUARDS): None when the endpoint validates no token."""
    endpoint = ctx.endpoint
    cfg = endpoint.namespaces.get(NAMESPACE) if endpoint is not None else None
    if not isinstance(cfg, ValidatorConfig):
        return None
    source = await key_source(cfg, ctx.resources)
    url_claims = tuple(
        dict.fromkeys(name for backend in endpoint.backend for name in JWT_PLACEHOLDER_RE.findall(backend.url_pattern))
    )
    timeout = endpoint.timeout or ctx.service.timeout
    return guarding(Validator(cfg, source, timeout, url_claims), f"{endpoint.method} {endpoint.endpoint}")
