"""KrakenD's logstash records (`telemetry/logstash`): one JSON object per line, as krakend-logstash writes them.

krakend-logstash builds a map with `@timestamp` (local time, microseconds and the UTC offset: Go's layout
`2006-01-02T15:04:05.000000-07:00`), `@version` 1, `host` (the hostname), `module` (`telemetry/logging`'s prefix,
else "KRAKEND"), `level` and `message`, merged over the fields the caller passed along, and encodes it with Go's
`encoding/json`: keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped. The fields lambdagate attaches to a line
(`logger`, and for the access line `method`, `path`, `status`, `request_id`…) are such merged fields.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import orjson

DEFAULT_MODULE = "KRAKEND"
_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Go's encoding/json escapes these even inside strings (HTML safety); outside strings JSON never has them.
_GO_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
_clock = {"second": -1, "text": "", "zone": ""}


def hostname() -> str:
    """os.Hostname(), or "localhost" as krakend-logstash falls back to."""
    try:
        return socket.gethostname() or "localhost"
    except OSError:
        return "localhost"


HOST = hostname()


def logstash_timestamp(now: float) -> str:
    """`2018-05-16T10:02:47.000000+00:00` in local time; the part up to the second is formatted once per second."""
    second = int(now)
    if second != _clock["second"]:
        local = time.localtime(second)
        offset = local.tm_gmtoff // 60
        sign = "-" if offset < 0 else "+"
        _clock.update(
            second=second,
            text=time.strftime("%Y-%m-%dT%H:%M:%S", local),
            zone=f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}",
        )
    return f"{_clock['text']}.{int((now - second) * 1_000_000):06d}{_clock['zone']}"


def go_json(entry: dict[str, Any]) -> bytes:
    """`entry` encoded as Go's json.Marshal encodes a map: sorted keys, HTML characters escaped, one line."""
    try:
        data = orjson.dumps(entry, default=str, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a lone surrogate: Go writes U+FFFD for text that is not valid UTF-8
        text = json.dumps(entry, default=str, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        data = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
    for raw, escaped in _GO_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def record(fields: dict[str, Any], level: str, message: str, module: str, now: float) -> bytes:
    """One logstash line (without its newline): KrakenD's own keys win over the merged `fields`."""
    fields["@version"] = 1
    fields["@timestamp"] = logstash_timestamp(now)
    fields["module"] = module
    fields["host"] = HOST
    fields["message"] = message
    fields["level"] = level
    return go_json(fields)


class LogstashFormatter(logging.Formatter):
    """A log record as krakend-logstash's line; the record's extra attributes are the merged fields."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.module = prefix or DEFAULT_MODULE

    def format(self, entry: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": entry.name}
        for key, value in vars(entry).items():
            if key not in _STD_ATTRS:
                fields[key] = value
        if entry.exc_info:
            fields["exception"] = self.formatException(entry.exc_info)
        return record(fields, entry.levelname, entry.getMessage(), self.module, entry.created).decode()
