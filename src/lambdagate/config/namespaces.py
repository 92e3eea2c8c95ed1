"""Registry of `extra_config` namespaces. The core knows none of them: each extension registers its own.

A namespace parses its raw value into a typed object once, at load time. A namespace marked as a backend
type (e.g. `backend/lambda`) turns a backend into that type, which then needs no `host` or `url_pattern`.
"""

from __future__ import annotations

import importlib
import pkgutil
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
    scope: Scope
    parse: Callable[[Any, NamespaceContext], Any]
    aliases: tuple[str, ...] = ()
    backend_type: bool = False


_REGISTRY: dict[str, Namespace] = {}
_plugins_loaded = False


def register(namespace: Namespace) -> Namespace:
    for key in (namespace.name, *namespace.aliases):
        _REGISTRY[key] = namespace
    return namespace


def lookup(key: str) -> Namespace | None:
    load_plugins()
    return _REGISTRY.get(key)


def load_plugins() -> None:
    """Import every module of `lambdagate.backends` and `lambdagate.telemetry`, so each registers its namespaces
    (and backend factory)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    import lambdagate.backends
    import lambdagate.telemetry

    for pkg in (lambdagate.backends, lambdagate.telemetry):
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
