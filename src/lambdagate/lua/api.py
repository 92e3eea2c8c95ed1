"""The objects a Lua script works on, with KrakenD's method names: a getter without its last argument, a setter
with it (`r:method()` / `r:method("POST")`), as krakend-lua's `request`, `ctx`, `response`, `luaTable`, `luaList`
and `http_response`.

The runtime passes strings as bytes (lupa with `encoding=None`): Lua strings are bytes, so a binary body goes
through unchanged. A script reaches only the methods listed in `_ALLOWED` (lupa's attribute filter), never a Python
attribute such as `__class__`. Values a script stores on the Python side (a table's field, a body) are counted
against the call's memory cap too (`CallState.charge`), since the Lua runtime's own cap does not see them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import lupa.lua54 as lua

from lambdagate.backends.reply_headers import TOKEN
from lambdagate.lua.backend_call import BackendCall, checked_method
from lambdagate.pipeline.render import CONTROL_CHARS

if TYPE_CHECKING:
    from collections.abc import Callable

    from lambdagate.front import Exchange
    from lambdagate.proxy import ProxyRequest, ProxyResponse

    Target = Callable[[ProxyRequest], tuple[str, str, str, str]]

_MAX_DEPTH = 64  # nesting of a Lua table converted to data


class ScriptLimit(Exception):
    """A script went past its call's memory cap on the Python side."""


class CallState:
    """What one call of a script has used outside the Lua runtime; `violation` names a limit it broke."""

    __slots__ = ("budget", "used", "violation")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.violation: str | None = None

    def charge(self, size: int) -> None:
        self.used += size
        if self.used > self.budget:
            self.violation = "memory"
            raise ScriptLimit("memory limit exceeded")


def text(value: Any) -> str:
    """A Lua argument as text (Lua strings arrive as bytes; numbers as Lua's tostring would write them)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def out(value: str | None) -> bytes:
    return (value or "").encode("utf-8", "surrogateescape")


def to_lua(value: Any, state: CallState) -> Any:
    """A data value as a script sees it: objects and arrays wrapped (shared, so changes land in place)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return LuaTableApi(value, state)
    if isinstance(value, list):
        return LuaListApi(value, state)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value).encode()


def from_lua(value: Any, state: CallState, depth: int = 0) -> Any:
    """A script's value as data: strings as text, tables as objects or arrays (1..n keys), wrappers unwrapped."""
    if isinstance(value, bytes):
        state.charge(len(value) + 32)
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (bool, int, float)):
        state.charge(16)
        return value
    if isinstance(value, (LuaTableApi, LuaListApi)):
        return value.data
    if depth >= _MAX_DEPTH:
        raise ValueError(f"a table nested deeper than {_MAX_DEPTH} levels")
    if lua.lua_type(value) == "table":
        items = list(value.items())
        state.charge(64 * (len(items) + 1))
        if all(isinstance(k, int) and not isinstance(k, bool) for k, _ in items) and sorted(
            k for k, _ in items
        ) == list(range(1, len(items) + 1)):
            return [from_lua(v, state, depth + 1) for _, v in sorted(items, key=lambda kv: kv[0])]
        return {text(k): from_lua(v, state, depth + 1) for k, v in items}
    raise ValueError(f"a {lua.lua_type(value) or type(value).__name__} cannot be stored as data")


def header_name(name: Any) -> str:
    key = text(name)
    if not TOKEN.fullmatch(key):
        raise ValueError(f"invalid header name {key!r}")
    return key.lower()


def header_value(value: Any, state: CallState) -> str:
    result = text(value)
    if CONTROL_CHARS.search(result):
        raise ValueError("invalid header value: control characters")
    state.charge(len(result) + 32)
    return result


class LuaTableApi:
    """`luaTable`: a JSON object (a response's data, or a new one), changed in place."""

    __slots__ = ("data", "state")

    def __init__(self, data: dict[str, Any], state: CallState) -> None:
        self.data = data
        self.state = state

    def get(self, key: Any) -> Any:
        return to_lua(self.data.get(text(key)), self.state)

    def set(self, key: Any, value: Any) -> None:
        self.data[text(key)] = from_lua(value, self.state)

    def len(self) -> int:
        return len(self.data)

    def keys(self) -> LuaListApi:
        return LuaListApi(sorted(self.data), self.state)

    def keyExists(self, key: Any) -> bool:
        return text(key) in self.data

    def delete(self, key: Any) -> None:
        self.data.pop(text(key), None)


class LuaListApi:
    """`luaList`: a JSON array, indexed from 0 as in KrakenD."""

    __slots__ = ("data", "state")

    def __init__(self, data: list[Any], state: CallState) -> None:
        self.data = data
        self.state = state

    def get(self, index: Any) -> Any:
        i = int(index)
        return to_lua(self.data[i], self.state) if 0 <= i < len(self.data) else None

    def set(self, index: Any, value: Any) -> None:
        i = int(index)
        if i < 0:
            return
        if i >= len(self.data):
            self.state.charge(16 * (i + 1 - len(self.data)))
            self.data.extend([None] * (i + 1 - len(self.data)))
        self.data[i] = from_lua(value, self.state)

    def len(self) -> int:
        return len(self.data)

    def delete(self, index: Any) -> None:
        i = int(index)
        if 0 <= i < len(self.data):
            del self.data[i]


def _list_values(value: Any) -> list[str]:
    if not isinstance(value, LuaListApi):
        raise ValueError("invalid header value, must be a luaList")
    return [text(v.encode() if isinstance(v, str) else v) for v in value.data]


class LuaRequestApi:
    """`request.load()` in `modifier/lua-proxy` and `modifier/lua-backend`: the request the backends get. At
    backend level, for an HTTP backend (`target`), its method, path and URL are the call's (`lua.backend_call`);
    elsewhere they are the endpoint request's, and a URL set there is only kept (KrakenD's each backend builds its
    own URL; `url_set` says a script tried)."""

    __slots__ = ("req", "state", "_url", "_target", "call", "url_set")

    def __init__(self, req: ProxyRequest, state: CallState, target: Target | None = None) -> None:
        self.req = req
        self.state = state
        self._url = ""
        self._target = target
        self.call: BackendCall | None = None
        self.url_set = False

    def _call(self) -> BackendCall | None:
        if self.call is None and self._target is not None:
            self.call = BackendCall(*self._target(self.req))
        return self.call

    def method(self, *value: Any) -> bytes | None:
        call = self._call()
        if not value:
            return out(call.method if call is not None else self.req.method)
        if call is not None:
            call.set_method(text(value[0]))
        else:
            self.req.method = checked_method(text(value[0]))
        return None

    def path(self, *value: Any) -> bytes | None:
        call = self._call()
        if not value:
            return out(call.path if call is not None else self.req.path)
        self.state.charge(len(value[0] or b"") + 32)
        if call is not None:
            call.set_path(text(value[0]))
        else:
            self.req.path = text(value[0])
        return None

    def host(self, *value: Any) -> bytes | None:
        if not value:
            return out(self.req.host)
        self.req.host = header_value(value[0], self.state)
        return None

    def url(self, *value: Any) -> bytes | None:
        call = self._call()
        if not value:
            return out(call.url(self.req.query) if call is not None else self._url)
        self.state.charge(len(value[0] or b"") + 32)
        if call is not None:
            call.set_url(text(value[0]))
            self.req.query = []
        else:
            self._url, self.url_set = text(value[0]), True
        return None

    def finish(self) -> None:
        """After `pre`: once a script has seen the call's parts (its host picked), the call is that one."""
        call = self.call
        if call is not None:
            self.req.backend_call = (call.method, call.url(self.req.query))

    def query(self, *value: Any) -> bytes | None:
        if not value:
            return out(urlencode(self.req.query))
        self.state.charge(len(value[0] or b"") + 32)
        self.req.query = parse_qsl(text(value[0]), keep_blank_values=True)
        return None

    def params(self, name: Any, *value: Any) -> bytes | None:
        key = _param_key(self.req.params, text(name))
        if not value:
            return out(self.req.params.get(key))
        self.req.params[key] = header_value(value[0], self.state)
        return None

    def headers(self, name: Any, *value: Any) -> bytes | None:
        key = header_name(name)
        if not value:
            return out(self.req.headers.get(key))
        if value[0] is None:
            self.req.headers.pop(key, None)
        else:
            self.req.headers[key] = header_value(value[0], self.state)
        return None

    def headerList(self, name: Any, *value: Any) -> LuaListApi | None:
        key = header_name(name)
        if not value:
            found = self.req.headers.get(key)
            return LuaListApi([found] if found is not None else [], self.state)
        self.req.headers[key] = header_value(", ".join(_list_values(value[0])), self.state)
        return None

    def body(self, *value: Any) -> bytes | None:
        if not value:
            return self.req.body
        body = value[0] if isinstance(value[0], bytes) else out(text(value[0]))
        self.state.charge(len(body))
        self.req.body = body
        return None


def _param_key(params: dict[str, str], name: str) -> str:
    """KrakenD writes parameter names with a capital first letter ("Id" for {id}); either spelling is found."""
    if name in params:
        return name
    return next((k for k in params if k.lower() == name.lower()), name)


class LuaResponseApi:
    """`response.load()` in a post script: a backend's response (`modifier/lua-backend`) or the endpoint's merged
    one (`modifier/lua-proxy`). `touched` says whether the script set the status or a header."""

    __slots__ = ("resp", "state", "touched")

    def __init__(self, resp: ProxyResponse, state: CallState) -> None:
        self.resp = resp
        self.state = state
        self.touched = False

    def isComplete(self, *value: Any) -> bool | None:
        if not value:
            return self.resp.is_complete
        self.resp.is_complete = bool(value[0])
        return None

    def statusCode(self, *value: Any) -> int | None:
        if not value:
            return self.resp.status
        status = int(value[0])
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status}")
        self.resp.status = status
        self.touched = True
        return None

    def data(self) -> LuaTableApi:
        if self.resp.data is None:
            self.resp.data = {}
        return LuaTableApi(self.resp.data, self.state)

    def headers(self, name: Any, *value: Any) -> bytes | None:
        key = header_name(name)
        if not value:
            return out(next((v for k, v in self.resp.headers if k.lower() == key), None))
        self._replace(key, [] if value[0] is None else [header_value(value[0], self.state)])
        return None

    def headerList(self, name: Any, *value: Any) -> LuaListApi | None:
        key = header_name(name)
        if not value:
            return LuaListApi([v for k, v in self.resp.headers if k.lower() == key], self.state)
        self._replace(key, [header_value(v, self.state) for v in _list_values(value[0])])
        return None

    def _replace(self, key: str, values: list[str]) -> None:
        self.resp.headers = [(k, v) for k, v in self.resp.headers if k.lower() != key] + [(key, v) for v in values]
        self.touched = True

    def body(self, *value: Any) -> bytes | None:
        if not value:
            return self.resp.body or b""
        body = value[0] if isinstance(value[0], bytes) else out(text(value[0]))
        self.state.charge(len(body))
        self.resp.body = body
        return None


class LuaContextApi:
    """`ctx.load()` in `modifier/lua-endpoint`: the client's request before the endpoint reads it. Changes reach
    the request the endpoint builds (its input_headers and input_query_strings still filter them)."""

    __slots__ = ("ex", "state", "body_bytes", "body_changed", "_copied")

    def __init__(self, ex: Exchange, state: CallState, body: bytes) -> None:
        self.ex = ex
        self.state = state
        self.body_bytes = body
        self.body_changed = False
        self._copied = False

    def _scope(self) -> dict[str, Any]:
        """The request's ASGI scope, copied before the first change (the server's own is not ours to change)."""
        if not self._copied:
            self.ex.scope = dict(self.ex.scope)
            self.ex.scope["headers"] = list(self.ex.scope["headers"])
            self._copied = True
        return self.ex.scope

    def method(self, *value: Any) -> bytes | None:
        if not value:
            return out(self.ex.method)
        self.ex.method = checked_method(text(value[0]))
        return None

    def url(self, *value: Any) -> bytes | None:
        query = self.ex.scope.get("query_string", b"")
        if not value:
            return out(self.ex.path) + (b"?" + query if query else b"")
        path, _, new_query = text(value[0]).partition("?")
        self.state.charge(len(path) + len(new_query))
        self.ex.path = path
        scope = self._scope()
        scope["path"], scope["raw_path"] = path, path.encode()
        scope["query_string"] = new_query.encode()
        return None

    def host(self, *value: Any) -> bytes | None:
        if not value:
            return self._header(b"host") or b""
        self._set_header(b"host", [header_value(value[0], self.state)])
        return None

    def query(self, name: Any, *value: Any) -> bytes | None:
        key = text(name)
        pairs = parse_qsl(self.ex.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if not value:
            return out(next((v for k, v in pairs if k == key), ""))
        new = text(value[0])
        self.state.charge(len(new) + 32)
        pairs = [(k, v) for k, v in pairs if k != key] + [(key, new)]
        self._scope()["query_string"] = urlencode(pairs).encode("latin-1", "replace")
        return None

    def params(self, name: Any, *value: Any) -> bytes | None:
        key = _param_key(self.ex.params, text(name))
        if not value:
            return out(self.ex.params.get(key))
        self.ex.params = {**self.ex.params, key: header_value(value[0], self.state)}
        return None

    def headers(self, name: Any, *value: Any) -> bytes | None:
        key = header_name(name).encode("latin-1")
        if not value:
            return self._header(key) or b""
        self._set_header(key, [] if value[0] is None else [header_value(value[0], self.state)])
        return None

    def headerList(self, name: Any, *value: Any) -> LuaListApi | None:
        key = header_name(name).encode("latin-1")
        if not value:
            guarded = self._guarded(key)
            found = (
                [v.decode("latin-1") for k, v in self.ex.scope["headers"] if k == key] if guarded is None else [guarded]
            )
            return LuaListApi(found, self.state)
        self._set_header(key, [header_value(v, self.state) for v in _list_values(value[0])])
        return None

    def _guarded(self, key: bytes) -> str | None:
        """A header an earlier guard set (a propagated claim): KrakenD's script reads the request after
        krakend-jose's `Header.Set`, so it sees that value, not the client's."""
        guarded = self.ex.backend_headers
        return None if guarded is None else guarded.get(key.decode("latin-1"))

    def _header(self, key: bytes) -> bytes | None:
        guarded = self._guarded(key)
        if guarded is not None:
            return out(guarded)
        return next((v for k, v in self.ex.scope["headers"] if k == key), None)

    def _set_header(self, key: bytes, values: list[str]) -> None:
        guarded, name = self.ex.backend_headers, key.decode("latin-1")
        if guarded is not None and name in guarded:  # the script's value replaces the guard's, as Header.Set would
            rest = {k: v for k, v in guarded.items() if k != name}
            if values:
                rest[name] = ", ".join(values)
            self.ex.backend_headers = rest or None
        scope = self._scope()
        kept = [(k, v) for k, v in scope["headers"] if k != key]
        scope["headers"] = kept + [(key, v.encode("latin-1", "replace")) for v in values]

    def body(self, *value: Any) -> bytes | None:
        if not value:
            return self.body_bytes
        body = value[0] if isinstance(value[0], bytes) else out(text(value[0]))
        self.state.charge(len(body))
        self.body_bytes = body
        self.body_changed = True
        return None


class LuaHttpResponseApi:
    """What `http_response.new` returns: a finished HTTP exchange (the body was read within its size cap)."""

    __slots__ = ("status", "header_list", "content")

    def __init__(self, status: int, header_list: list[tuple[str, str]], content: bytes) -> None:
        self.status = status
        self.header_list = header_list
        self.content = content

    def statusCode(self) -> int:
        return self.status

    def headers(self, name: Any) -> bytes:
        key = text(name).lower()
        return out(next((v for k, v in self.header_list if k.lower() == key), ""))

    def headerList(self, name: Any) -> LuaListApi:
        key = text(name).lower()
        return LuaListApi([v for k, v in self.header_list if k.lower() == key], CallState(0))

    def body(self) -> bytes:
        return self.content

    def close(self) -> None:
        self.content = b""


_ALLOWED: dict[type, dict[str, str]] = {
    LuaTableApi: {n: n for n in ("get", "set", "len", "keys", "keyExists")} | {"del": "delete"},
    LuaListApi: {n: n for n in ("get", "set", "len")} | {"del": "delete"},
    LuaRequestApi: {
        n: n for n in ("method", "path", "host", "url", "query", "params", "headers", "headerList", "body")
    },
    LuaContextApi: {n: n for n in ("method", "url", "host", "query", "params", "headers", "headerList", "body")},
    LuaResponseApi: {n: n for n in ("isComplete", "statusCode", "data", "headers", "headerList", "body")},
    LuaHttpResponseApi: {n: n for n in ("statusCode", "headers", "headerList", "body", "close")},
}


_KINDS = {cls: cls.__name__.encode() for cls in _ALLOWED}


def kind_of(obj: Any) -> bytes | None:
    """An API object's class name (the runtime wraps it in that class's Lua table), None for anything else."""
    return _KINDS.get(type(obj))


def method_tables(rt: Any) -> Any:
    """{class name: {Lua method name: the class's function}} as a Lua table, for the runtime's wrappers."""
    return rt.table_from(
        {
            kind: rt.table_from({name.encode(): getattr(cls, attr) for name, attr in _ALLOWED[cls].items()})
            for cls, kind in _KINDS.items()
        }
    )


def attribute_filter(obj: Any, name: Any, setting: bool) -> str:
    """lupa's gate for every Python attribute a script touches: only the API's methods, never a write."""
    allowed = _ALLOWED.get(type(obj))
    key = name.decode("latin-1") if isinstance(name, bytes) else name
    if setting or allowed is None or key not in allowed:
        raise AttributeError(f"no method {key!r}")
    return allowed[key]
