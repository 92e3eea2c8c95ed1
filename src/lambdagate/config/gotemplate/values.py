"""Go's view of template values: how they print (`fmt`'s %v), which are true, how they compare, and how
`encoding/json` writes them (KrakenD's `marshal` and Sprig's `toJson`).

Settings files are decoded as Go decodes JSON into `interface{}`: every number is a float64, so 8080 prints as
"8080" and 1e21 as "1e+21", and comparing it with the template literal 8080 (an int) is a type error, as in Go.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from lambdagate.config.gotemplate.parse import NIL


class Missing:
    """A map key that is not there, or a JSON null: Go prints it as "<no value>"."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = Missing()


def is_nil(value: Any) -> bool:
    return value is None or value is NIL or value is NO_VALUE


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil, and empty strings, lists and maps are false."""
    if is_nil(value):
        return False
    if isinstance(value, (bool, int, float, str, list, dict, tuple)):
        return bool(value)
    return True


def go_float(value: float, *, json: bool = False) -> str:
    """A float64 as fmt's %v writes it (exponent from 1e21 or below 1e-4), or as encoding/json does (1e-6)."""
    if math.isinf(value) or math.isnan(value):
        return "+Inf" if value > 0 else "-Inf" if value < 0 else "NaN"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 and not json else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # the decimal point's position in `text`
    small = -6 if json else -4
    if point - 1 < small or point - 1 >= 21:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        exp = point - 1
        out = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif point <= 0:
        out = "0." + "0" * -point + text
    elif point >= len(text):
        out = text + "0" * (point - len(text))
    else:
        out = text[:point] + "." + text[point:]
    return ("-" if sign else "") + out


def go_string(value: Any, *, top: bool = True) -> str:
    """fmt.Sprint of one value."""
    if value is NO_VALUE or (top and value is None):
        return "<no value>"
    if value is None or value is NIL:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_string(v, top=False) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{go_string(k, top=False)}:{go_string(value[k], top=False)}" for k in sorted(value, key=str))
        return "map[" + " ".join(pairs) + "]"
    return str(value)


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "nil" if is_nil(value) else "other"


class CompareError(Exception):
    pass


def equal(a: Any, b: Any) -> bool:
    """Go's `eq` for two values: same basic kind, or both nil."""
    ka, kb = kind(a), kind(b)
    if ka == "nil" or kb == "nil":
        return ka == kb
    if ka != kb:
        raise CompareError("incompatible types for comparison")
    if ka == "other":
        raise CompareError("non-comparable type")
    return a == b


def less(a: Any, b: Any) -> bool:
    """Go's `lt`: ordered basic kinds only."""
    ka, kb = kind(a), kind(b)
    if ka in ("bool", "nil", "other") or kb in ("bool", "nil", "other"):
        raise CompareError("invalid type for comparison")
    if ka != kb:
        raise CompareError("incompatible types for comparison")
    return a < b


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_JSON_SPECIAL = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029]')


def _json_char(match: re.Match) -> str:
    ch = match.group()
    return _JSON_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def to_json(value: Any, *, html_escape: bool = True) -> str:
    """encoding/json.Marshal: sorted map keys, no spaces, "<>&" escaped (unless `html_escape` is off)."""
    if is_nil(value):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            raise ValueError(f"json: unsupported value: {go_float(value)}")
        return go_float(value, json=True)
    if isinstance(value, str):
        if html_escape:
            return '"' + _JSON_SPECIAL.sub(_json_char, value) + '"'
        return '"' + re.sub('["\\\\\x00-\x1f\u2028\u2029]', _json_char, value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v, html_escape=html_escape) for v in value) + "]"
    if isinstance(value, dict):
        items = (
            f"{to_json(str(k), html_escape=html_escape)}:{to_json(value[k], html_escape=html_escape)}"
            for k in sorted(value, key=str)
        )
        return "{" + ",".join(items) + "}"
    raise ValueError(f"json: unsupported type {type(value).__name__}")
