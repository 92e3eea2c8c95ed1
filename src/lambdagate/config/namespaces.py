"""Registry of `extra_config` namespaces. The core knows none of them: each extension registers its own.

A namespace parses its raw value into a typed object once, at load time. A namespace marked as a backend
type (e.g. `backend/lambda`) turns a backend into that type, which then needs no `host` or `url_pattern`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

if TYPE_CHECKING:
    from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig

Scope = Literal["service", "endpoint", "backend"]


@dataclass(frozen=True)
class LoadOptions:
    """How the config will be served, where that changes validation (e.g. the embedded Lambda runtime)."""

    local_lambda_endpoint: str | None = None
    # Guards served without their protection (current names, see config/guards.py): warned about, not refused.
    allow_unsupported: frozenset[str] = frozenset()


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
    scope: Scope  # where it is read
    parse: Callable[[Any, NamespaceContext], Any]
    aliases: tuple[str, ...] = ()
    backend_type: bool = False
    also_in: tuple[Scope, ...] = ()  # further scopes it is read in (security/bot-detector: service and endpoint)

    def reads_in(self, scope: str) -> bool:
        return scope == self.scope or scope in self.also_in

    @property
    def where(self) -> str:
        """Its scopes as a message names them: "endpoint", "service or endpoint"."""
        return " or ".join((self.scope, *self.also_in))


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
    return _REGISTRY.get(key)
