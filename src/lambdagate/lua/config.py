"""The `modifier/lua-*` namespaces, parsed once at load time, as KrakenD's krakend-lua reads them.

```json
"modifier/lua-proxy": {"sources": ["scripts/auth.lua"], "md5": {"scripts/auth.lua": "5d41..."},
                       "pre": "check_auth(request.load())", "post": "", "live": false,
                       "allow_open_libs": false, "skip_next": false}
```
Sources are files relative to the working directory, as in KrakenD. Unlike KrakenD (which logs and serves on), a
source that cannot be read, a checksum that differs and Lua that does not compile are refused here, with the path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import lupa.lua54 as lua
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from lambdagate.config import files
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError

ENDPOINT = "modifier/lua-endpoint"
PROXY = "modifier/lua-proxy"
BACKEND = "modifier/lua-backend"
_EXAMPLE = '{"sources": ["script.lua"], "pre": "local r = request.load()"}'
# A source larger than this is refused: scripts are code, and each worker keeps them in memory.
MAX_SOURCE_BYTES = 4 * 1024 * 1024


class LuaOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    sources: list[StrictStr] = Field(default_factory=list)
    md5: dict[str, StrictStr] = Field(default_factory=dict)
    pre: StrictStr = ""
    post: StrictStr = ""
    live: StrictBool = False
    allow_open_libs: StrictBool = False
    skip_next: StrictBool = False


@dataclass(frozen=True)
class LuaConfig:
    """A parsed block: its options, the sources' text as read (and checked) at load time, and where it sits."""

    namespace: str
    options: LuaOptions
    texts: tuple[tuple[str, bytes], ...]  # (source path, content), in `sources` order
    place: str  # for log lines: the endpoint or backend it belongs to

    @property
    def label(self) -> str:
        return f"{self.namespace} ({self.place})"


def read_source(path: str) -> bytes:
    """A source file's content; OSError when it cannot be read, ValueError when it is too large."""
    with open(path, "rb") as f:
        content = f.read(MAX_SOURCE_BYTES + 1)
    if len(content) > MAX_SOURCE_BYTES:
        raise ValueError(f"larger than {MAX_SOURCE_BYTES} bytes")
    return content


def compile_problem(name: str, code: bytes) -> str | None:
    """Lua's syntax error for `code`, or None when it compiles (compiled only, never run)."""
    runtime = lua.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
    check = runtime.eval("function(code, name) local f, err = load(code, name, 't', {}) return err end")
    err = check(code, b"=" + name.encode())
    return err.decode("utf-8", "replace") if err is not None else None


def _texts(options: LuaOptions) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    texts: list[tuple[str, bytes]] = []
    issues: list[tuple[str, str]] = []
    for i, path in enumerate(options.sources):
        try:
            texts.append((path, read_source(path)))
        except OSError as exc:
            issues.append((f"sources[{i}]", files.unreadable(path, exc, "a Lua script")))
        except ValueError as exc:
            issues.append((f"sources[{i}]", f"cannot read {path!r}: {exc}"))
    return texts, issues


def _checksum_issues(options: LuaOptions, texts: dict[str, bytes]) -> list[tuple[str, str]]:
    issues = []
    for path, expected in options.md5.items():
        if path not in texts:
            issues.append((f'md5["{path}"]', f"{path!r} is not one of the sources"))
            continue
        actual = hashlib.md5(texts[path], usedforsecurity=False).hexdigest()
        if actual != expected.lower():
            issues.append((f'md5["{path}"]', f"checksum of {path!r} differs: have {actual}, want {expected}"))
    return issues


def _parse(namespace: str, value: Any, ctx: NamespaceContext) -> LuaConfig:
    options = parse_namespace_model(LuaOptions, value, ctx, _EXAMPLE)
    texts, issues = _texts(options)
    issues += _checksum_issues(options, dict(texts))
    for i, (path, content) in enumerate(texts):
        if (problem := compile_problem(path, content)) is not None:
            issues.append((f"sources[{i}]", f"Lua syntax error: {problem}"))
    for field in ("pre", "post"):
        code = getattr(options, field)
        if code and (problem := compile_problem(field, code.encode())) is not None:
            issues.append((field, f"Lua syntax error: {problem}"))
    if issues:
        raise NamespaceError(issues)
    return LuaConfig(namespace, options, tuple(texts), _place(ctx))


def _place(ctx: NamespaceContext) -> str:
    if ctx.backend is not None and ctx.endpoint is not None:
        return f"{ctx.endpoint.method} {ctx.endpoint.endpoint} backend {ctx.backend.url_pattern}"
    if ctx.endpoint is not None:
        return f"{ctx.endpoint.method} {ctx.endpoint.endpoint}"
    return "service"


ENDPOINT_NAMESPACE = Namespace(ENDPOINT, "endpoint", lambda v, ctx: _parse(ENDPOINT, v, ctx), other_scopes=("service",))
PROXY_NAMESPACE = Namespace(PROXY, "endpoint", lambda v, ctx: _parse(PROXY, v, ctx))
BACKEND_NAMESPACE = Namespace(BACKEND, "backend", lambda v, ctx: _parse(BACKEND, v, ctx))
