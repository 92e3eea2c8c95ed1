"""The functions a KrakenD config template can call: Go's built-ins (`eq`, `index`, `printf`, …) and the Sprig
functions real configs use (`default`, `quote`, `splitList`, `toJson`, …), with Go's and Sprig's results.

Sprig converts loosely (`add "2" 1.9` is 3: strings parsed, floats truncated); Go's built-ins do not (`eq 1 1.0`
is an error). Both are kept as they are, so a template renders here exactly as it does in KrakenD.
"""

from __future__ import annotations

import html
import json
import math
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from lambdagate.config.gotemplate.execute import FuncError
from lambdagate.config.gotemplate.values import equal, go_float, go_string, is_nil, kind, less, truth

MAX_LIST = 100_000  # `until`, `repeat` and friends: bigger results are refused, not built


def strval(value: Any) -> str:
    return value if isinstance(value, str) else go_string(value, top=False)


def to_int(value: Any) -> int:
    """Sprig's toInt64 (spf13/cast): numbers truncated, numeric strings parsed, anything else 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 0) if text[:2].lower() in ("0x", "0o", "0b") else int(text, 10)
        except ValueError:
            try:
                return int(float(text))
            except (ValueError, OverflowError):
                return 0
    return 0


def to_float(value: Any) -> float:
    if isinstance(value, (bool, int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else 0.0
    except ValueError:
        return 0.0


def empty(value: Any) -> bool:
    return not truth(value)


def go_quote(text: str) -> str:
    """strconv.Quote, close enough for config text: JSON's escaping without HTML escapes."""
    return json.dumps(text, ensure_ascii=False)


def _sprint(*args: Any, spaces: bool = False) -> str:
    """fmt.Sprint: a space between operands when neither is a string (always, for Sprintln)."""
    out = []
    for i, arg in enumerate(args):
        if i and (spaces or not (isinstance(arg, str) or isinstance(args[i - 1], str))):
            out.append(" ")
        out.append(go_string(arg, top=False))
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def printf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %d %f %e %g %t %q %x %X %c %%."""
    pending = list(args)
    used = 0

    def one(match: re.Match) -> str:
        nonlocal used
        flags, width, precision, verb = match.groups()
        if verb == "%":
            return "%"
        if used >= len(pending):
            return f"%!{verb}(MISSING)"
        value = pending[used]
        used += 1
        return _pad(_format(verb, value, precision), flags, width)

    text = _VERB.sub(one, fmt)
    if used < len(pending):
        extra = ", ".join(f"{_go_type(v)}={go_string(v, top=False)}" for v in pending[used:])
        text += f"%!(EXTRA {extra})"
    return text


def _go_type(value: Any) -> str:
    return {"bool": "bool", "int": "int", "float": "float64", "string": "string"}.get(kind(value), "interface {}")


def _format(verb: str, value: Any, precision: str | None) -> str:
    k = kind(value)
    if verb in "vs" and not (verb == "s" and k in ("int", "float", "bool")):
        text = go_string(value, top=False)
        return text[: int(precision)] if precision and verb == "s" else text
    if verb == "d" and k == "int":
        return str(value)
    if verb in "feEgG" and k in ("float", "int"):
        if verb in "gG" and precision is None:
            return go_float(float(value))
        return format(float(value), f".{6 if precision is None else precision}{verb}")
    if verb == "t" and k == "bool":
        return "true" if value else "false"
    if verb == "q" and k == "string":
        return go_quote(value)
    if verb in "xX" and k in ("int", "string"):
        text = format(value, "x") if k == "int" else value.encode().hex()
        return text.upper() if verb == "X" else text
    if verb == "c" and k == "int":
        return chr(value)
    return f"%!{verb}({_go_type(value)}={go_string(value, top=False)})"


def _pad(text: str, flags: str, width: str | None) -> str:
    if not width or len(text) >= int(width):
        return text
    if "-" in flags:
        return text.ljust(int(width))
    if "0" in flags and text.lstrip("-+").replace(".", "", 1).isdigit():
        sign = text[0] if text[0] in "-+" else ""
        return sign + text[len(sign) :].rjust(int(width) - len(sign), "0")
    return text.rjust(int(width))


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    raise FuncError(f"len of type {_go_type(value)}")


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key if isinstance(key, str) else strval(key))
        elif isinstance(item, (list, tuple, str)):
            if kind(key) != "int":
                raise FuncError(f"cannot index slice/array with type {_go_type(key)}")
            if not 0 <= key < len(item):
                raise FuncError(f"index out of range: {key}")
            item = item[key] if not isinstance(item, str) else item.encode()[key]
        elif is_nil(item):
            raise FuncError("index of untyped nil")
        else:
            raise FuncError(f"can't index item of type {_go_type(item)}")
    return item


def go_builtins() -> dict[str, Callable[..., Any]]:
    """text/template's predefined functions (`and`/`or` are evaluated lazily by the executor)."""
    return {
        "and": lambda *a: a,
        "or": lambda *a: a,
        "not": lambda v: not truth(v),
        "len": _length,
        "index": _index,
        "print": lambda *a: _sprint(*a),
        "println": lambda *a: _sprint(*a, spaces=True) + "\n",
        "printf": printf,
        "eq": lambda a, *bs: any(equal(a, b) for b in bs) if bs else _raise("missing argument for comparison"),
        "ne": lambda a, b: not equal(a, b),
        "lt": less,
        "le": lambda a, b: less(a, b) or equal(a, b),
        "gt": lambda a, b: less(b, a),
        "ge": lambda a, b: less(b, a) or equal(a, b),
        "html": lambda *a: html.escape(_sprint(*a)).replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
        "js": lambda *a: json.dumps(_sprint(*a))[1:-1].replace("'", "\\'"),
        "urlquery": lambda *a: urllib.parse.quote_plus(_sprint(*a)),
    }


def _raise(message: str) -> Any:
    raise FuncError(message)
