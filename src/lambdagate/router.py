"""Route a request path to an endpoint: literal and `{param}` segments, matched in a segment trie.

Lookup cost depends on the path's depth, not on how many endpoints exist. Literal segments win over
placeholders at the same position, and routing is per method, as in gin (which KrakenD uses): when the
literal branch has no route for the path and method, the placeholder branch is tried (backtracking).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

from lambdagate.config.model import PLACEHOLDER_RE

T = TypeVar("T")


@dataclass
class _Node(Generic[T]):
    literals: dict[str, _Node[T]] = field(default_factory=dict)
    param: _Node[T] | None = None
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
        if node is not None:
            entry = _entry(node, method)
            if entry is not None:
                return Match(entry[0], {}, node.allow)
        if not path.startswith("/"):  # "*" (OPTIONS *) or an absolute URL is no route's path
            return None
        segments = _split(path)
        # Fast path: follow literals first, as most requests end where that leads.
        values: list[str] = []
        node = self._root
        for segment in segments:
            child = node.literals.get(segment)
            if child is None:
                child = node.param
                if child is None or not segment:
                    node = None
                    break
                values.append(segment)
            node = child
        if node is not None:
            entry = _entry(node, method)
            if entry is not None:
                return _found(entry, values, node.allow)
        # Slow path, only for paths that are unknown, of another method, or need backtracking.
        methods: set[str] = set()
        for node, values in _candidates(self._root, segments, 0, []):
            entry = _entry(node, method)
            if entry is not None:
                return _found(entry, values, node.allow)
            methods.update(node.handlers)
        if not methods:
            return None
        return Match(None, {}, ", ".join(sorted(methods)))


def _entry(node: _Node, method: str) -> tuple | None:
    entry = node.handlers.get(method)
    if entry is None and method == "HEAD":
        entry = node.handlers.get("GET")
    return entry  # type: ignore[return-value]


def _found(entry: tuple, values: list[str], allow: str) -> Match:
    handler, names = entry
    return Match(handler, {n: unquote(v) for n, v in zip(names, values)} if names else {}, allow)


def _candidates(node: _Node, segments: list[str], i: int, values: list[str]) -> Iterator[tuple[_Node, list[str]]]:
    """Every node with routes that the path reaches, literal branches before placeholder ones."""
    if i == len(segments):
        if node.handlers:
            yield node, values
        return
    segment = segments[i]
    child = node.literals.get(segment)
    if child is not None:
        yield from _candidates(child, segments, i + 1, values)
    if node.param is not None and segment:
        yield from _candidates(node.param, segments, i + 1, [*values, segment])


def _split(path: str) -> list[str]:
    return _normal(path).split("/")[1:] if path not in ("", "/") else []


def _normal(path: str) -> str:
    # A trailing slash is not significant: "/users/" and "/users" are one route.
    return path[:-1] if len(path) > 1 and path.endswith("/") else path
