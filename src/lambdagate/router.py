"""Route a request path to an endpoint: literal and `{param}` segments, matched in a segment trie.

Lookup cost depends on the path's depth, not on how many endpoints exist. Literal segments win over
placeholders at the same position (as in httprouter/gin, which KrakenD uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

from lambdagate.config.model import PLACEHOLDER_RE

T = TypeVar("T")


@dataclass
class _Node(Generic[T]):
    literals: dict[str, _Node[T]] = field(default_factory=dict)
    param: _Node[T] | None = None
    param_name: str = ""
    handlers: dict[str, T] = field(default_factory=dict)
    allow: str = ""


@dataclass(slots=True)
class Match(Generic[T]):
    """`handler` is None when the path exists but not for this method; `allow` lists the methods it has."""

    handler: T | None
    params: dict[str, str]
    allow: str


class Router(Generic[T]):
    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._static: dict[str, _Node[T]] = {}

    def add(self, method: str, pattern: str, handler: T) -> None:
        node = self._root
        names: list[str] = []
        for segment in _split(pattern):
            m = PLACEHOLDER_RE.fullmatch(segment)
            if m:
                if node.param is None:
                    node.param = _Node()
                    node.param_name = m.group(1)
                names.append(m.group(1))
                node = node.param
            else:
                node = node.literals.setdefault(segment, _Node())
        if method in node.handlers:
            raise ValueError(f"duplicate route {method} {pattern}")
        # Each route keeps its own placeholder names, even when it shares a trie branch with another route.
        node.handlers[method] = (handler, tuple(names))  # type: ignore[assignment]
        node.allow = ", ".join(sorted(node.handlers))
        if not names:
            self._static[_normal(pattern)] = node

    def match(self, method: str, path: str) -> Match[T] | None:
        """None for an unknown path. Values of placeholders are percent-decoded."""
        node = self._static.get(path)
        values: list[str] = []
        if node is None:
            node = self._root
            for segment in _split(path):
                child = node.literals.get(segment)
                if child is None:
                    child = node.param
                    if child is None or not segment:
                        return None
                    values.append(unquote(segment))
                node = child
            if not node.handlers:
                return None
        entry = node.handlers.get(method)
        if entry is None and method == "HEAD":
            entry = node.handlers.get("GET")
        if entry is None:
            return Match(None, {}, node.allow)
        handler, names = entry  # type: ignore[misc]
        return Match(handler, dict(zip(names, values)) if names else {}, node.allow)


def _split(path: str) -> list[str]:
    return _normal(path).split("/")[1:] if path not in ("", "/") else []


def _normal(path: str) -> str:
    # A trailing slash is not significant: "/users/" and "/users" are one route.
    return path[:-1] if len(path) > 1 and path.endswith("/") else path
