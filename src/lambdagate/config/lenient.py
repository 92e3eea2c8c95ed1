"""KrakenD's lenient reading of the core keys: the conversions its decoder makes, each made here with a warning.

KrakenD reads the file with viper, which decodes it into Lura's config structs with mapstructure's
`WeaklyTypedInput` and two hooks (a string to a duration, a string split at commas into a list). So KrakenD starts
with `"is_collection": "true"`, `"concurrent_calls": true` or `"input_headers": "Authorization"`. The same
values start here, each with a warning saying what to write. Only the core service, endpoint and backend keys are
read this way (the namespaces' own fields keep their strict types), and only as KrakenD reads them: a value its
decoder refuses (`"is_collection": "yes"`, `"port": "80a"`) is left as is, for the model to refuse with its path.

The conversions, by the Go type of the field (mapstructure 1.5's rules):
- int: true/false → 1/0; a number with a fraction → its integer part; a string Go's strconv.ParseInt reads with
  base 0 ("8080", "0x1F", "017" octal, "" → 0).
- bool: a number → whether it is not 0; "1", "t", "T", "TRUE", "true", "True" and their false forms; "" → false.
- string: true/false → "1"/"0"; a number → its decimal digits.
- list of strings: a string → split at every "," ("" → []); one value → a list of it; each element as a string.
- list of objects (endpoints, backends): one object → a list of it; {} → [].
- object (extra_config, mapping): a list of objects → one object with all their keys ([] → {}).
- duration: a bare number → that many nanoseconds (a Go time.Duration is an integer of them).
- any key set to null → not set.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from lambdagate.errors import ConfigIssue

_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_INT64 = 2**63
# strconv.ParseInt with base 0: an optional sign, then a 0x/0o/0b prefix, a leading 0 (octal) or decimal digits;
# "_" only between digits, and only after a prefix or in a base-0 literal (Go's underscoreOK).
_GO_INT = re.compile(r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|0(_?[0-7])*|[1-9](_?[0-9])*)")

SERVICE_KEYS = {
    "str": ("name", "listen_ip", "output_encoding"),
    "int": ("port", "version", "max_header_bytes", "max_idle_connections", "max_idle_connections_per_host"),
    "bool": (
        "disable_keep_alives",
        "disable_compression",
        "disable_rest",
        "use_h2c",
        "debug_endpoint",
        "echo_endpoint",
        "sequential_start",
        "allow_insecure_connections",
    ),
    "duration": (
        "timeout",
        "cache_ttl",
        "read_timeout",
        "write_timeout",
        "idle_timeout",
        "read_header_timeout",
        "idle_connection_timeout",
        "response_header_timeout",
        "expect_continue_timeout",
        "dialer_timeout",
        "dialer_fallback_delay",
        "dialer_keep_alive",
        "dns_cache_ttl",
        "max_shutdown_wait_time",
    ),
    "strs": ("host",),
    "objs": ("endpoints",),
    "object": ("extra_config",),
    "any": ("tls", "client_tls", "plugin", "async_agent"),
}
ENDPOINT_KEYS = {
    "str": ("endpoint", "method", "output_encoding"),
    "int": ("concurrent_calls",),
    "duration": ("timeout", "cache_ttl"),
    "strs": ("input_headers", "input_query_strings"),
    "objs": ("backend",),
    "object": ("extra_config",),
}
BACKEND_KEYS = {
    "str": ("group", "method", "url_pattern", "encoding", "target", "sd", "sd_scheme"),
    "bool": ("disable_host_sanitize", "is_collection"),
    "strs": ("host", "allow", "deny", "input_headers", "input_query_strings"),
    "map": ("mapping",),
    "object": ("extra_config",),
}


class _Refused(Exception):
    """KrakenD's decoder refuses this value too: it is left as is, for the model's error."""


def go_int(text: str) -> int:
    """strconv.ParseInt(text, 0, 64)."""
    if text == "":
        return 0  # mapstructure reads an empty string as 0
    if not _GO_INT.fullmatch(text):
        raise _Refused
    digits = text.replace("_", "")
    sign = -1 if digits[0] == "-" else 1
    digits = digits.lstrip("+-")
    base = 8 if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit() else 0
    value = sign * int(digits, base)
    if not -_INT64 <= value < _INT64:
        raise _Refused
    return value


def go_float_text(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): the shortest digits that read back, never an exponent."""
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= _INT64:
            raise _Refused
        return int(value)  # Go's int64(f): the fraction is dropped
    if isinstance(value, str):
        return go_int(value)
    raise _Refused


def _to_bool(value: Any) -> bool:
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        if value in _GO_TRUE:
            return True
        if value in _GO_FALSE or value == "":
            return False
    raise _Refused


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return go_float_text(value)
    raise _Refused


def _to_strs(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [] if value == "" else value.split(",")
    if isinstance(value, dict):
        if value:
            raise _Refused
        return []
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, str) else _to_str(item) for item in items]


def _to_map(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        value = _to_object(value)  # mapstructure merges a list of objects into one, the later keys winning
    return {k: v if isinstance(v, str) else _to_str(v) for k, v in value.items()}


def _to_object(value: Any) -> dict[str, Any]:
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        merged: dict[str, Any] = {}
        for item in value:
            merged.update(item)
        return merged
    raise _Refused


def _to_objs(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value] if value else []
    raise _Refused


def _to_duration(value: Any) -> str:
    if isinstance(value, (bool, int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
        nanoseconds = int(value)
        if nanoseconds < 0 or nanoseconds >= _INT64:
            raise _Refused
        return f"{nanoseconds}ns"
    raise _Refused


def _is_strs(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _is_map(value: Any) -> bool:
    return type(value) is dict and all(type(item) is str for item in value.values())


# Go type → (the value is already of it, the conversion). "any" values are only dropped when null.
_CONVERT: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    "int": (lambda v: type(v) is int, _to_int),
    "bool": (lambda v: type(v) is bool, _to_bool),
    "str": (lambda v: type(v) is str, _to_str),
    "strs": (_is_strs, _to_strs),
    "map": (_is_map, _to_map),
    "objs": (lambda v: type(v) is list, _to_objs),
    "duration": (lambda v: type(v) is str, _to_duration),
    "object": (lambda v: type(v) is dict, _to_object),
    "any": (lambda v: True, lambda v: v),
}


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(kind: str, given: Any, read: Any) -> str:
    if given is None:
        return "null is read as not set, as KrakenD does: remove the key"
    if kind == "duration":
        return f'{_shown(given)} is read as "{read}", as KrakenD does (a bare number is nanoseconds): write a duration such as "3s"'
    if kind == "objs" and given:
        return "one object is read as a list of it, as KrakenD does: write it inside [ ]"
    note = " (KrakenD splits a string at commas)" if kind == "strs" and isinstance(given, str) else ""
    return f"{_shown(given)} is read as {_shown(read)}, as KrakenD does{note}: write {_shown(read)}"


def _convert_keys(obj: dict, keys: dict[str, tuple[str, ...]], path: str, warnings: list[ConfigIssue]) -> dict:
    """A copy of `obj` with its core keys converted (the input document is never changed)."""
    out = dict(obj)
    for kind, names in keys.items():
        right, convert = _CONVERT[kind]
        for name in names:
            if name not in out:
                continue
            value = out[name]
            where = f"{path}.{name}" if path else name
            if value is None:
                del out[name]
                warnings.append(ConfigIssue(where, _message(kind, None, None)))
                continue
            if right(value):
                continue
            try:
                out[name] = convert(value)
            except _Refused:
                continue  # the model refuses it, with its path
            warnings.append(ConfigIssue(where, _message(kind, value, out[name])))
    return out


def lenient(doc: dict) -> tuple[dict, list[ConfigIssue]]:
    """The document with its core keys read as KrakenD's decoder reads them, and a warning for each conversion."""
    warnings: list[ConfigIssue] = []
    service = _convert_keys(doc, SERVICE_KEYS, "", warnings)
    endpoints = service.get("endpoints")
    if type(endpoints) is list:
        service["endpoints"] = [_endpoint(e, f"endpoints[{i}]", warnings) for i, e in enumerate(endpoints)]
    return service, warnings


def _endpoint(endpoint: Any, path: str, warnings: list[ConfigIssue]) -> Any:
    if type(endpoint) is not dict:
        return endpoint
    out = _convert_keys(endpoint, ENDPOINT_KEYS, path, warnings)
    backends = out.get("backend")
    if type(backends) is list:
        out["backend"] = [
            _convert_keys(b, BACKEND_KEYS, f"{path}.backend[{j}]", warnings) if type(b) is dict else b
            for j, b in enumerate(backends)
        ]
    return out
