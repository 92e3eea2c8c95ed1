"""`security/cors`: Cross-Origin Resource Sharing for the whole service, as KrakenD's krakend-cors (rs/cors).

```json
"extra_config": {"security/cors": {"allow_origins": ["https://app.example.com", "https://*.example.com"],
                                   "allow_methods": ["GET", "POST"], "allow_credentials": true, "max_age": "12h"}}
```
- A preflight (OPTIONS with Access-Control-Request-Method) is answered before routing, for any path: status
  `options_success_status` (204), with the Access-Control-Allow-* headers when its origin, method and headers are
  allowed, and only `Vary` when not. With `options_passthrough` it goes on to the router, and gets the same headers.
- Every other reply, errors included, gets `Vary: Origin`; for an allowed origin and method also
  Access-Control-Allow-Origin, -Expose-Headers and -Allow-Credentials. A backend's own Access-Control-* headers are
  replaced, so a reply never carries two policies.
- Credentials never go with an arbitrary origin: with "*" the reply says "*" and never Allow-Credentials (browsers
  refuse credentials with "*" anyway), and a wildcard origin that could match any site cannot be combined with
  `allow_credentials` (refused at load). Subdomain wildcards such as `https://*.example.com` can.
Everything is computed at start-up; per request the step reads the request headers once.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictInt, StrictStr

from lambdagate.config.durations import parse_duration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.front import Exchange, Handler, Step
from lambdagate.pipeline.render import Reply
from lambdagate.security.fields import canonical_header, header_name_issues

if TYPE_CHECKING:
    from lambdagate.stack import StepContext

NAMESPACE = "security/cors"
# The KrakenD 1.x name, as config/guards.py normalises it (`github_com/…` is read too): applied, with a warning.
LEGACY_NAME = "github.com/devopsfaith/krakend-cors"
log = logging.getLogger("lambdagate")

DEFAULT_METHODS = ("GET", "POST", "HEAD")  # rs/cors's default when allow_methods is empty
DEFAULT_STATUS = 204  # rs/cors's, which KrakenD CE keeps
# Access-Control-Request-Headers longer than this are refused (browsers send a short, sorted list of names).
MAX_REQUEST_HEADERS = 4096
# A wildcard's part after "*" that pins it to one domain: "https://*.example.com" cannot match another site.
# What no origin holds (a browser sends scheme://host[:port]): such an entry never matches (e.g. an unrendered
# template such as "https://{{ env "HOST" }}").
_NOT_IN_ORIGINS = re.compile(r"[^A-Za-z0-9.:/\[\]*-]")
_DOMAIN_SUFFIX = re.compile(r"\.[a-z0-9-]+(\.[a-z0-9-]+)+(:\d{1,5})?")

VARY_ORIGIN = (b"vary", b"Origin")
ALLOW_ORIGIN = b"access-control-allow-origin"
ALLOW_CREDENTIALS = (b"access-control-allow-credentials", b"true")
ALLOW_PRIVATE_NETWORK = (b"access-control-allow-private-network", b"true")
CORS_PREFIX = b"access-control-"
CORS_END = b"access-control."  # the first name after every name that starts with CORS_PREFIX ("." follows "-")


class CorsOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    allow_origins: list[StrictStr] = Field(default_factory=list)  # empty: "*"
    allow_methods: list[StrictStr] = Field(default_factory=list)  # empty: GET, POST, HEAD
    allow_headers: list[StrictStr] = Field(default_factory=list)  # empty: "*"
    expose_headers: list[StrictStr] = Field(default_factory=list)
    allow_credentials: StrictBool = False
    allow_private_network: StrictBool = False
    options_passthrough: StrictBool = False
    options_success_status: StrictInt = 0  # 0: 204
    max_age: StrictStr | None = None  # a duration, e.g. "12h"
    debug: StrictBool = False
    _max_age_s: float = PrivateAttr(default=0.0)


def parse(value: Any, ctx: NamespaceContext) -> CorsOptions:
    opts = parse_namespace_model(CorsOptions, value, ctx, '{"allow_origins": ["https://app.example.com"]}')
    issues = [
        *_origin_issues(opts, ctx.warnings),
        *header_name_issues("allow_headers", opts.allow_headers),
        *header_name_issues("expose_headers", opts.expose_headers),
        *header_name_issues("allow_methods", opts.allow_methods),
    ]
    for i, method in enumerate(opts.allow_methods):
        if method != method.upper():
            ctx.warnings.append(
                (
                    f"allow_methods[{i}]",
                    f"matched as written, case-sensitively: browsers send "
                    f"standard methods uppercase, write {method.upper()!r}",
                )
            )
    if opts.max_age is not None:
        try:
            opts._max_age_s = parse_duration(opts.max_age)
        except ValueError as exc:  # KrakenD ignores it too (and sends no Access-Control-Max-Age)
            ctx.warnings.append(("max_age", f"{exc}; ignored, as KrakenD does"))
    status = opts.options_success_status
    if status and not 200 <= status <= 299:
        issues.append(
            (
                "options_success_status",
                f"a preflight needs a 2xx status (browsers refuse others), e.g. 204 or 200, got {status}",
            )
        )
    if issues:
        raise NamespaceError(issues)
    return opts


def _origin_issues(opts: CorsOptions, warnings: list[tuple[str, str]]) -> list[tuple[str, str]]:
    issues = []
    origins = opts.allow_origins
    if opts.allow_credentials and (not origins or "*" in origins):
        warnings.append(
            (
                "allow_credentials",
                'with allow_origins "*" browsers refuse credentialed requests (they '
                "need the origin named), and lambdagate sends no Access-Control-"
                "Allow-Credentials: list the origins that may send credentials",
            )
        )
    for i, origin in enumerate(origins):
        path = f"allow_origins[{i}]"
        if origin.count("*") > 1:
            issues.append((path, f'{origin!r}: at most one "*" per origin, e.g. "https://*.example.com"'))
        elif origin != "*" and "*" in origin:
            if opts.allow_credentials and not _DOMAIN_SUFFIX.fullmatch(origin.lower().partition("*")[2]):
                issues.append(
                    (
                        path,
                        f"{origin!r} can match any site, which allow_credentials would let read "
                        "replies with its users' cookies: list the origins, use a subdomain "
                        'wildcard such as "https://*.example.com", or set allow_credentials false',
                    )
                )
        elif origin not in ("*", "null") and (
            "://" not in origin or origin.endswith("/") or _NOT_IN_ORIGINS.search(origin)
        ):
            warnings.append(
                (
                    path,
                    f"{origin!r} never matches: a browser sends an origin as scheme://host[:port], "
                    'without a path, e.g. "https://app.example.com"',
                )
            )
    return issues


CORS_NAMESPACE = Namespace(NAMESPACE, "service", parse, aliases=(LEGACY_NAME,))


class CorsPolicy:
    """The options, precomputed: origin and method sets, and the header lists that never change."""

    def __init__(self, opts: CorsOptions) -> None:
        origins = [o.lower() for o in opts.allow_origins] or ["*"]
        self.any_origin = "*" in origins
        self.origins = frozenset(o.encode() for o in origins if "*" not in o)
        self.wildcards = (
            ()
            if self.any_origin
            else tuple((p.encode(), s.encode()) for p, _, s in (o.partition("*") for o in origins if "*" in o))
        )
        methods = opts.allow_methods or DEFAULT_METHODS
        self.methods = frozenset((*methods, "OPTIONS"))  # rs/cors always allows OPTIONS
        self.request_methods = frozenset(m.encode() for m in self.methods)
        headers = [h.lower() for h in opts.allow_headers] or ["*"]
        self.any_header = "*" in headers
        self.headers = frozenset(h.encode() for h in headers)
        credentials = opts.allow_credentials and not self.any_origin
        self.private_network = opts.allow_private_network
        self.passthrough = opts.options_passthrough
        self.status = opts.options_success_status or DEFAULT_STATUS
        self.debug = opts.debug
        vary = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        self.preflight_vary = (
            b"vary",
            vary + b", Access-Control-Request-Private-Network" if self.private_network else vary,
        )
        # rs/cors: whole seconds, and none for 0 (the browser's default then applies).
        max_age = int(opts._max_age_s)
        self.preflight_tail = ([ALLOW_CREDENTIALS] if credentials else []) + (
            [(b"access-control-max-age", str(max_age).encode())] if max_age > 0 else []
        )
        expose = (
            [(b"access-control-expose-headers", ", ".join(canonical_header(h) for h in opts.expose_headers).encode())]
            if opts.expose_headers
            else []
        )
        self.actual_any = [VARY_ORIGIN, (ALLOW_ORIGIN, b"*"), *expose]
        self.actual_tail = [*expose, *([ALLOW_CREDENTIALS] if credentials else [])]
        # The listed origins' headers, built once: browsers send an origin as it is listed (lowercase).
        self.actual_listed = {o: [VARY_ORIGIN, (ALLOW_ORIGIN, o), *self.actual_tail] for o in self.origins}

    def origin_allowed(self, origin: bytes) -> bool:
        if self.any_origin:
            return True
        origin = origin.lower()
        if origin in self.origins:
            return True
        return any(
            len(origin) >= len(p) + len(s) and origin.startswith(p) and origin.endswith(s) for p, s in self.wildcards
        )

    def headers_allowed(self, requested: bytes | None) -> bool:
        """Every name in Access-Control-Request-Headers is allowed (spaces and case forgiven)."""
        if self.any_header or not requested:
            return True
        if len(requested) > MAX_REQUEST_HEADERS:
            return False
        return all(name.strip().lower() in self.headers for name in requested.split(b",") if name.strip())

    def preflight_denial(self, origin: bytes | None, method: bytes, requested: bytes | None) -> str | None:
        if not origin:
            return "no Origin"
        if not self.origin_allowed(origin):
            return "origin not allowed"
        if method not in self.request_methods:
            return "method not allowed"
        if not self.headers_allowed(requested):
            return "headers not allowed"
        return None

    def preflight_headers(
        self, origin: bytes | None, method: bytes, requested: bytes | None, private_network: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        out = [self.preflight_vary]
        denial = self.preflight_denial(origin, method, requested)
        if denial is not None:
            if self.debug:
                log.debug(
                    "CORS preflight without Access-Control-Allow-*: %s (Origin %r, method %r, headers %r)",
                    denial,
                    (origin or b"")[:200],
                    method[:40],
                    (requested or b"")[:200],
                )
            return out
        out.append((ALLOW_ORIGIN, b"*" if self.any_origin else origin))  # type: ignore[arg-type] - not empty here
        out.append((b"access-control-allow-methods", method))
        if requested:
            out.append((b"access-control-allow-headers", requested))
        if self.private_network and private_network == b"true":
            out.append(ALLOW_PRIVATE_NETWORK)
        out.extend(self.preflight_tail)
        return out

    def actual_headers(
        self, headers: list[tuple[bytes, bytes]], origin: bytes | None, method: str
    ) -> list[tuple[bytes, bytes]]:
        """A new header list: the reply's, without any Access-Control-* of its own, and this policy's."""
        base = without_cors(headers)
        if origin and method in self.methods:
            if self.any_origin:
                return [*base, *self.actual_any]
            listed = self.actual_listed.get(origin)
            if listed is not None:
                return [*base, *listed]
            if self.origin_allowed(origin):
                return [*base, VARY_ORIGIN, (ALLOW_ORIGIN, origin), *self.actual_tail]
        if self.debug and origin:
            log.debug("CORS: no Access-Control-Allow-Origin for Origin %r, method %s", origin[:200], method)
        return [*base, VARY_ORIGIN]


def without_cors(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    for name, _ in headers:
        if CORS_PREFIX <= name < CORS_END:  # starts with "access-control-", in two cheap comparisons
            return [h for h in headers if not h[0].startswith(CORS_PREFIX)]
    return headers


def _origin(raw: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in raw:
        if name == b"origin":
            return value
    return None


def _request_headers(raw: list[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None]:
    """The first Origin, Access-Control-Request-Method, -Headers and -Private-Network of a request."""
    origin = method = headers = private = None
    for name, value in raw:
        if name == b"origin":
            origin = value if origin is None else origin
        elif name.startswith(b"access-control-request-"):
            kind = name[23:]
            if kind == b"method" and method is None:
                method = value
            elif kind == b"headers" and headers is None:
                headers = value
            elif kind == b"private-network" and private is None:
                private = value
    return origin, method, headers, private


def cors_step(policy: CorsPolicy) -> Step:
    def step(handler: Handler) -> Handler:
        async def cors(ex: Exchange) -> Reply:
            raw = ex.scope["headers"]
            if ex.method == "OPTIONS":
                origin, method, requested, private = _request_headers(raw)
                if method:  # a preflight
                    extra = policy.preflight_headers(origin, method, requested, private)
                    if not policy.passthrough:
                        return Reply(policy.status, extra, b"")
                    reply = await handler(ex)
                    return Reply(reply.status, [*without_cors(reply.headers), *extra], reply.body)
            else:
                origin = _origin(raw)
            reply = await handler(ex)
            return Reply(reply.status, policy.actual_headers(reply.headers, origin, ex.method), reply.body)

        return cors

    return step


async def build_step(ctx: StepContext) -> Step | None:
    """Service-wide only: the first step after admission, so preflights never reach the router."""
    opts: CorsOptions | None = ctx.service.namespaces.get(NAMESPACE)
    return None if opts is None else cors_step(CorsPolicy(opts))
