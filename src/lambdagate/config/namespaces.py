"""Registry of `extra_config` namespaces. The core knows none of them: each extension registers its own.

A namespace parses its raw value into a typed object once, at load time. A namespace marked as a backend
type (e.g. `backend/lambda`) turns a backend into that type, which then needs no `host` or `url_pattern`.
Every old name in config/guards.py's OLD_NAMES table (KrakenD 1.x's `github.com/devopsfaith/krakend-jose/validator`,
`github_com/devopsfaith/krakend-cors`, ...) finds the namespace registered under its current name, and the loader
warns with the current name; `aliases` adds names outside that table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lambdagate.config import guards

if TYPE_CHECKING:
    from lambdagate.config.flexible import FlexibleConfig
    from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig

Scope = Literal["service", "endpoint", "backend"]


@dataclass(frozen=True)
class LoadOptions:
    """How the config will be served, where that changes validation (e.g. the embedded Lambda runtime)."""

    local_lambda_endpoint: str | None = None
    # Guards served without their protection (current names, see config/guards.py): warned about, not refused.
    allow_unsupported: frozenset[str] = frozenset()
    # A templated config (KrakenD's flexible configuration): rendered before it is parsed. Only the process that
    # reads the file the user wrote sets it; workers read the rendered copy.
    flexible: FlexibleConfig | None = None


@dataclass
class NamespaceContext:
    service: ServiceConfig
    endpoint: EndpointConfig | None
    backend: BackendConfig | None
    path: str
    options: LoadOptions
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (sub-path, message)


class NamespaceError(Exception):
    """Problems in one namespace value, each as (sub-path relative to the namespace, message)."""

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(m for _, m in issues))
        self.issues = issues


@dataclass(frozen=True)
class Namespace:
    name: str
    scope: Scope
    parse: Callable[[Any, NamespaceContext], Any]
    aliases: tuple[str, ...] = ()
    backend_type: bool = False
    # Other scopes whose extra_config it is read in too (the parser tells them apart by the context).
    other_scopes: tuple[Scope, ...] = ()

    def reads(self, scope: str) -> bool:
        return scope == self.scope or scope in self.other_scopes


_REGISTRY: dict[str, Namespace] = {}


def register(namespace: Namespace) -> Namespace:
    """Called by the composition module (lambdagate.plugins), never as a side effect of importing a namespace."""
    for key in (namespace.name, *namespace.aliases):
        _REGISTRY[key] = namespace
    return namespace


def lookup(key: str) -> Namespace | None:
    if not _REGISTRY:
        # Reading a config before the namespaces are registered would treat every extension as unknown.
        raise RuntimeError("no extra_config namespace is registered: call lambdagate.plugins.install() first")
    found = _REGISTRY.get(key)
    if found is None and guards.is_old_name(key):  # e.g. "github_com/devopsfaith/krakend-jose/validator"
        found = _REGISTRY.get(guards.normal(key)) or _REGISTRY.get(guards.canonical(key))
    return found
