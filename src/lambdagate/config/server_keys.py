"""KrakenD's HTTP server keys at the service's top level: which lambdagate limits they set, and what differs.

`read_timeout`, `read_header_timeout` and `idle_timeout` set the `lambdagate/server` limits of the same names
(config/server_options.py says which wins when both are given); `tls` is config/server_tls.py's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lambdagate.errors import ConfigIssue

if TYPE_CHECKING:
    from lambdagate.config.model import ServiceConfig

# KrakenD's top-level server keys that set a limit of lambdagate/server (same names).
TOP_LEVEL_LIMITS = ("read_timeout", "read_header_timeout", "idle_timeout")


def top_level_issues(service: ServiceConfig) -> list[ConfigIssue]:
    """Warnings about KrakenD's top-level server keys that lambdagate applies differently."""
    out = []
    if service.write_timeout is not None:
        out.append(
            ConfigIssue(
                "write_timeout",
                "accepted, not applied: lambdagate has no limit on writing a reply (the endpoint's timeout bounds "
                "the wait for its backends)",
            )
        )
    for name in TOP_LEVEL_LIMITS:
        value = getattr(service, name)
        if value is not None and value <= 0:
            out.append(ConfigIssue(name, f"{value:g}s (no limit in KrakenD) keeps lambdagate's default limit"))
    return out
