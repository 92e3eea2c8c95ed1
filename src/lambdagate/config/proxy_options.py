"""The `proxy` namespace (Lura's proxy package): how an endpoint combines its backends and manipulates their data.

Endpoint level:
```json
"extra_config": {"proxy": {
    "sequential": true,                         // backends one after another; {resp0_x} in later url_patterns
    "sequential_propagated_params": ["resp0_id"], // also handed to later backends as the param "Resp0_id"
    "static": {"strategy": "errored", "data": {"fallback": true}},
    "flatmap_filter": [{"type": "del", "args": ["users.*.password"]}]
}}
```
Backend level: `flatmap_filter` (replaces allow/deny/mapping, as in Lura) and `shadow: true` (called, reply
discarded), with `shadow_timeout`.

Where KrakenD silently ignores a value that would change what a client sees (an unknown `static` strategy applies
always there, a misspelt flatmap operation does nothing), it is refused here instead, with its path.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator

from lambdagate.config.durations import Duration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import SEQUENTIAL_PLACEHOLDER_RE, BackendConfig, EndpointConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError

NAMESPACE = "proxy"
LEGACY = ("github.com/devopsfaith/krakend/proxy",)
# What sequential_propagated_params may name, as Lura reads it: "resp0" (a no-op backend's whole body) or
# "resp0_a.b" (a field of a previous reply).
PROPAGATED_RE = re.compile(r"[Rr]esp(\d+)(?:_([\w\-.]+))?")
StaticStrategy = Literal["always", "success", "complete", "errored", "incomplete"]


class FlatmapOperation(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["move", "del", "append"]
    args: list[StrictStr] = Field(min_length=1)

    @field_validator("args")
    @classmethod
    def _paths(cls, args: list[str]) -> list[str]:
        for arg in args:
            if not arg or any(part == "" for part in arg.split(".")):
                raise ValueError(f'{arg!r} is not a path: write keys separated by dots, such as "data.*.password"')
        return args

    @model_validator(mode="after")
    def _two_paths(self) -> FlatmapOperation:
        if self.type in ("move", "append") and len(self.args) != 2:
            raise ValueError(f'"{self.type}" takes two paths (from, to), got {len(self.args)}')
        return self


class StaticResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: dict[str, Any]
    strategy: StaticStrategy = "always"


class EndpointProxyOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    sequential: StrictBool = False
    sequential_propagated_params: list[StrictStr] = Field(default_factory=list)
    static: StaticResponse | None = None
    flatmap_filter: list[FlatmapOperation] = Field(default_factory=list)
    combiner: StrictStr | None = None


class BackendProxyOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    flatmap_filter: list[FlatmapOperation] = Field(default_factory=list)
    shadow: StrictBool = False
    shadow_timeout: Duration | None = None


_HINTS = {
    "static.strategy": 'one of "always", "success", "complete", "errored", "incomplete"',
}


def parse(value: Any, ctx: NamespaceContext) -> EndpointProxyOptions | BackendProxyOptions:
    if ctx.backend is not None:
        example = '{"shadow": true} or {"flatmap_filter": [{"type": "del", "args": ["password"]}]}'
        backend_options = parse_namespace_model(BackendProxyOptions, value, ctx, example)
        ignored = [k for k in ("allow", "deny", "mapping") if getattr(ctx.backend, k)]
        if backend_options.flatmap_filter and ignored:
            ctx.warnings.append(("flatmap_filter", f"replaces the backend's {', '.join(ignored)}, as in KrakenD"))
        return backend_options
    options = parse_namespace_model(EndpointProxyOptions, value, ctx, '{"sequential": true}', _HINTS)
    _check_endpoint(options, ctx)
    return options


def _check_endpoint(options: EndpointProxyOptions, ctx: NamespaceContext) -> None:
    if options.combiner not in (None, "default"):
        ctx.warnings.append(("combiner", f"{options.combiner!r} is a plugin's combiner: the default merge is used"))
    endpoint = ctx.endpoint
    assert endpoint is not None
    if options.static is not None and (endpoint.output_encoding or ctx.service.output_encoding) == "no-op":
        ctx.warnings.append(
            ("static", 'a "no-op" endpoint passes its backend\'s reply as is: static data is not added')
        )
    issues = []
    for k, name in enumerate(options.sequential_propagated_params):
        if not PROPAGATED_RE.fullmatch(name):
            issues.append((f"sequential_propagated_params[{k}]", f'{name!r} names no reply: write "resp0_field"'))
    if issues:
        raise NamespaceError(issues)
    if options.sequential_propagated_params and not options.sequential:
        ctx.warnings.append(("sequential_propagated_params", 'used only with "sequential": true, ignored'))


PROXY_OPTIONS = Namespace(NAMESPACE, "endpoint", parse, aliases=LEGACY, other_scopes=("backend",))
_NO_ENDPOINT_OPTIONS = EndpointProxyOptions()
_NO_BACKEND_OPTIONS = BackendProxyOptions()


def endpoint_proxy(endpoint: EndpointConfig) -> EndpointProxyOptions:
    return endpoint.namespaces.get(NAMESPACE) or _NO_ENDPOINT_OPTIONS


def backend_proxy(backend: BackendConfig) -> BackendProxyOptions:
    return backend.namespaces.get(NAMESPACE) or _NO_BACKEND_OPTIONS


def is_shadow(backend: BackendConfig) -> bool:
    return backend_proxy(backend).shadow


def sequential_refs(pattern: str) -> list[tuple[int, str]]:
    """The `{respN_a.b}` placeholders of a url_pattern, as (N, "a.b")."""
    return [(int(n), path) for n, path in SEQUENTIAL_PLACEHOLDER_RE.findall(pattern)]
