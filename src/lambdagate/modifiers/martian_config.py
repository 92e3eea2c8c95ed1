"""`modifier/martian` (a backend's extra_config): KrakenD's martian modifiers, read and checked once at load time.

The value is one google/martian modifier written as JSON, `{"<type>": {..., "scope": ["request", "response"]}}`,
where groups (`fifo.Group`, `priority.Group`) and filters (`header.Filter`, `querystring.Filter`, `url.Filter`,
`header.RegexFilter`) hold further modifiers. It becomes a tree of `Spec`s (plain data: workers rebuild it from the
config); modifiers/martian.py turns that tree into callables when the backend is built.

KrakenD logs a modifier it cannot read and then calls the backend without any modifier; here every such problem
(an unknown type, a wrong JSON type, a scope the type has no use for) refuses the config with its JSON path, since a
dropped modifier can be a dropped header blacklist. Unknown keys are warned about, as Go's decoder ignores them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from lambdagate.backends.reply_headers import TOKEN
from lambdagate.config import namespaces
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.config.server_options import server_options
from lambdagate.pipeline.render import CONTROL_CHARS
from lambdagate.security.patterns import pattern_error

NAMESPACE = "modifier/martian"
LEGACY_NAMES = ("github.com/devopsfaith/krakend-martian",)
REQUEST, RESPONSE = "request", "response"
BOTH = frozenset({REQUEST, RESPONSE})
MAX_DEPTH = 32  # groups and filters nested deeper than this are refused (no recursion limit is ever reached)
DEFAULT_ID_HEADER = "X-Krakend-Id"  # krakend-martian's header.Id default
# Headers that frame the message: the gateway computes them from the body it sends or reads.
FRAMING = frozenset({"content-length", "transfer-encoding"})
_EXAMPLE = '{"header.Modifier": {"scope": ["request"], "name": "X-Foo", "value": "bar"}}'

# Field kinds, as Go's JSON decoder reads them: a value of another JSON type fails the decode; null leaves the
# field's zero value.
STR, BOOL, INT, STRS = "a string", "true or false", "a whole number", "a list of strings"
MOD, MODS, PRIOS = "a modifier", "a list of modifiers", 'a list of {"priority": 0, "modifier": {...}}'
_ZERO: dict[str, Any] = {STR: "", BOOL: False, INT: 0, STRS: (), MOD: None, MODS: (), PRIOS: ()}


@dataclass(frozen=True, slots=True)
class Spec:
    """One modifier: its type, where it runs (`scope`), its checked options, and the modifiers it holds (a group's
    members in the order they run; a filter's `modifier`), plus a filter's `else`."""

    type: str
    scope: frozenset[str]
    options: dict[str, Any] = field(default_factory=dict)
    children: tuple[Spec, ...] = ()
    otherwise: Spec | None = None


@dataclass
class _Walk:
    issues: list[tuple[str, str]]
    warnings: list[tuple[str, str]]
    max_request_body: int
    max_response_body: int

    def fail(self, path: str, message: str) -> None:
        self.issues.append((path, message))


@dataclass(frozen=True)
class _Type:
    scopes: frozenset[str]  # what the type can modify
    fields: dict[str, str]  # JSON key → kind
    check: Callable[[dict[str, Any], str, _Walk, frozenset[str]], None] = lambda values, path, walk, scope: None


def _sub(path: str, key: str) -> str:
    return f"{path}.{key}"


def _header_name(values: dict, key: str, path: str, walk: _Walk, *, framing_ok: bool = False) -> None:
    name = values[key]
    if not name:
        walk.fail(_sub(path, key), "required: a header name such as X-Foo")
    elif not TOKEN.fullmatch(name):
        walk.fail(_sub(path, key), f"{name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
    elif not framing_ok and name.lower() in FRAMING:
        walk.fail(_sub(path, key), f"{name} frames the message, and the gateway sets it itself: use another header")


def _text(values: dict, key: str, path: str, walk: _Walk, what: str = "a header value") -> None:
    if CONTROL_CHARS.search(values[key]):
        walk.fail(_sub(path, key), f"{values[key][:60]!r} cannot be {what}: it holds control characters")


def _required(values: dict, key: str, path: str, walk: _Walk, what: str) -> None:
    if not values[key]:
        walk.fail(_sub(path, key), f"required: {what}")


def _check_set(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _header_name(values, "name", path, walk)
    _text(values, "value", path, walk)


def _check_append(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _check_set(values, path, walk, scope)
    if REQUEST in scope and values["name"].lower() == "host":
        # martian fails every request then (a request has one Host already).
        walk.fail(_sub(path, "name"), "a request has a single Host: use header.Modifier to replace it")


def _check_copy(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _header_name(values, "from", path, walk, framing_ok=True)
    _header_name(values, "to", path, walk)


def _check_id(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    values["header"] = values["header"] or DEFAULT_ID_HEADER
    _header_name(values, "header", path, walk)


def _check_header_filter(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _header_name(values, "name", path, walk, framing_ok=True)
    _text(values, "value", path, walk)


def _check_regex_filter(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _header_name(values, "header", path, walk, framing_ok=True)
    problem = pattern_error(values["regex"])
    if problem is not None:
        walk.fail(_sub(path, "regex"), problem)


def _check_query(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _required(values, "name", path, walk, "the query string parameter's name")


def _check_stash(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _header_name(values, "headerName", path, walk)
    if RESPONSE in scope and REQUEST not in scope:
        # martian's own rule: the response gets the header the request was given.
        walk.fail(_sub(path, "scope"), 'to write the header on a response, write "scope": ["request", "response"]')


# A host (name, IPv4 or [IPv6]) with an optional port; a filter's host may use `*` for a label.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(:[0-9]{1,5})?")
_HOST_PATTERN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~*-]+)(:[0-9]{1,5})?")
_QUERY_BAD = re.compile(r"[\x00-\x20\x7f#]|[^\x00-\x7f]")


def _check_url(values: dict, path: str, walk: _Walk, *, pattern: bool) -> None:
    host = values["host"]
    shape = _HOST_PATTERN if pattern else _HOST
    match = shape.fullmatch(host) if host else None
    if host and (match is None or (match[2] and int(match[2][1:]) > 65535)):
        walk.fail(_sub(path, "host"), f"{host!r} is not a host such as api.example.com or api.example.com:8080")
    if _QUERY_BAD.search(values["query"]):
        walk.fail(_sub(path, "query"), "must be an encoded query string, such as a=1&b=x%20y (no spaces or #)")
    _text(values, "path", path, walk, "a path")


def _check_url_modifier(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    if values["scheme"] not in ("", "http", "https"):
        walk.fail(_sub(path, "scheme"), f'{values["scheme"]!r}: the gateway calls backends over "http" or "https"')
    if values["path"] and not values["path"].startswith("/"):
        walk.fail(_sub(path, "path"), f"{values['path']!r} must start with /")
    _check_url(values, path, walk, pattern=False)


def _check_url_filter(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _check_url(values, path, walk, pattern=True)


def _check_body(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    _text(values, "contentType", path, walk)
    text = values["body"].replace("\r", "").replace("\n", "")  # Go's decoder skips line breaks
    try:
        body = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        walk.fail(_sub(path, "body"), "must be base64 (standard alphabet, with its = padding), e.g. eyJhIjogMX0=")
        return
    # The body is sent or answered on every call: it counts against the limits a client's body or a backend's
    # reply has.
    limits = (
        (REQUEST, walk.max_request_body, "max_body_bytes"),
        (RESPONSE, walk.max_response_body, "max_backend_response_bytes"),
    )
    for where, limit, name in limits:
        if where in scope and len(body) > limit:
            walk.fail(_sub(path, "body"), f"{len(body)} bytes: more than lambdagate/server {name} ({limit})")
    values["body"] = body


_COOKIE_BAD = re.compile(r'[\x00-\x1f\x7f";\\]|[^\x00-\x7f]')
_DOMAIN = re.compile(r"\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\]")


def _expires(values: dict, path: str, walk: _Walk) -> datetime | None:
    text = values["expires"]
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        walk.fail(_sub(path, "expires"), f"{text!r} is not a time such as 2030-01-02T15:04:05Z (RFC 3339)")
        return None
    return when if when.year >= 1601 else None  # Go's http.Cookie leaves out an earlier Expires


def _check_cookie(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    name, value = values["name"], values["value"]
    if not TOKEN.fullmatch(name):
        walk.fail(_sub(path, "name"), f"{name!r} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)")
    for key in ("value", "path"):
        if _COOKIE_BAD.search(values[key]):
            walk.fail(_sub(path, key), f"{values[key][:60]!r} cannot be in a cookie: no quotes, ; \\ or controls")
    domain = values["domain"]
    if domain and not _DOMAIN.fullmatch(domain):
        walk.fail(_sub(path, "domain"), f"{domain!r} is not a cookie domain such as example.com")
    expires = _expires(values, path, walk)
    # As Go writes them (net/http Cookie.String): a value with a space or comma is quoted.
    pair = f'{name}="{value}"' if (" " in value or "," in value) else f"{name}={value}"
    parts = [pair]
    if values["path"]:
        parts.append(f"Path={values['path']}")
    if domain:
        parts.append(f"Domain={domain.removeprefix('.')}")
    if expires is not None:
        parts.append(f"Expires={format_datetime(expires.astimezone(UTC), usegmt=True)}")
    if values["maxAge"]:
        parts.append(f"Max-Age={max(values['maxAge'], 0)}")
    parts += [flag for key, flag in (("httpOnly", "HttpOnly"), ("secure", "Secure")) if values[key]]
    values["pair"], values["set_cookie"] = pair, "; ".join(parts)


def _check_port(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    chosen = [key for key in ("port", "defaultForScheme", "remove") if values[key]]
    if len(chosen) != 1:
        walk.fail(path, "write exactly one of port, defaultForScheme or remove (martian's rule)")
    elif values["port"] and not 0 < values["port"] < 65536:
        walk.fail(_sub(path, "port"), f"{values['port']} is not a TCP port (1-65535)")


def _check_status(values: dict, path: str, walk: _Walk, scope: frozenset[str]) -> None:
    if not 200 <= values["statusCode"] <= 599:
        walk.fail(_sub(path, "statusCode"), f"{values['statusCode']} is not a final HTTP status (200-599)")


REQUEST_ONLY, RESPONSE_ONLY = frozenset({REQUEST}), frozenset({RESPONSE})
_FILTER = {"modifier": MOD, "else": MOD}
_URL = {"scheme": STR, "host": STR, "path": STR, "query": STR}
_COOKIE = {"name": STR, "value": STR, "path": STR, "domain": STR, "expires": STR}
# Every type lambdagate reads: the ones krakend-ce compiles in (google/martian's header, querystring, url, body,
# cookie, stash, port, status, fifo and priority packages, krakend-martian's header.Id) but static.Modifier, which
# serves files from the gateway's disk.
TYPES: dict[str, _Type] = {
    "header.Modifier": _Type(BOTH, {"name": STR, "value": STR}, _check_set),
    "header.Append": _Type(BOTH, {"name": STR, "value": STR}, _check_append),
    "header.Blacklist": _Type(BOTH, {"names": STRS}),
    "header.Copy": _Type(BOTH, {"from": STR, "to": STR}, _check_copy),
    "header.Id": _Type(REQUEST_ONLY, {"header": STR}, _check_id),
    "header.Filter": _Type(BOTH, {"name": STR, "value": STR, **_FILTER}, _check_header_filter),
    "header.RegexFilter": _Type(BOTH, {"header": STR, "regex": STR, "modifier": MOD}, _check_regex_filter),
    "querystring.Modifier": _Type(REQUEST_ONLY, {"name": STR, "value": STR}, _check_query),
    "querystring.Filter": _Type(BOTH, {"name": STR, "value": STR, **_FILTER}, _check_query),
    "url.Modifier": _Type(REQUEST_ONLY, _URL, _check_url_modifier),
    "url.Filter": _Type(BOTH, {**_URL, **_FILTER}, _check_url_filter),
    "body.Modifier": _Type(BOTH, {"contentType": STR, "body": STR}, _check_body),
    "cookie.Modifier": _Type(BOTH, {**_COOKIE, "secure": BOOL, "httpOnly": BOOL, "maxAge": INT}, _check_cookie),
    "stash.Modifier": _Type(BOTH, {"headerName": STR}, _check_stash),
    "port.Modifier": _Type(REQUEST_ONLY, {"port": INT, "defaultForScheme": BOOL, "remove": BOOL}, _check_port),
    "status.Modifier": _Type(RESPONSE_ONLY, {"statusCode": INT}, _check_status),
    "fifo.Group": _Type(BOTH, {"modifiers": MODS, "aggregateErrors": BOOL}),
    "priority.Group": _Type(BOTH, {"modifiers": PRIOS}),
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _scope(raw: Any, name: str, supported: frozenset[str], path: str, walk: _Walk) -> frozenset[str]:
    """Where the modifier runs: all it can modify when `scope` is absent, as martian reads it."""
    if raw is None:
        return supported
    if not isinstance(raw, list):
        walk.fail(_sub(path, "scope"), f'must be a list such as ["request", "response"], got {_short(raw)}')
        return frozenset()
    scope = set()
    for i, item in enumerate(raw):
        if item not in BOTH:
            walk.fail(f"{path}.scope[{i}]", f'must be "request" or "response", got {_short(item)}')
        elif item not in supported:
            (only,) = supported
            walk.fail(f"{path}.scope[{i}]", f'{name} modifies {only}s only: remove "{item}"')
        else:
            scope.add(item)
    return frozenset(scope)


def _field(raw: Any, kind: str, path: str, walk: _Walk, depth: int) -> tuple[Any, bool]:
    """(value, read without a problem) of one field of `kind`."""
    if raw is None:
        return _ZERO[kind], True
    if kind == MOD:
        spec = _modifier(raw, path, walk, depth + 1)
        return spec, spec is not None
    good = {
        STR: isinstance(raw, str),
        BOOL: isinstance(raw, bool),
        INT: isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < 2**63,
    }.get(kind, isinstance(raw, list))
    if not good or (kind == STRS and not all(isinstance(item, str) for item in raw)):
        walk.fail(path, f"must be {kind}, got {_short(raw)}")
        return _ZERO[kind], False
    if kind == MODS:
        specs = [_modifier(item, f"{path}[{i}]", walk, depth + 1) for i, item in enumerate(raw)]
        return tuple(specs), None not in specs
    if kind == PRIOS:
        return _prioritised(raw, path, walk, depth)
    return (tuple(raw) if kind == STRS else raw), True


def _prioritised(raw: list, path: str, walk: _Walk, depth: int) -> tuple[tuple[Spec, ...], bool]:
    """priority.Group's members in the order they run: highest priority first and, as martian inserts them, the
    later of two with the same priority first."""
    ranked, good = [], True
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            walk.fail(where, f'must be an object such as {{"priority": 0, "modifier": {_EXAMPLE}}}')
            good = False
            continue
        priority, ok = _field(item.get("priority"), INT, f"{where}.priority", walk, depth)
        spec, found = _field(item.get("modifier"), MOD, f"{where}.modifier", walk, depth)
        if item.get("modifier") is None:
            walk.fail(f"{where}.modifier", f"required: the modifier, such as {_EXAMPLE}")
        for key in item.keys() - {"priority", "modifier"}:
            walk.warnings.append((f"{where}.{key}", "not supported, ignored"))
        good = good and ok and found and spec is not None
        ranked.append((-priority, -i, spec))
    return tuple(spec for _, _, spec in sorted(ranked, key=lambda r: r[:2]) if spec is not None), good


def _modifier(value: Any, path: str, walk: _Walk, depth: int) -> Spec | None:
    """One `{"<type>": {...}}` object as a Spec, or None (its problems are in walk.issues)."""
    if depth > MAX_DEPTH:
        walk.fail(path, f"modifiers are nested more than {MAX_DEPTH} levels deep")
        return None
    if not isinstance(value, dict) or len(value) != 1:
        got = f"{len(value)} keys ({', '.join(map(str, value))})" if isinstance(value, dict) else _short(value)
        walk.fail(path, f"must be an object with exactly one modifier, such as {_EXAMPLE}; got {got}")
        return None
    ((name, body),) = value.items()
    sub = f'{path}["{name}"]'
    kind = TYPES.get(name)
    if kind is None:
        walk.fail(sub, f"unknown martian modifier {name!r}; lambdagate reads {', '.join(TYPES)}")
        return None
    body = {} if body is None else body
    if not isinstance(body, dict):
        walk.fail(sub, f"must be an object, got {_short(body)}")
        return None
    for key in body.keys() - kind.fields.keys() - {"scope"}:
        walk.warnings.append((_sub(sub, key), "not supported, ignored"))
    values, good = {}, True
    for key, field_kind in kind.fields.items():
        values[key], ok = _field(body.get(key), field_kind, _sub(sub, key), walk, depth)
        good = good and ok
    scope = _scope(body.get("scope"), name, kind.scopes, sub, walk)
    if "modifier" in kind.fields and body.get("modifier") is None:
        walk.fail(_sub(sub, "modifier"), f"required: the modifier to run when the filter matches, such as {_EXAMPLE}")
    if not good:
        return None
    kind.check(values, sub, walk, scope)
    children = values.pop("modifiers", ()) or ((values.pop("modifier"),) if values.get("modifier") else ())
    return Spec(name, scope, values, tuple(children), values.pop("else", None))


def _other_backend_type(ctx: NamespaceContext) -> str | None:
    for key in ctx.backend.extra_config if ctx.backend is not None else ():
        ns = namespaces.lookup(key)
        if ns is not None and ns.backend_type:
            return ns.name
    return None


def parse(value: Any, ctx: NamespaceContext) -> Spec | None:
    other = _other_backend_type(ctx)
    if other is not None:
        # KrakenD's martian wraps the HTTP client only: on such a backend it would be silently skipped.
        raise NamespaceError(
            [("", f"applies to HTTP backends only, and this is a {other} backend (KrakenD skips it there): remove it")]
        )
    if isinstance(value, dict) and not any("." in str(key) for key in value):
        # No key names a modifier type ("header.Modifier", ...): not a modifier at all. KrakenD logs an error and
        # calls the backend unmodified; nothing here asked for a header to be removed, so it starts here too.
        keys = ", ".join(map(str, list(value)[:5])) or "none"
        ctx.warnings.append(("", f"holds no martian modifier (keys: {keys}): ignored, as KrakenD does"))
        return None
    options = server_options(ctx.service)
    walk = _Walk([], ctx.warnings, options.max_body_bytes, options.max_backend_response_bytes)
    spec = _modifier(value, "", walk, 0)
    if walk.issues or spec is None:
        raise NamespaceError(walk.issues)
    return spec


MARTIAN_NAMESPACE = Namespace(NAMESPACE, "backend", parse, aliases=LEGACY_NAMES)
