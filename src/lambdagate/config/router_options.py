"""`router`: KrakenD's router options (Lura's gin engine and krakend-ce's error bodies), in the service's extra_config.

```json
"extra_config": {"router": {"return_error_msg": true, "disable_redirect_fixed_path": true}}
```
Old name: `github_com/luraproject/lura/router/gin`. Every KrakenD CE key is read; the ones lambdagate cannot apply
as KrakenD does are accepted with a warning that says what happens instead.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import ServiceConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError

NAMESPACE = "router"
# Lura's own name, which KrakenD 2 still reads; the loader warns with the current one.
LEGACY_NAMES = ("github_com/luraproject/lura/router/gin", "github.com/luraproject/lura/router/gin")
# gin's defaults: the headers a proxy's client address is read from when forwarded_by_client_ip is on.
DEFAULT_REMOTE_IP_HEADERS = ("X-Forwarded-For", "X-Real-IP")


class ErrorBodies(BaseModel):
    """krakend-ce's `error_body`: the JSON sent instead of gin's plain-text 404 and 405."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    not_found: Any = Field(default=None, alias="404")
    method_not_allowed: Any = Field(default=None, alias="405")


class RouterOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    # KrakenD: a failed endpoint's error text as the body (else an empty body); lambdagate always sends it as JSON.
    return_error_msg: StrictBool = False
    disable_health: StrictBool = False
    health_path: StrictStr = "/__health"
    disable_access_log: StrictBool = False
    logger_skip_paths: list[StrictStr] = Field(default_factory=list)  # request paths without an access-log line
    auto_options: StrictBool = False  # OPTIONS on every endpoint path, answering its methods in Allow
    disable_handle_method_not_allowed: StrictBool = False  # then a known path of another method is a 404
    disable_redirect_trailing_slash: StrictBool = False
    disable_redirect_fixed_path: StrictBool = False
    remove_extra_slash: StrictBool = False  # route "//a/./b" as "/a/b" (without a redirect)
    hide_version_header: StrictBool = False  # X-KrakenD says "Version undefined"
    forwarded_by_client_ip: StrictBool = False
    remote_ip_headers: list[StrictStr] = Field(default_factory=list)
    trusted_proxies: list[StrictStr] = Field(default_factory=list)
    max_multipart_memory: StrictInt = Field(default=0, ge=0)  # accepted: lambdagate parses no multipart body
    disable_path_decoding: StrictBool = False
    app_engine: StrictBool = False
    use_h2c: StrictBool = False
    error_body: ErrorBodies = Field(default_factory=ErrorBodies)

    @field_validator("health_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f'must start with "/", e.g. "/{value}"')
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is no IP address or CIDR range, e.g. 10.0.0.0/8") from None
        return value

    @property
    def ip_headers(self) -> tuple[str, ...]:
        return tuple(self.remote_ip_headers) or DEFAULT_REMOTE_IP_HEADERS


def parse(value: Any, ctx: NamespaceContext) -> RouterOptions:
    options = parse_namespace_model(RouterOptions, value, ctx, '{"return_error_msg": true}')
    if not options.disable_health and any(
        e.endpoint == options.health_path and e.method in ("GET", "HEAD") for e in ctx.service.endpoints
    ):
        raise NamespaceError(
            [("health_path", f"{options.health_path} is a GET endpoint's path too: choose another health_path")]
        )
    for key, message in _differences(options, ctx.service):
        ctx.warnings.append((key, message))
    return options


def _differences(options: RouterOptions, service: ServiceConfig) -> list[tuple[str, str]]:
    """Warnings for what lambdagate does differently from KrakenD with these options."""
    out = []
    if options.forwarded_by_client_ip and not options.trusted_proxies:
        out.append(
            (
                "forwarded_by_client_ip",
                "without trusted_proxies lambdagate trusts no proxy and keeps the peer's address (KrakenD trusts "
                "every peer, which lets any client choose its IP): list your proxies in trusted_proxies",
            )
        )
    if options.disable_path_decoding:
        out.append(
            (
                "disable_path_decoding",
                "accepted; lambdagate still refuses path parameters that decode to a path traversal or an "
                'encoded "/" (see lambdagate/endpoint allow_encoded_slash)',
            )
        )
    if options.return_error_msg:
        out.append(
            (
                "return_error_msg",
                'accepted: every error reply is a short JSON {"error": "..."} without backend internals (the cause '
                "is logged); validation/json-schema adds its error list to the body",
            )
        )
    if options.app_engine:
        out.append(("app_engine", "not supported, ignored: X-AppEngine-* headers are not trusted for the client IP"))
    if options.use_h2c:
        out.append(("use_h2c", "not supported, ignored: lambdagate serves HTTP/1.1 in cleartext (HTTP/2 with tls)"))
    if options.max_multipart_memory:
        out.append(("max_multipart_memory", "accepted, no effect: lambdagate passes multipart bodies on unparsed"))
    return out


ROUTER_OPTIONS = Namespace(NAMESPACE, "service", parse, aliases=LEGACY_NAMES)
_DEFAULT = RouterOptions()


def router_options(service: ServiceConfig) -> RouterOptions:
    return service.namespaces.get(NAMESPACE) or _DEFAULT
