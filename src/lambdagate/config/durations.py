"""Go-style durations as KrakenD writes them: "3s", "500ms", "1m30s", "1.5h"."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAX_SECONDS = (2**63 - 1) / 1e9  # Go's time.Duration is an int64 of nanoseconds (~292 years)
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds for a Go duration string; ValueError with a hint otherwise."""
    if not isinstance(text, str):
        raise ValueError(f'expected a duration string such as "2s" or "500ms", got {text!r}')
    s = text.strip()
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f'malformed duration {text!r}: write it like "3s", "500ms" or "1m30s"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f'malformed duration {text!r}: write it like "3s", "500ms" or "1m30s"')
    if total > _MAX_SECONDS:  # also catches "inf" from a number with hundreds of digits
        raise ValueError(
            f"duration {text[:40]!r} is out of range (at most {_MAX_SECONDS / 3600 / 24 / 365:.0f} years, as in Go)"
        )
    return total


def seconds_or_duration(value: Any) -> Any:
    """KrakenD's whole seconds, or any number of seconds, or a Go duration string (a boolean is neither)."""
    if isinstance(value, bool):
        raise ValueError(f'must be a number of seconds or a duration such as "10s", got {value!r}')
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[float, BeforeValidator(parse_duration)]  # a Go duration string, in seconds
SecondsOrDuration = Annotated[float, BeforeValidator(seconds_or_duration)]  # also a plain number of seconds
