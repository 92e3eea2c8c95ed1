"""`auth/client-credentials`: call a backend with an OAuth2 token of the gateway's own (client-credentials grant).

```json
"extra_config": {"auth/client-credentials": {"client_id": "gateway", "client_secret": "...",
                                             "token_url": "https://idp.example.com/oauth2/token",
                                             "scopes": "orders:read,orders:write",
                                             "endpoint_params": {"audience": ["orders"]}}}
```
Read in a backend's extra_config, as KrakenD does. Each call to an HTTP backend carries `Authorization: Bearer
<token>`, replacing any Authorization forwarded from the client. Tokens come from auth.oauth2_tokens (cached until
shortly before they expire, one fetch at a time); when no token can be had, the backend fails as any failed backend
does (500 alone, a partial merge with others). `scopes` is one comma-separated string, as in KrakenD;
`endpoint_params` maps a parameter to its list of values; `"is_disabled": true` calls the backend without a token.

A Lambda backend is invoked with the gateway's AWS credentials, not over HTTP: as in KrakenD (whose Lambda backend
does not use the HTTP client this namespace configures), the namespace is ignored there, with a warning.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from lambdagate.auth.oauth2_tokens import Client, TokenSource
from lambdagate.config.loader import is_typed_backend, parse_namespace_model
from lambdagate.config.model import BackendConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.proxy import ProxyRequest, ProxyResponse

NAMESPACE = "auth/client-credentials"
LEGACY_NAMES = ("github.com/devopsfaith/krakend-oauth2-clientcredentials",)
_EXAMPLE = (
    '{"client_id": "gateway", "client_secret": "...", "token_url": "https://idp.example.com/oauth2/token", '
    '"scopes": "read,write"}'
)
# Form fields the gateway writes itself: endpoint_params must not give them again.
_OWN_PARAMS = ("client_id", "client_secret")


class ClientCredentialsConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    client_id: StrictStr
    client_secret: StrictStr = Field(default="", repr=False)
    token_url: StrictStr
    scopes: StrictStr = ""  # comma-separated, as KrakenD reads it
    endpoint_params: dict[StrictStr, list[StrictStr]] = Field(default_factory=dict)
    is_disabled: StrictBool = False

    @property
    def client(self) -> Client:
        # KrakenD splits on "," only; spaces around a scope are dropped here, or they would double in the request.
        scopes = tuple(s.strip() for s in self.scopes.split(",") if s.strip())
        params = tuple((name, value) for name, values in self.endpoint_params.items() for value in values)
        return Client(self.token_url, self.client_id, self.client_secret, scopes, params)


def parse(value: Any, ctx: NamespaceContext) -> ClientCredentialsConfig:
    if isinstance(value, dict) and "client_secret" in value and not isinstance(value["client_secret"], str):
        raise NamespaceError([("client_secret", "must be a string")])  # without the value: it is a secret
    cfg = parse_namespace_model(
        ClientCredentialsConfig,
        value,
        ctx,
        _EXAMPLE,
        hints={"scopes": 'must be one comma-separated string, as KrakenD reads it, e.g. "read,write"'},
    )
    issues: list[tuple[str, str]] = []
    parts = urlsplit(cfg.token_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        issues.append(("token_url", 'must be an http(s) URL, e.g. "https://idp.example.com/oauth2/token"'))
    if not cfg.client_id:
        issues.append(("client_id", "must not be empty"))
    for name in cfg.endpoint_params:
        if name in _OWN_PARAMS or (name == "scope" and cfg.scopes):
            issues.append((f"endpoint_params.{name}", f'the gateway sends "{name}" itself: give it as a field'))
    if issues:
        raise NamespaceError(issues)
    if ctx.backend is not None and is_typed_backend(ctx.backend):
        if not cfg.is_disabled:
            ctx.warnings.append(
                (
                    "",
                    "ignored on a Lambda backend, as in KrakenD: the function is invoked with the "
                    "gateway's AWS credentials, and no token is sent",
                )
            )
    elif parts.scheme == "http" and not cfg.is_disabled:
        ctx.warnings.append(("token_url", "is plain HTTP: the client secret and the tokens travel unencrypted"))
    return cfg


CLIENT_CREDENTIALS_NAMESPACE = Namespace(NAMESPACE, "backend", parse, aliases=LEGACY_NAMES)


async def with_client_credentials(built: BuiltBackend, cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    """An HTTP backend's calls with the client's token in Authorization."""
    options: ClientCredentialsConfig | None = cfg.namespaces.get(NAMESPACE)
    if options is None or options.is_disabled or built.kind != "http":
        return built
    client = options.client
    shared = ctx.resources.shared
    source = shared.get((NAMESPACE, client))
    if source is None:
        source = shared[(NAMESPACE, client)] = TokenSource(client, ctx.resources.client)
        ctx.resources.on_close(source.close)
    call = built.call

    async def with_token(req: ProxyRequest) -> ProxyResponse:
        headers = dict(req.headers)
        headers["authorization"] = await source.authorization()
        return await call(replace(req, headers=headers))

    return replace(built, call=with_token)
