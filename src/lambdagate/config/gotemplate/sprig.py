"""The Sprig functions (github.com/Masterminds/sprig, GenericFuncMap) that KrakenD config templates call, with
Sprig's loose conversions. `env` is not here: the flexible-config layer adds it with its allow-list."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

import re2

from lambdagate.config.gotemplate.execute import FuncError
from lambdagate.config.gotemplate.funcs import MAX_LIST, empty, go_quote, strval, to_float, to_int
from lambdagate.config.gotemplate.values import is_nil, to_json


def _list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if is_nil(value):
        return []
    raise FuncError(f"cannot find first on type {type(value).__name__}")


def _bounded(n: int) -> int:
    if n > MAX_LIST:
        raise FuncError(f"{n} is more than the {MAX_LIST} items a template may build")
    return n


def _range(values: range) -> range:
    _bounded(len(values))  # len of a range is O(1): nothing is built before the check
    return values


def _div(a: Any, b: Any) -> int:
    x, y = to_int(a), to_int(b)
    if y == 0:
        raise FuncError("integer divide by zero")
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q  # Go truncates toward zero


def _mod(a: Any, b: Any) -> int:
    x, y = to_int(a), to_int(b)
    if y == 0:
        raise FuncError("integer divide by zero")
    return x - y * _div(x, y)


def _dict(*pairs: Any) -> dict:
    out = {}
    for i in range(0, len(pairs), 2):
        out[strval(pairs[i])] = pairs[i + 1] if i + 1 < len(pairs) else ""
    return out


def json_or_empty(value: Any, **kw: Any) -> str:
    try:
        return to_json(value, **kw)
    except ValueError:
        return ""  # Sprig's toJson and KrakenD's marshal both swallow the error


def _pretty(value: Any) -> str:
    text = json_or_empty(value)
    return json.dumps(json.loads(text), indent=2, ensure_ascii=False) if text else ""


def _from_json(text: Any) -> Any:
    try:
        return json.loads(strval(text), parse_int=float)
    except ValueError:
        return {}


def _b64dec(text: Any) -> str:
    try:
        return base64.b64decode(strval(text), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError) as exc:
        return str(exc)


def _indent(n: Any, text: Any) -> str:
    width = max(0, to_int(n))
    if width * (strval(text).count("\n") + 1) > MAX_TEXT:
        raise FuncError(f"indent would make more than {MAX_TEXT} characters")
    pad = " " * width
    return pad + strval(text).replace("\n", "\n" + pad)


MAX_TEXT = 16 * 1024 * 1024  # characters a string function may build (the executor checks results too)


def _repeat(count: Any, text: Any) -> str:
    n, piece = max(0, to_int(count)), strval(text)
    if n * len(piece) > MAX_TEXT:
        raise FuncError(f"repeat would make {n * len(piece)} characters, more than {MAX_TEXT}")
    return piece * n


def _strings(value: Any) -> list[str]:
    return [strval(v) for v in _list(value) if not is_nil(v)]


def _regex(pattern: Any) -> Any:
    try:
        return re2.compile(strval(pattern))
    except re2.error as exc:
        raise FuncError(f"error parsing regexp: {exc}") from None


_GROUP_REF = re.compile(r"\$(\$|\{(\w+)\}|(\w+))")


def _ascii_digits(text: str) -> bool:
    """Go's digits: str.isdigit() is also true for "²" and "２００"."""
    return text.isascii() and text.isdigit()


def _expand(template: str, match: Any) -> str:
    """Go's Regexp.Expand: $1, ${1}, $name, ${name}; $$ is a dollar; an unknown group is empty."""

    def group(ref: re.Match) -> str:
        if ref.group(1) == "$":
            return "$"
        name = ref.group(2) or ref.group(3)
        try:
            return match.group(int(name) if _ascii_digits(name) else name) or ""
        except (IndexError, KeyError, re2.error):
            return ""

    return _GROUP_REF.sub(group, template)


def _set(d: dict, key: Any, value: Any) -> dict:
    d[strval(key)] = value
    return d


def strings_map() -> dict[str, Callable[..., Any]]:
    return {
        "upper": lambda s: strval(s).upper(),
        "lower": lambda s: strval(s).lower(),
        "title": lambda s: " ".join(w[:1].upper() + w[1:] for w in strval(s).split(" ")),
        "trim": lambda s: strval(s).strip(),
        "trimAll": lambda cut, s: strval(s).strip(strval(cut)),
        "trimPrefix": lambda p, s: strval(s).removeprefix(strval(p)),
        "trimSuffix": lambda p, s: strval(s).removesuffix(strval(p)),
        "replace": lambda old, new, s: strval(s).replace(strval(old), strval(new)),
        "contains": lambda sub, s: strval(sub) in strval(s),
        "hasPrefix": lambda p, s: strval(s).startswith(strval(p)),
        "hasSuffix": lambda p, s: strval(s).endswith(strval(p)),
        "repeat": _repeat,
        "nospace": lambda s: "".join(strval(s).split()),
        "cat": lambda *a: " ".join(strval(v) for v in a if not is_nil(v)),
        "indent": _indent,
        "nindent": lambda n, s: "\n" + _indent(n, s),
        "quote": lambda *a: " ".join(go_quote(strval(v)) for v in a if not is_nil(v)),
        "squote": lambda *a: " ".join(f"'{strval(v)}'" for v in a if not is_nil(v)),
        "join": lambda sep, v: strval(sep).join(_strings(v)) if not isinstance(v, str) else v,
        "split": lambda sep, s: {f"_{i}": p for i, p in enumerate(strval(s).split(strval(sep)))},
        "splitList": lambda sep, s: strval(s).split(strval(sep)),
        "splitn": lambda sep, n, s: {f"_{i}": p for i, p in enumerate(strval(s).split(strval(sep), to_int(n) - 1))},
        "regexMatch": lambda r, s: _regex(r).search(strval(s)) is not None,
        "regexFind": lambda r, s: m.group() if (m := _regex(r).search(strval(s))) else "",
        "regexReplaceAll": lambda r, s, repl: _regex(r).sub(lambda m: _expand(strval(repl), m), strval(s)),
        "b64enc": lambda s: base64.b64encode(strval(s).encode()).decode(),
        "b64dec": _b64dec,
        "toString": strval,
        "toStrings": _strings,
        "atoi": lambda s: to_int(strval(s)) if _ascii_digits(strval(s).strip().lstrip("+-")) else 0,
    }


def collections_map() -> dict[str, Callable[..., Any]]:
    return {
        "list": lambda *a: list(a),
        "tuple": lambda *a: list(a),
        "dict": _dict,
        "hasKey": lambda d, k: strval(k) in d if isinstance(d, dict) else False,
        "get": lambda d, k: d.get(strval(k), "") if isinstance(d, dict) else "",
        "set": _set,
        "unset": lambda d, k: (d.pop(strval(k), None), d)[1],
        "keys": lambda *ds: [k for d in ds for k in d],
        "values": lambda d: list(d.values()),
        "pick": lambda d, *ks: {k: d[k] for k in map(strval, ks) if k in d},
        "omit": lambda d, *ks: {k: v for k, v in d.items() if k not in set(map(strval, ks))},
        "first": lambda v: (_list(v) or [None])[0],
        "last": lambda v: (_list(v) or [None])[-1],
        "rest": lambda v: _list(v)[1:],
        "initial": lambda v: _list(v)[:-1],
        "append": lambda v, x: [*_list(v), x],
        "push": lambda v, x: [*_list(v), x],
        "prepend": lambda v, x: [x, *_list(v)],
        "concat": lambda *vs: [x for v in vs for x in _list(v)],
        "has": lambda needle, v: any(needle == x for x in _list(v)),
        "without": lambda v, *xs: [x for x in _list(v) if x not in xs],
        "uniq": lambda v: [x for i, x in enumerate(_list(v)) if x not in _list(v)[:i]],
        "compact": lambda v: [x for x in _list(v) if not empty(x)],
        "reverse": lambda v: _list(v)[::-1],
        "sortAlpha": lambda v: sorted(_strings(v)),
        "until": lambda n: list(range(_bounded(to_int(n)))),
        "untilStep": lambda a, b, s: list(_range(range(to_int(a), to_int(b), to_int(s) or 1))),
    }


def values_map() -> dict[str, Callable[..., Any]]:
    return {
        "default": lambda d, *given: d if not given or empty(given[0]) else given[0],
        "empty": empty,
        "coalesce": lambda *a: next((v for v in a if not empty(v)), None),
        "ternary": lambda yes, no, cond: yes if cond is True else no,
        "add": lambda *a: sum(to_int(v) for v in a),
        "add1": lambda a: to_int(a) + 1,
        "sub": lambda a, b: to_int(a) - to_int(b),
        "mul": lambda *a: _product(a),
        "div": _div,
        "mod": _mod,
        "max": lambda a, *r: max([to_int(a), *map(to_int, r)]),
        "min": lambda a, *r: min([to_int(a), *map(to_int, r)]),
        "int": to_int,
        "int64": to_int,
        "float64": to_float,
        "toJson": json_or_empty,
        "toRawJson": lambda v: json_or_empty(v, html_escape=False),
        "toPrettyJson": _pretty,
        "fromJson": _from_json,
        "kindOf": lambda v: {str: "string", bool: "bool", int: "int", float: "float64", list: "slice", dict: "map"}.get(
            type(v), "invalid"
        ),
        "required": lambda msg, v: v if not is_nil(v) and v != "" else _fail(strval(msg)),
        "fail": _fail,
    }


def _product(values: tuple) -> int:
    out = 1
    for v in values:
        out *= to_int(v)
    return out


def _fail(message: str) -> Any:
    raise FuncError(message)


def sprig_functions() -> dict[str, Callable[..., Any]]:
    return {**strings_map(), **collections_map(), **values_map()}
