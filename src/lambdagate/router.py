"""Route a request path to an endpoint: literal and `{param}` segments, matched in a segment trie.

Lookup cost depends on the path's depth, not on how many endpoints exist. Literal segments win over
placeholders at the same position, and routing is per method, as in gin (which KrakenD uses): when the
literal branch has no route for the path and method, the placeholder branch is tried (backtracking).

As in gin, a trailing slash is significant ("/a" and "/a/" are two routes); `trailing_slash_twin` and `fixed_path`
find what gin's RedirectTrailingSlash and RedirectFixedPath redirect to (front.routing sends the redirects).
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
    folded: dict[str, list[str]] = field(default_factory=dict)  # lower-cased literal → the literals, for fixed_path


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
                if segment not in node.literals:
                    node.folded.setdefault(segment.lower(), []).append(segment)
                node = node.literals.setdefault(segment, _Node())
        if method in node.handlers:
            raise ValueError(f"duplicate route {method} {pattern}")
        # Each route keeps its own placeholder names, even when it shares a trie branch with another route.
        node.handlers[method] = (handler, tuple(names))  # type: ignore[assignment]
        node.allow = ", ".join(sorted(node.handlers))
        if not names:
            self._static[pattern] = node

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

    def has_route(self, method: str, pattern: str) -> bool:
        """Whether `pattern` (placeholder names aside) already has a route of `method`."""
        node: _Node[T] | None = self._root
        for segment in _split(pattern):
            assert node is not None
            node = node.param if PLACEHOLDER_RE.fullmatch(segment) else node.literals.get(segment)
            if node is None:
                return False
        return node is not None and method in node.handlers

    def routes(self, method: str, path: str) -> bool:
        """Whether a route of `method` takes `path`."""
        match = self.match(method, path)
        return match is not None and match.handler is not None

    def trailing_slash_twin(self, method: str, path: str) -> str | None:
        """The path with its trailing slash added or removed, when a route of `method` takes that one."""
        if path == "/" or not path.startswith("/"):
            return None
        twin = path[:-1] if path.endswith("/") else path + "/"
        return twin if self.routes(method, twin) else None

    def fixed_path(self, method: str, path: str) -> str | None:
        """gin's fixed path: `path` cleaned ("//", "." and ".." resolved), then matched with literals compared
        case-insensitively, a trailing slash added or removed if need be; the route's spelling, or None."""
        if not path.startswith("/"):
            return None
        cleaned = clean_path(path)
        budget = [_FIX_BUDGET]
        for candidate in (cleaned, cleaned[:-1] if cleaned.endswith("/") else cleaned + "/"):
            if candidate == "/" and cleaned != "/" or not candidate:
                continue
            found = _fold_walk(self._root, candidate.split("/")[1:], 0, [], method, budget)
            if found is not None and found != path:
                return found
        return None


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


# Nodes a fixed-path search may visit: bounds the backtracking over case variants and placeholders.
_FIX_BUDGET = 2048


def _fold_walk(
    node: _Node, segments: list[str], i: int, built: list[str], method: str, budget: list[int]
) -> str | None:
    """The route spelling of `segments` (literals matched case-insensitively), for `method`."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    if i == len(segments):
        return "/" + "/".join(built) if _entry(node, method) is not None else None
    segment = segments[i]
    for literal in node.folded.get(segment.lower(), ()):
        found = _fold_walk(node.literals[literal], segments, i + 1, [*built, literal], method, budget)
        if found is not None:
            return found
    if node.param is not None and segment:
        return _fold_walk(node.param, segments, i + 1, [*built, segment], method, budget)
    return None


def clean_path(path: str) -> str:
    """gin's cleanPath: one "/" between segments, "." and ".." resolved (never above the root), the trailing
    slash kept."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment not in ("", "."):
            out.append(segment)
    cleaned = "/" + "/".join(out)
    trailing = path.endswith(("/", "/."))
    return cleaned + "/" if trailing and cleaned != "/" else cleaned


def _split(path: str) -> list[str]:
    # "/a/" is ["a", ""]: its own route, not "/a" (as in gin); "/" is [""].
    return path.split("/")[1:]
