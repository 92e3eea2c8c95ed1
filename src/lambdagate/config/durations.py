"""Go-style durations as KrakenD writes them: "3s", "500ms", "1m30s", "1.5h"."""

from __future__ import annotations

import re

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
