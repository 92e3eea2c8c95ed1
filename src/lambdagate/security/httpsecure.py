"""`security/http`: host checks, HTTPS redirect and security headers for the whole service, as KrakenD's
krakend-httpsecure (unrolled/secure).

```json
"extra_config": {"security/http": {"allowed_hosts": ["api.example.com"], "ssl_redirect": true,
                                   "sts_seconds": 31536000, "frame_deny": true, "content_type_nosniff": true}}
```
In the order a request meets them, after CORS and before routing:
1. `allowed_hosts`: a request whose host (the Host header, or the first of `host_proxy_headers` it has) is not in
   the list gets 400. Compared case-insensitively with the port, or, with `allowed_hosts_are_regex`, each entry
   must match the whole host.
2. `ssl_redirect`: a request not over HTTPS (the connection, or one of `ssl_proxy_headers` with its value) gets a
   301 to https://, on `ssl_host` if set (and `ssl_port`, a lambdagate addition) else on the request's host.
3. Every other reply, errors included, gets the configured headers: Strict-Transport-Security (over HTTPS, or
   always with `force_sts_header`), X-Frame-Options, X-Content-Type-Options, X-XSS-Protection,
   Content-Security-Policy (`$NONCE` becomes a fresh nonce per reply), Referrer-Policy. They replace any header of
   the same name in the reply.
`is_development` turns off 1, 2 and Strict-Transport-Security, as in KrakenD.
"""

from __future__ import annotations

import base64
import os
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.front import Exchange, Handler, Step
from lambdagate.pipeline.render import Reply, json_reply
from lambdagate.security.fields import header_name_issues, value_issue
from lambdagate.security.patterns import pattern_error, pattern_set

if TYPE_CHECKING:
    from lambdagate.stack import StepContext

NAMESPACE = "security/http"
# The KrakenD 1.x name, as config/guards.py normalises it (`github_com/…` is read too): applied, with a warning.
LEGACY_NAME = "github.com/devopsfaith/krakend-httpsecure"
# A host as a redirect may name it: a DNS name or IPv4 address, or [IPv6], with an optional port.
HOST = re.compile(r"([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")
MAX_HOST = 300  # a DNS name is at most 253 characters: a longer host is refused without matching
BAD_HOST = json_reply(400, {"error": "host not allowed"})
NO_HOST = json_reply(400, {"error": "no valid host to redirect to"})


class HttpSecurityOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    allowed_hosts: list[StrictStr] = Field(default_factory=list)  # empty: any host
    allowed_hosts_are_regex: StrictBool = False
    host_proxy_headers: list[StrictStr] = Field(default_factory=list)
    ssl_redirect: StrictBool = False
    ssl_host: StrictStr = ""
    ssl_port: StrictInt | None = Field(default=None, ge=1, le=65535)  # lambdagate's: KrakenD has none
    ssl_proxy_headers: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    sts_seconds: StrictInt = Field(default=0, ge=0)
    sts_include_subdomains: StrictBool = False
    force_sts_header: StrictBool = False
    frame_deny: StrictBool = False
    custom_frame_options_value: StrictStr = ""
    content_type_nosniff: StrictBool = False
    browser_xss_filter: StrictBool = False
    content_security_policy: StrictStr = ""
    referrer_policy: StrictStr = ""
    hpkp_public_key: StrictStr = ""  # accepted and ignored, as KrakenD CE does
    is_development: StrictBool = False


def parse(value: Any, ctx: NamespaceContext) -> HttpSecurityOptions:
    opts = parse_namespace_model(
        HttpSecurityOptions, value, ctx, '{"allowed_hosts": ["api.example.com"], "frame_deny": true}'
    )
    issues = [
        *header_name_issues("host_proxy_headers", opts.host_proxy_headers),
        *header_name_issues("ssl_proxy_headers", list(opts.ssl_proxy_headers)),
    ]
    for name in ("custom_frame_options_value", "content_security_policy", "referrer_policy"):
        issues += value_issue(name, getattr(opts, name))
    for key, expected in opts.ssl_proxy_headers.items():
        issues += value_issue(f"ssl_proxy_headers.{key}", expected)
    if opts.ssl_host and not HOST.fullmatch(opts.ssl_host):
        issues.append(
            (
                "ssl_host",
                f'{opts.ssl_host[:60]!r} is not a host: write it like "api.example.com" or '
                '"api.example.com:8443", without a scheme',
            )
        )
    for i, host in enumerate(opts.allowed_hosts):
        error = pattern_error(host) if opts.allowed_hosts_are_regex else None
        if error is not None:
            issues.append((f"allowed_hosts[{i}]", error))
    if issues:
        raise NamespaceError(issues)
    if opts.hpkp_public_key:
        ctx.warnings.append(
            ("hpkp_public_key", "ignored, as KrakenD CE does: browsers dropped HTTP Public Key Pinning")
        )
    if opts.is_development and (opts.allowed_hosts or opts.ssl_redirect or opts.sts_seconds):
        ctx.warnings.append(
            ("is_development", "true: allowed_hosts, ssl_redirect and Strict-Transport-Security are off")
        )
    return opts


HTTP_SECURITY_NAMESPACE = Namespace(NAMESPACE, "service", parse, aliases=(LEGACY_NAME,))


def _response_headers(opts: HttpSecurityOptions) -> list[tuple[bytes, bytes]]:
    """The headers every reply gets, but Strict-Transport-Security (it depends on the connection)."""
    out = []
    if opts.custom_frame_options_value or opts.frame_deny:
        out.append((b"x-frame-options", (opts.custom_frame_options_value or "DENY").encode()))
    if opts.content_type_nosniff:
        out.append((b"x-content-type-options", b"nosniff"))
    if opts.browser_xss_filter:
        out.append((b"x-xss-protection", b"1; mode=block"))
    if opts.content_security_policy and "$NONCE" not in opts.content_security_policy:
        out.append((b"content-security-policy", opts.content_security_policy.encode()))
    if opts.referrer_policy:
        out.append((b"referrer-policy", opts.referrer_policy.encode()))
    return out


class HttpSecurity:
    """The options, precomputed: which request headers to read, and the header lists to add."""

    def __init__(self, opts: HttpSecurityOptions) -> None:
        dev = opts.is_development
        self.check_hosts = bool(opts.allowed_hosts) and not dev
        self.hosts = frozenset(h.lower().encode() for h in opts.allowed_hosts)
        self.host_patterns = pattern_set(opts.allowed_hosts, whole=True) if opts.allowed_hosts_are_regex else None
        self.proxy_hosts = tuple(h.lower().encode() for h in opts.host_proxy_headers)
        self.ssl_headers = tuple((k.lower().encode(), v.encode()) for k, v in opts.ssl_proxy_headers.items())
        self.redirect = opts.ssl_redirect and not dev
        self.ssl_host, self.ssl_port = opts.ssl_host, opts.ssl_port
        plain = _response_headers(opts)
        sts = (
            []
            if not opts.sts_seconds or dev
            else [
                (
                    b"strict-transport-security",
                    (
                        f"max-age={opts.sts_seconds}" + ("; includeSubDomains" if opts.sts_include_subdomains else "")
                    ).encode(),
                )
            ]
        )
        self.plain, self.secure = (plain + sts, plain + sts) if opts.force_sts_header else (plain, plain + sts)
        self.needs_ssl = self.redirect or (bool(sts) and not opts.force_sts_header)
        csp = opts.content_security_policy
        self.nonce_csp = csp.split("$NONCE") if "$NONCE" in csp else None
        self.names = frozenset(name for name, _ in self.secure) | (
            {b"content-security-policy"} if self.nonce_csp else set()
        )
        self.wanted = frozenset((b"host", *self.proxy_hosts, *(k for k, _ in self.ssl_headers)))
        self.active = bool(self.check_hosts or self.redirect or self.names)

    def facts(self, scope: dict) -> tuple[bytes, bool]:
        """The request's host (from the proxy headers first) and whether it came over HTTPS."""
        first: dict[bytes, bytes] = {}
        wanted = self.wanted
        for name, value in scope["headers"]:
            if name in wanted and name not in first:
                first[name] = value
        host = next((first[h] for h in self.proxy_hosts if first.get(h)), first.get(b"host", b""))
        ssl = scope.get("scheme") == "https" or any(first.get(k) == v for k, v in self.ssl_headers)
        return host, ssl

    def host_allowed(self, host: bytes) -> bool:
        if len(host) > MAX_HOST:
            return False
        if self.host_patterns is not None:
            return self.host_patterns.Match(host) is not None
        return host.lower() in self.hosts

    def redirect_to_https(self, host: bytes, ex: Exchange) -> Reply:
        target = self.ssl_host or host.decode("latin-1")
        if not HOST.fullmatch(target):
            return NO_HOST
        if self.ssl_port is not None:
            name = target[: target.rindex(":")] if target.rfind(":") > target.rfind("]") else target
            target = name if self.ssl_port == 443 else f"{name}:{self.ssl_port}"
        query = ex.scope["query_string"]
        location = f"https://{target}{ex.path}".encode("latin-1") + (b"?" + query if query else b"")
        return Reply(301, [(b"location", location)], b"")

    def with_headers(self, headers: list[tuple[bytes, bytes]], ssl: bool) -> list[tuple[bytes, bytes]]:
        names = self.names
        for name, _ in headers:
            if name in names:
                headers = [h for h in headers if h[0] not in names]
                break
        extra = self.secure if ssl else self.plain
        if self.nonce_csp is not None:
            nonce = f"'nonce-{base64.b64encode(os.urandom(16)).decode()}'"
            extra = [*extra, (b"content-security-policy", nonce.join(self.nonce_csp).encode())]
        return [*headers, *extra]


def secured(handler: Handler, rules: HttpSecurity) -> Handler:
    async def secure(ex: Exchange) -> Reply:
        ssl = False
        if rules.check_hosts or rules.needs_ssl:
            host, ssl = rules.facts(ex.scope)
            if rules.check_hosts and not rules.host_allowed(host):
                return BAD_HOST
            if rules.redirect and not ssl:
                return rules.redirect_to_https(host, ex)
        reply = await handler(ex)
        return Reply(reply.status, rules.with_headers(reply.headers, ssl), reply.body)

    return secure


async def build_step(ctx: StepContext) -> Step | None:
    """Service-wide only, after CORS: a refused host still gets CORS headers, as in KrakenD."""
    opts: HttpSecurityOptions | None = ctx.service.namespaces.get(NAMESPACE)
    if opts is None:
        return None
    rules = HttpSecurity(opts)
    return (lambda handler: secured(handler, rules)) if rules.active else None
