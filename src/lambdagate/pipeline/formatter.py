"""Per-backend response manipulation in KrakenD's order: target, allow/deny, mapping, group (or, with the backend's
`proxy.flatmap_filter`: target, flatmap, group).

`build_formatter` reads the backend config once and returns a function doing only the configured steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambdagate.config.model import BackendConfig
from lambdagate.config.proxy_options import backend_proxy
from lambdagate.pipeline.flatmap import build_flatmap

Formatter = Callable[[dict[str, Any]], dict[str, Any]]


def build_formatter(backend: BackendConfig) -> Formatter | None:
    steps: list[Formatter] = []
    if backend.target:
        steps.append(_target(backend.target.split(".")))
    flatmap = build_flatmap(backend_proxy(backend).flatmap_filter)
    if flatmap is not None:  # proxy.flatmap_filter replaces allow, deny and mapping (Lura's flatmap formatter)
        steps.append(flatmap)
    elif backend.allow:
        steps.append(_allow([p.split(".") for p in backend.allow]))
    elif backend.deny:
        steps.append(_deny([p.split(".") for p in backend.deny]))
    if backend.mapping and flatmap is None:
        # KrakenD keeps only the first dot-part of a new name; mapping applies to top-level keys.
        steps.append(_mapping({old: new.split(".", 1)[0] for old, new in backend.mapping.items()}))
    if backend.group:
        steps.append(_group(backend.group))
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def apply(data: dict[str, Any]) -> dict[str, Any]:
        for step in steps:
            data = step(data)
        return data

    return apply


def _target(parts: list[str]) -> Formatter:
    def target(data: dict[str, Any]) -> dict[str, Any]:
        node: Any = data
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return {}
            node = node[part]
        return node if isinstance(node, dict) else {}

    return target


def _allow(paths: list[list[str]]) -> Formatter:
    def allow(data: dict[str, Any]) -> dict[str, Any]:
        if not data:
            return data
        out: dict[str, Any] = {}
        for path in paths:
            _copy_path(data, out, path)
        return out

    return allow


def _copy_path(src: dict[str, Any], dst: dict[str, Any], path: list[str]) -> None:
    head = path[0]
    if head not in src:
        return
    value = src[head]
    if len(path) == 1:
        dst[head] = value
        return
    if isinstance(value, dict):
        sub = dst.get(head)
        if sub is value:
            # A shorter path already kept this whole subtree (it is the input's own object: never edit it).
            return
        if not isinstance(sub, dict):
            sub = dst[head] = {}
        _copy_path(value, sub, path[1:])
        if not sub:
            del dst[head]


def _deny(paths: list[list[str]]) -> Formatter:
    def deny(data: dict[str, Any]) -> dict[str, Any]:
        if not data:
            return data
        out = dict(data)
        for path in paths:
            _delete_path(out, path)
        return out

    return deny


def _delete_path(node: dict[str, Any], path: list[str]) -> None:
    head = path[0]
    if head not in node:
        return
    if len(path) == 1:
        del node[head]
        return
    child = node[head]
    if isinstance(child, dict):
        # Copy on the way down so the backend's own object (e.g. a cached one) is never altered.
        node[head] = child = dict(child)
        _delete_path(child, path[1:])


def _mapping(renames: dict[str, str]) -> Formatter:
    def mapping(data: dict[str, Any]) -> dict[str, Any]:
        # Renames are simultaneous (a→b with b→a swaps); a renamed key wins over a key it collides with.
        out = {k: v for k, v in data.items() if k not in renames}
        for old, new in renames.items():
            if old in data:
                out[new] = data[old]
        return out

    return mapping


def _group(name: str) -> Formatter:
    def group(data: dict[str, Any]) -> dict[str, Any]:
        return {name: data}

    return group
